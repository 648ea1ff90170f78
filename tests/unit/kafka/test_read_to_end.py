"""Reading partitions to their end when the broker answers a short fetch wait with nothing.

The embedded broker answers a fetch with what it gathered within the fetch's max wait; on a long log
on a busy machine that is nothing, every time (seen: a restore that read 3 records a minute for 20
minutes). The fake below behaves that way: records only for a wait of at least ``needs_ms``.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from bridge.kafka.clients import STARVED_WAIT_MAX_MS, read_to_end, wait_longer

TP = TopicPartition("ledger", 0)


class SlowBroker:
    """A consumer of one partition holding ``size`` records whose fetches fail below ``needs_ms``."""

    def __init__(self, size: int, needs_ms: int, wait_ms: int = 10) -> None:
        self._fetcher = SimpleNamespace(_fetch_max_wait_ms=wait_ms)
        self.size, self.needs_ms, self.offset, self.fetches = size, needs_ms, 0, 0

    async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int | None) -> dict[Any, Any]:
        self.fetches += 1
        await asyncio.sleep(0)
        if self._fetcher._fetch_max_wait_ms < self.needs_ms or self.offset >= self.size:
            return {}
        batch = range(self.offset, min(self.size, self.offset + (max_records or 100)))
        self.offset = batch[-1] + 1
        return {TP: [SimpleNamespace(offset=o) for o in batch]}

    def highwater(self, tp: TopicPartition) -> int:
        return self.size

    async def position(self, tp: TopicPartition) -> int:
        return self.offset


async def read_all(consumer: SlowBroker) -> int:
    return sum([len(records) async for _, records in read_to_end(consumer, [TP], max_records=100)])  # type: ignore[arg-type]


async def test_a_reader_that_gets_nothing_while_behind_asks_for_longer_waits_and_reads_everything():
    broker = SlowBroker(size=1000, needs_ms=300)
    assert await asyncio.wait_for(read_all(broker), timeout=5) == 1000
    assert 300 <= broker._fetcher._fetch_max_wait_ms <= 640  # widened only as far as it had to


async def test_a_reader_answered_at_once_keeps_its_short_wait():
    broker = SlowBroker(size=1000, needs_ms=0)
    assert await read_all(broker) == 1000
    assert broker._fetcher._fetch_max_wait_ms == 10


async def test_an_empty_partition_is_not_behind():
    broker = SlowBroker(size=0, needs_ms=10_000)
    assert await read_all(broker) == 0
    assert broker._fetcher._fetch_max_wait_ms == 10


def test_the_wait_doubles_from_at_least_50_ms_up_to_a_bound():
    broker = SlowBroker(size=0, needs_ms=0, wait_ms=0)
    waits = [wait_longer(broker) for _ in range(8)]  # type: ignore[arg-type]
    assert waits == [50, 100, 200, 400, 800, 1600, STARVED_WAIT_MAX_MS, STARVED_WAIT_MAX_MS]
