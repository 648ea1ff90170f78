"""``bridge dlq list|show|replay``: read the dead-letter topic, and put selected records back.

Replay is resumable: the tool's own consumer group (``--group``) records how far it got, so a
second run continues after the last record the first one considered. Records passed over because
the filter did not select them are passed for that group too: use another group for another
selection. Quarantined records (replayed ``--replay-limit`` times already) stay where they are in
the dead-letter topic, are reported and counted, and are passed over; ``bridge dlq show`` still
shows them, and ``bridge send`` can publish a corrected copy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, ConsumerRecord

from bridge.config.settings import Settings
from bridge.redrive import kafka
from bridge.redrive.report import Report
from bridge.redrive.select import (
    DEFAULT_REPLAY_LIMIT,
    Action,
    Coordinates,
    DeadLetterFilter,
    DeadLetterView,
    Partition,
    decide_dead_letter,
    passed,
    view_dead_letter,
)

COMMIT_EVERY = 100


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    selection: DeadLetterFilter = field(default_factory=DeadLetterFilter)
    limit: int = DEFAULT_REPLAY_LIMIT
    max_replays: int | None = None
    dry_run: bool = False
    group_id: str = kafka.DLQ_GROUP


def command_topics(settings: Settings) -> frozenset[str]:
    return frozenset({settings.topics.run_commands, settings.topics.control_commands})


async def list_dead_letters(
    settings: Settings, selection: DeadLetterFilter, limit: int | None = None
) -> list[DeadLetterView]:
    found: list[DeadLetterView] = []
    async with kafka.open_consumer(settings.kafka) as consumer:
        partitions = await kafka.assign(consumer, [settings.topics.dead_letter], resume=False)
        async for record in kafka.read_to_end(consumer, partitions):
            view = view_dead_letter(record)
            if selection.matches(view):
                found.append(view)
            if limit is not None and len(found) >= limit:
                break
    return found


async def show_dead_letter(
    settings: Settings, partition: int, offset: int
) -> ConsumerRecord[bytes, bytes] | None:
    async with kafka.open_consumer(settings.kafka) as consumer:
        return await kafka.fetch_one(consumer, Coordinates(settings.topics.dead_letter, partition, offset))


async def replay_dead_letters(settings: Settings, options: ReplayOptions, report: Report) -> Report:
    positions: dict[Partition, int] = {}
    async with (
        kafka.open_consumer(settings.kafka, options.group_id) as consumer,
        kafka.open_producer(settings.kafka) as producer,
    ):
        partitions = await kafka.assign(consumer, [settings.topics.dead_letter], resume=True)
        replay = _Replay(options, report, producer, command_topics(settings))
        seen = 0
        async for record in kafka.read_to_end(consumer, partitions):
            if options.max_replays is not None and report.replayed >= options.max_replays:
                break
            await replay.consider(record)
            passed(positions, Coordinates.of(record))
            seen += 1
            if not options.dry_run and seen % COMMIT_EVERY == 0:
                await kafka.commit(consumer, positions)
        if not options.dry_run:
            await kafka.commit(consumer, positions)
    return report


@dataclass(frozen=True, slots=True)
class _Replay:
    options: ReplayOptions
    report: Report
    producer: AIOKafkaProducer
    targets: frozenset[str]

    async def consider(self, record: ConsumerRecord[bytes, bytes]) -> None:
        view = view_dead_letter(record)
        if not self.options.selection.matches(view):
            return
        decision = decide_dead_letter(view, self.options.limit, self.targets)
        to: Coordinates | str | None = None
        count = view.replay_count + 1
        if decision.action is Action.REPLAY and view.source:
            to = view.source.topic
            if not self.options.dry_run:
                to = await kafka.put_back(self.producer, to, record, view.at, count, redrive=False)
        self.report.record(view.at, decision, view.reason, to, replay_count=count)
