"""The records that cross the engine's seam: what was consumed, and what to publish for it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from bridge.kafka.ports import ConsumedRecord
from bridge.messages.outcomes import OutcomeData, SourceRecord
from bridge.messages.parsing import DeadLetter
from bridge.messages.wire import Header
from bridge.observability.trace_context import TraceParent

Headers = tuple[Header, ...]


@dataclass(frozen=True, slots=True)
class Incoming:
    """The parts of a consumed record the bridge uses."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Headers = ()
    timestamp_ms: int | None = None
    undecodable: str | None = None  # why the Kafka client could not decode this record (then no value)
    corrupt: bool = False  # undecodable because its batch fails the CRC check
    fetched_at: float = 0.0
    """time.time() when the engine's fetch returned this record (0: unknown)."""

    @property
    def source(self) -> SourceRecord:
        return SourceRecord(topic=self.topic, partition=self.partition, offset=self.offset)

    @property
    def record_time(self) -> datetime:
        if self.timestamp_ms is None or self.timestamp_ms < 0:
            return datetime.now(UTC)
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Outgoing:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[Header] = field(default_factory=list)
    outcome: OutcomeData | None = None
    dead_letter: DeadLetter | None = None
    labels: tuple[str, str, str, str] = ("", "", "", "")
    """Bounded metric labels of an outcome: target, provider, operation, status."""
    trace: TraceParent | None = None
    """The command span, when tracing is on: the parent of the publish span."""
    partition: int | None = None  # None: the producer's partitioner picks one
    then: tuple[Outgoing, ...] = ()  # published after this one is acknowledged (the ledger's done entry)
    skip: bool = False  # nothing to publish (a duplicate the ledger absorbed); the offset is still committed


SKIP = Outgoing("", None, None, skip=True)


TIMING_HEADER = "bridge.timing"
"""Optional outcome header (``engine.timing_header``): ``b"<fetched>,<started>"``, the
epoch milliseconds at which the engine fetched the command and started it, for latency breakdowns."""


def timing_header(fetched_at: float, started_at: float) -> Header:
    return (TIMING_HEADER, b"%.1f,%.1f" % (fetched_at * 1000, started_at * 1000))


def incoming_from(record: ConsumedRecord, fetched_at: float = 0.0) -> Incoming:
    return Incoming(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers or ()),
        timestamp_ms=record.timestamp,
        fetched_at=fetched_at,
    )


class TargetShares(Protocol):
    """Each target's share of the engine (the bulkheads, bridge/pipeline/bulkheads.py): told of every record
    the engine takes and of its end."""

    def accept(self, record: Incoming) -> None: ...
    def release(self, record: Incoming) -> None: ...
    def out_of_turn(self, record: Incoming) -> bool:
        """Whether an accepted record runs at once instead of behind its key."""
        ...
