"""The engine's fetch on a broker that answers a short fetch wait on a long log with nothing (the
embedded broker did: a restarted bridge with a backlog of 100,000 commands consumed none for 20 minutes
of a soak run). A fetch that got nothing while the consumer is behind asks for a longer wait; once it
has caught up, the configured wait comes back."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition

from bridge.kafka.clients import STARVED_WAIT_MAX_MS
from bridge.kafka.fetch import Fetcher
from bridge.kafka.partitions import Partition

TP = TopicPartition("run.commands", 0)
CONFIGURED_MS = 10


class SlowBroker:
    """One partition of ``size`` records whose fetches answer nothing below a wait of ``needs_ms``."""

    def __init__(self, size: int, needs_ms: int) -> None:
        self._fetcher = SimpleNamespace(_fetch_max_wait_ms=CONFIGURED_MS)
        self.size, self.needs_ms, self.offset = size, needs_ms, 0

    async def getmany(self, *tps: TopicPartition, timeout_ms: int, max_records: int | None) -> dict[Any, Any]:
        await asyncio.sleep(0)
        if self._fetcher._fetch_max_wait_ms < self.needs_ms or self.offset >= self.size:
            return {}
        batch = range(self.offset, min(self.size, self.offset + (max_records or 100)))
        self.offset = batch[-1] + 1
        return {TP: [SimpleNamespace(topic=TP.topic, partition=0, offset=o) for o in batch]}

    def highwater(self, tp: TopicPartition) -> int:
        return self.size

    async def position(self, tp: TopicPartition) -> int:
        return self.offset

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    def pause(self, *tps: TopicPartition) -> None: ...
    def resume(self, *tps: TopicPartition) -> None: ...


async def fetch_all(broker: SlowBroker, fetches: int) -> tuple[int, list[int]]:
    fetcher = Fetcher(broker, {TP: Partition(TP)})  # type: ignore[arg-type]
    read, waits = 0, []
    for _ in range(fetches):
        records, _ = await fetcher.fetch(room=100)
        read += len(records)
        waits.append(broker._fetcher._fetch_max_wait_ms)
    return read, waits


async def test_a_consumer_behind_that_gets_nothing_widens_its_wait_until_records_come() -> None:
    broker = SlowBroker(size=1000, needs_ms=300)
    read, waits = await fetch_all(broker, 30)
    assert read == 1000
    assert waits[:4] == [50, 100, 200, 400]  # doubled after each empty fetch, from at least 50 ms
    assert max(waits) <= STARVED_WAIT_MAX_MS


async def test_once_caught_up_the_configured_wait_comes_back() -> None:
    broker = SlowBroker(size=1000, needs_ms=300)
    read, waits = await fetch_all(broker, 30)
    assert read == 1000 and waits[-1] == CONFIGURED_MS  # the first empty fetch at the end resets it


async def test_a_consumer_answered_at_once_keeps_its_configured_wait() -> None:
    broker = SlowBroker(size=1000, needs_ms=0)
    read, waits = await fetch_all(broker, 15)
    assert read == 1000 and set(waits) == {CONFIGURED_MS}
