"""What to put back, decided without I/O: record views, filters, the replay limit, histograms."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

import orjson
from pydantic import ValidationError

from bridge.messages.outcomes import OutcomeData
from bridge.messages.provenance import replay_count

_RELATIVE = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
DEFAULT_REPLAY_LIMIT = 3


class RecordLike(Protocol):
    """The parts of an aiokafka ``ConsumerRecord`` used here."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


@dataclass(frozen=True, slots=True, order=True)
class Coordinates:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"

    @classmethod
    def of(cls, record: RecordLike) -> Coordinates:
        return cls(record.topic, record.partition, record.offset)


@dataclass(frozen=True, slots=True)
class DeadLetterView:
    at: Coordinates
    timestamp_ms: int
    reason: str
    detail: str
    source: Coordinates | None
    replay_count: int
    value_omitted: bool


def view_dead_letter(record: RecordLike) -> DeadLetterView:
    meta = {k: v.decode("utf-8", errors="replace") for k, v in record.headers if k.startswith("dlq.")}
    return DeadLetterView(
        at=Coordinates.of(record),
        timestamp_ms=record.timestamp,
        reason=meta.get("dlq.reason", "unknown"),
        detail=meta.get("dlq.detail", ""),
        source=_source_of(meta),
        replay_count=replay_count(record.headers),
        value_omitted="dlq.value_omitted_bytes" in meta,
    )


def _source_of(meta: dict[str, str]) -> Coordinates | None:
    topic, partition, offset = (meta.get(f"dlq.source.{k}", "") for k in ("topic", "partition", "offset"))
    if not topic or not partition.isdigit() or not offset.isdigit():
        return None
    return Coordinates(topic, int(partition), int(offset))


@dataclass(frozen=True, slots=True)
class TimeRange:
    since_ms: int | None = None
    until_ms: int | None = None

    def holds(self, timestamp_ms: int) -> bool:
        after = self.since_ms is None or timestamp_ms >= self.since_ms
        return after and (self.until_ms is None or timestamp_ms < self.until_ms)


@dataclass(frozen=True, slots=True)
class DeadLetterFilter:
    """Empty sets match everything."""

    reasons: frozenset[str] = frozenset()
    source_topics: frozenset[str] = frozenset()
    window: TimeRange = TimeRange()

    def matches(self, view: DeadLetterView) -> bool:
        topic = view.source.topic if view.source else None
        return (
            (not self.reasons or view.reason in self.reasons)
            and (not self.source_topics or topic in self.source_topics)
            and self.window.holds(view.timestamp_ms)
        )


class Action(StrEnum):
    REPLAY = "replay"
    QUARANTINE = "quarantine"  # replayed too often: left in place, reported, passed over
    UNREPLAYABLE = "unreplayable"  # nothing to put back, or nowhere known to put it


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    why: str = ""


def decide_dead_letter(view: DeadLetterView, limit: int, command_topics: frozenset[str]) -> Decision:
    if view.value_omitted:
        return Decision(Action.UNREPLAYABLE, "the original value was too large to keep")
    if view.source is None:
        return Decision(Action.UNREPLAYABLE, "no dlq.source headers")
    return decide_put_back(view.source.topic, view.replay_count, limit, command_topics)


def decide_put_back(topic: str, count: int, limit: int, command_topics: frozenset[str]) -> Decision:
    """Only to a command topic of this configuration, and only ``limit`` times: then quarantined."""
    if topic not in command_topics:
        return Decision(Action.UNREPLAYABLE, f"{topic} is not a configured command topic")
    if count >= limit:
        return Decision(Action.QUARANTINE, f"replayed {count} times (limit {limit})")
    return Decision(Action.REPLAY)


def histogram(labels: Iterable[str]) -> list[tuple[str, int]]:
    """(label, count), most frequent first, then by name."""
    return sorted(Counter(labels).items(), key=lambda item: (-item[1], item[0]))


@dataclass(frozen=True, slots=True)
class OutcomeView:
    at: Coordinates
    timestamp_ms: int
    command_id: str
    status: str
    target: str | None
    error_kind: str | None
    source: Coordinates


def view_outcome(record: RecordLike) -> OutcomeView | None:
    """The outcome event in the record, or None when it is not one (the topic may carry others)."""
    try:
        data = OutcomeData.model_validate(orjson.loads(record.value or b"")["data"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValidationError):
        return None
    source = Coordinates(data.source.topic, data.source.partition, data.source.offset)
    kind = data.error.kind.value if data.error else None
    at = Coordinates.of(record)
    return OutcomeView(at, record.timestamp, data.command_id, data.status.value, data.target, kind, source)


@dataclass(frozen=True, slots=True)
class OutcomeFilter:
    status: str
    targets: frozenset[str] = frozenset()
    window: TimeRange = TimeRange()

    def matches(self, view: OutcomeView) -> bool:
        in_target = not self.targets or view.target in self.targets
        return view.status == self.status and in_target and self.window.holds(view.timestamp_ms)


def latest_per_command(views: Iterable[OutcomeView]) -> list[OutcomeView]:
    """The last outcome of each command id: a command that failed and then succeeded is not redriven."""
    latest: dict[str, OutcomeView] = {}
    for view in sorted(views, key=lambda v: (v.timestamp_ms, v.at)):
        latest[view.command_id] = view
    return sorted(latest.values(), key=lambda v: (v.timestamp_ms, v.at))


def parse_time(text: str, now: datetime) -> datetime:
    """RFC 3339 (``2026-12-01T08:00:00Z``) or an age before ``now`` (``90s``, ``15m``, ``2h``, ``1d``)."""
    relative = _RELATIVE.match(text.strip())
    if relative:
        return now - timedelta(**{_UNITS[relative.group(2)]: float(relative.group(1))})
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset; write e.g. {text}Z")
    return moment


def time_range(since: str | None, until: str | None, now: datetime | None = None) -> TimeRange:
    moment = now or datetime.now(UTC)
    return TimeRange(
        *(None if t is None else int(parse_time(t, moment).timestamp() * 1000) for t in (since, until))
    )


Partition = tuple[str, int]


def passed(positions: dict[Partition, int], at: Coordinates) -> None:
    """Note that everything up to ``at`` has been considered."""
    positions[(at.topic, at.partition)] = at.offset + 1


def resume_positions(scanned: dict[Partition, int], left: Iterable[Coordinates]) -> dict[Partition, int]:
    """Where the next run starts: the end of what was scanned, or a record left for a later run."""
    positions = dict(scanned)
    for at in left:
        key = (at.topic, at.partition)
        positions[key] = min(positions.get(key, at.offset), at.offset)
    return positions
