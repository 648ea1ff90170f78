"""What the bridge consumed and what it publishes for it: the records that cross the Kafka engine's seam
(:mod:`bridge.kafka.engine` reads and writes them; everything above it decides on them). Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from bridge.messages.outcomes import OutcomeData, SourceRecord
from bridge.messages.parsed import DeadLetter
from bridge.messages.trace_context import TraceParent
from bridge.messages.wire import Header

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
