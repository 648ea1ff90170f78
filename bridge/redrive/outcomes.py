"""``bridge redrive``: re-submit the commands whose outcome had a given status (e.g. ``error``).

The outcome topics are read (resumably, in the tool's own consumer group) up to their current end;
of each command id only its latest outcome counts, so a command that failed and then succeeded is
left alone. Each selected outcome names its command record (``data.source``); that record's key,
value and headers go back to its command topic with ``bridge.redrive: 1`` and the provenance
headers of :mod:`bridge.messages.provenance`. The replay-count limit applies as for dead letters.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bridge.config.settings import Settings
from bridge.messages.provenance import replay_count
from bridge.redrive import kafka
from bridge.redrive.dlq import command_topics
from bridge.redrive.report import Report
from bridge.redrive.select import (
    DEFAULT_REPLAY_LIMIT,
    Action,
    Coordinates,
    Decision,
    OutcomeFilter,
    OutcomeView,
    Partition,
    decide_put_back,
    latest_per_command,
    passed,
    resume_positions,
    view_outcome,
)


@dataclass(frozen=True, slots=True)
class RedriveOptions:
    selection: OutcomeFilter
    limit: int = DEFAULT_REPLAY_LIMIT
    max_redrives: int | None = None
    dry_run: bool = False
    group_id: str = kafka.REDRIVE_GROUP


async def redrive(settings: Settings, options: RedriveOptions, report: Report) -> Report:
    topics = [settings.topics.run_outcomes, settings.topics.control_outcomes]
    async with kafka.open_consumer(settings.kafka, options.group_id) as consumer:
        scanned, selected = await _select(consumer, topics, options.selection)
        left = await _resubmit(settings, options, report, selected)
        if not options.dry_run:
            await kafka.commit(consumer, resume_positions(scanned, left))
    return report


async def _select(
    consumer: AIOKafkaConsumer, topics: list[str], selection: OutcomeFilter
) -> tuple[dict[Partition, int], list[OutcomeView]]:
    """How far each partition was read, and the outcomes to redrive in the order they were published."""
    scanned: dict[Partition, int] = {}
    views: list[OutcomeView] = []
    partitions = await kafka.assign(consumer, topics, resume=True)
    async for record in kafka.read_to_end(consumer, partitions):
        passed(scanned, Coordinates.of(record))
        view = view_outcome(record)
        if view is not None:
            views.append(view)
    return scanned, [v for v in latest_per_command(views) if selection.matches(v)]


async def _resubmit(
    settings: Settings, options: RedriveOptions, report: Report, selected: list[OutcomeView]
) -> list[Coordinates]:
    """Put the selected commands back, up to ``max_redrives``; the outcomes left for a later run."""
    resubmit = _Resubmit(options, report, command_topics(settings))
    async with (
        kafka.open_consumer(settings.kafka) as fetcher,
        kafka.open_producer(settings.kafka) as producer,
    ):
        for index, view in enumerate(selected):
            if options.max_redrives is not None and report.replayed >= options.max_redrives:
                return [v.at for v in selected[index:]]
            await resubmit.one(fetcher, producer, view)
    return []


@dataclass(frozen=True, slots=True)
class _Resubmit:
    options: RedriveOptions
    report: Report
    targets: frozenset[str]

    async def one(self, fetcher: AIOKafkaConsumer, producer: AIOKafkaProducer, view: OutcomeView) -> None:
        record = await kafka.fetch_one(fetcher, view.source)
        reason = view.error_kind or view.status
        if record is None:
            gone = Decision(Action.UNREPLAYABLE, f"command record {view.source} is no longer in the log")
            self.report.record(view.at, gone, reason, None, command_id=view.command_id)
            return
        count = replay_count(record.headers) + 1
        decision = decide_put_back(view.source.topic, count - 1, self.options.limit, self.targets)
        to: Coordinates | str | None = None
        if decision.action is Action.REPLAY:
            to = view.source.topic
            if not self.options.dry_run:
                to = await kafka.put_back(producer, to, record, view.at, count, redrive=True)
        self.report.record(view.at, decision, reason, to, command_id=view.command_id, replay_count=count)
