"""Records the Kafka client itself cannot decode: a header key that is not UTF-8, for example,
written by another client. aiokafka decodes a fetched batch as a whole, so one such record makes
every ``getmany()`` raise, forever, and rewinds the partition to where the failed read began.

The engine then reads each partition one record at a time: good records come through as usual
(the engine drops offsets it already has, since the client rewinds), and at the position where
the error happens the record is reported as undecodable and skipped. Records after it in the same
batch cannot be decoded either and are reported one by one, so every offset still gets exactly one
result: an outcome, or a dead letter saying why.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from bridge.ports import ConsumerPort
from bridge.records import Incoming

log = logging.getLogger("bridge.engine")
READ_TIMEOUT_MS = 200


@dataclass(frozen=True, slots=True)
class Undecodable:
    tp: TopicPartition
    offset: int
    detail: str


def is_decode_error(exc: Exception) -> bool:
    """What aiokafka raises from ``getmany()`` for a record it cannot decode (UnicodeDecodeError...)."""
    return isinstance(exc, ValueError)


async def read_carefully(
    consumer: ConsumerPort, partitions: Iterable[TopicPartition], limit: int
) -> list[Any | Undecodable]:
    """Up to ``limit`` records per partition, one at a time, in offset order; an undecodable one is
    skipped and stands in the list as an :class:`Undecodable`."""
    read: list[Any | Undecodable] = []
    for tp in partitions:
        for _ in range(limit):
            try:
                got = await consumer.getmany(tp, timeout_ms=READ_TIMEOUT_MS, max_records=1)
            except ValueError as exc:
                offset = await consumer.position(tp)
                consumer.seek(tp, offset + 1)
                detail = f"the Kafka client cannot decode this record ({type(exc).__name__}: {exc})"[:300]
                log.warning("undecodable record at %s[%d]@%d: %s", tp.topic, tp.partition, offset, detail)
                read.append(Undecodable(tp, offset, detail))
                continue
            if not got:
                break
            read += [record for batch in got.values() for record in batch]
    return read


def as_incoming(bad: Undecodable) -> Incoming:
    """The record as the processor sees it: no key, no value, and why (it becomes a dead letter)."""
    return Incoming(bad.tp.topic, bad.tp.partition, bad.offset, None, None, undecodable=bad.detail)
