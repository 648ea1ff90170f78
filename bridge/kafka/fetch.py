"""The engine's reads from its consumer, one fetch at a time.

A fetch asks for at most the room left under ``engine.max_in_flight``; with no room the consumer's
partitions are paused (the consumer still polls, so that the group keeps the member) until a held
command finishes. A batch the client cannot decode is read again record by record
(bridge/kafka/undecodable.py); a failed fetch is retried after a second. A fetch that got nothing
while the consumer is behind asks the broker to wait longer next time (the embedded broker answers a
short wait on a long log with nothing at all; Apache Kafka answers at once when records are there),
and the configured wait comes back once the consumer has caught up.

Example::

    fetcher = Fetcher(consumer, partitions)     # partitions: the engine's, by TopicPartition
    records, fetched_at = await fetcher.fetch(room)
    fetcher.capacity.set()                      # a held command finished
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from bridge.kafka.clients import wait_longer
from bridge.kafka.partitions import Partition
from bridge.kafka.ports import ConsumedRecord, ConsumerPort
from bridge.kafka.undecodable import UNREADABLE, Undecodable, as_incoming, read_carefully
from bridge.messages.records import Incoming
from bridge.observability.repeats import COLLAPSE
from bridge.waits import within

log = logging.getLogger("bridge.engine")


class Fetcher:
    def __init__(self, consumer: ConsumerPort, partitions: Mapping[TopicPartition, Partition]) -> None:
        self._consumer = consumer
        self._partitions = partitions
        self._configured_wait_ms: int | None = None
        self.capacity = asyncio.Event()  # set when a held command finishes: a paused fetch goes on
        self.paused = False  # every partition paused: max_in_flight commands are held

    async def fetch(self, room: int) -> tuple[Sequence[ConsumedRecord | Incoming], float]:
        """At most ``room`` records and the time they were fetched."""
        self._set_paused(room <= 0)
        if room <= 0:
            self.capacity.clear()
            await within(self.capacity.wait(), 0.2)
            # getmany keeps the group membership alive (max_poll_interval) while paused
            await self._consumer.getmany(timeout_ms=0)
            return (), time.time()
        try:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=room)
        except UNREADABLE:  # a record the client cannot decode, or a failed CRC
            read = await read_carefully(self._consumer, self._reading(), room)
            return [as_incoming(r) if isinstance(r, Undecodable) else r for r in read], time.time()
        except KafkaError as exc:
            log.warning("fetch failed, retrying: %s", exc, extra=COLLAPSE)
            await asyncio.sleep(1.0)
            return (), time.time()
        fetched = time.time()
        if not batch:
            await self._adjust_wait()
        return [record for records in batch.values() for record in records], fetched

    def pause_if_paused(self, assigned: Collection[TopicPartition]) -> None:
        """Newly assigned partitions join a paused fetch paused."""
        if self.paused:
            self._consumer.pause(*assigned)

    def _set_paused(self, paused: bool) -> None:
        assigned = self._consumer.assignment()
        if paused:
            self._consumer.pause(*assigned)
        elif self.paused:
            self._consumer.resume(*assigned)
        self.paused = paused

    def _reading(self) -> list[TopicPartition]:
        return [tp for tp, p in self._partitions.items() if not p.closing]

    async def _adjust_wait(self) -> None:
        """After a fetch that got nothing: a longer fetch wait while behind, the configured one when not.
        aiokafka reads the wait for every fetch request but has no public setter (see wait_longer)."""
        fetcher: Any = getattr(self._consumer, "_fetcher", None)
        if fetcher is None:  # a test double
            return
        if self._configured_wait_ms is None:
            self._configured_wait_ms = int(fetcher._fetch_max_wait_ms)
        if await behind(self._consumer, self._reading()):
            wait_longer(self._consumer)
        else:
            fetcher._fetch_max_wait_ms = self._configured_wait_ms


async def behind(consumer: ConsumerPort, partitions: Collection[TopicPartition]) -> bool:
    """Whether one of ``partitions`` has records past the consumer's position. Only partitions a fetch
    has answered for (their high watermark known) count: their position is known, no wait."""
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None:
            continue
        with contextlib.suppress(KafkaError):  # revoked meanwhile
            if await consumer.position(tp) < highwater:
                return True
    return False
