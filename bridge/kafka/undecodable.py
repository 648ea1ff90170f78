"""Records the Kafka client itself cannot decode: a header key that is not UTF-8, for example,
written by another client. aiokafka decodes a fetched batch as a whole, so one such record makes
every ``getmany()`` raise, forever, and rewinds the partition to where the failed read began.

The engine then reads each partition one record at a time: good records come through as usual
(the engine drops offsets it already has, since the client rewinds), and at the position where
the error happens the record is reported as undecodable and skipped. Records after it in the same
batch cannot be decoded either and are reported one by one, so every offset still gets exactly one
result: an outcome, or a dead letter saying why.

A record batch whose CRC check fails (``CorruptRecordException``, a ``KafkaError``) is read the
same careful way: a re-read that succeeds was a corruption on the way, not in the log; one that
fails ``CORRUPT_READS`` times is reported as corrupt (reason ``corrupt``) and skipped. The CRC
covers a whole batch, so each of its offsets is reported in turn.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CorruptRecordException

from bridge.kafka.ports import ConsumerPort
from bridge.messages.records import Incoming

log = logging.getLogger("bridge.engine")
READ_TIMEOUT_MS = 200
CORRUPT_READS = 3
UNREADABLE = (ValueError, CorruptRecordException)
"""What aiokafka raises from ``getmany()`` for a record it cannot decode (UnicodeDecodeError...)
or a batch whose CRC check fails: the engine then reads carefully."""


@dataclass(frozen=True, slots=True)
class Undecodable:
    tp: TopicPartition
    offset: int
    detail: str
    corrupt: bool = False


async def read_carefully(
    consumer: ConsumerPort, partitions: Iterable[TopicPartition], limit: int
) -> list[Any | Undecodable]:
    """Up to ``limit`` records per partition, one at a time, in offset order; an undecodable one is
    skipped and stands in the list as an :class:`Undecodable`."""
    read: list[Any | Undecodable] = []
    for tp in partitions:
        for _ in range(limit):
            try:
                got = await _read_one(consumer, tp)
            except UNREADABLE as exc:
                read.append(await _skip(consumer, tp, exc))
                continue
            if not got:
                break
            read += [record for batch in got.values() for record in batch]
    return read


async def _read_one(consumer: ConsumerPort, tp: TopicPartition) -> Mapping[TopicPartition, Sequence[Any]]:
    """One record; a failed CRC check is read again (the client stays at that offset) before it counts."""
    for _ in range(CORRUPT_READS - 1):
        with contextlib.suppress(CorruptRecordException):
            return await consumer.getmany(tp, timeout_ms=READ_TIMEOUT_MS, max_records=1)
    return await consumer.getmany(tp, timeout_ms=READ_TIMEOUT_MS, max_records=1)


async def _skip(consumer: ConsumerPort, tp: TopicPartition, exc: Exception) -> Undecodable:
    offset = await consumer.position(tp)
    consumer.seek(tp, offset + 1)
    corrupt = isinstance(exc, CorruptRecordException)
    what = (
        f"its batch failed the CRC check on {CORRUPT_READS} reads"
        if corrupt
        else "the Kafka client cannot decode this record"
    )
    detail = f"{what} ({type(exc).__name__}: {exc})"[:300]
    kind = "corrupt" if corrupt else "undecodable"
    log.warning("%s record at %s[%d]@%d: %s", kind, tp.topic, tp.partition, offset, detail)
    return Undecodable(tp, offset, detail, corrupt)


def as_incoming(bad: Undecodable) -> Incoming:
    """The record as the processor sees it: no key, no value, and why (it becomes a dead letter)."""
    return Incoming(
        bad.tp.topic, bad.tp.partition, bad.offset, None, None, undecodable=bad.detail, corrupt=bad.corrupt
    )
