"""The engine's side of the records that cross its seam (:mod:`bridge.messages.records`): a consumed
aiokafka record made an :class:`Incoming`, the timing header, and the bulkheads' hook."""

from __future__ import annotations

from typing import Protocol

from bridge.kafka.ports import ConsumedRecord
from bridge.messages.records import Incoming
from bridge.messages.wire import Header

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
