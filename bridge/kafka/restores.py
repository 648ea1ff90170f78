"""State that moves with a partition (the command ledger): restored on assignment, before the
engine processes the partition's records, and dropped on revocation.

Example::

    restores = Restores(ledger, stats)
    restores.start({tp: partition.ready})  # each event is set once tp's state is restored
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

from aiokafka import TopicPartition

from bridge.waits import log_crash

log = logging.getLogger("bridge.engine")


class PartitionState(Protocol):
    async def restore(self, tps: list[TopicPartition]) -> None:
        """Load the state of these newly assigned partitions; returns when it is complete."""

    def forget(self, tps: list[TopicPartition]) -> None:
        """Drop the state of revoked partitions."""


class RestoreStats(Protocol):
    restoring: int


class Restores:
    """The owned restore tasks; ``stats.restoring`` counts the partitions still waiting (readiness)."""

    def __init__(self, state: PartitionState, stats: RestoreStats) -> None:
        self.state = state
        self._stats = stats
        self._tasks: set[asyncio.Task[None]] = set()

    def start(self, ready: dict[TopicPartition, asyncio.Event]) -> None:
        if not ready:
            return
        self._stats.restoring += len(ready)
        task = asyncio.create_task(self._restore_routine(ready), name="restore")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(log_crash(log, "partition state restore"))

    async def _restore_routine(self, ready: dict[TopicPartition, asyncio.Event]) -> None:
        try:
            await self.state.restore(list(ready))
        finally:
            self._stats.restoring -= len(ready)
        for event in ready.values():
            event.set()

    async def cancel(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
