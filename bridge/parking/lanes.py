"""One parking partition's records held in memory until due (bridge/parking/replay.py fetches them).

Each key has a waiter, a plain task of the lane (not an engine routine, so a revocation never waits
for a sleeping record): it takes its key's records one after the other in parking order, waits until
the head is due and its key's earlier commands have left the engine, and only then hands it to the
engine as a routine of its command partition (``Partition.adopt``). Keys wait independently, so a
record due in an hour holds up only the later records of its own key. The replay group's position
moves past a record only once it and every earlier record of the partition ended. A record whose
routine was cancelled (a revocation past its grace) ends its lane, so that no later record of its key
overtakes it: the replayer reads the partition again from the committed position, once the lane's
other routines have ended.

Example::

    lane = Lane(Progress(consumer, tp), until_due, back, "workflow.run.commands")
    await lane.feed(records)       # returns at once: the waiters run on their own
    lane.held                      # records in memory, not yet ended (the fetch pauses above a bound)
    lane.cancel()                  # the partition moved: waiters end without running anything
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from bridge.kafka.offsets import OffsetTracker
from bridge.kafka.partitions import Partition
from bridge.observability.repeats import COLLAPSE
from bridge.parking.records import ParkedAt, read_parked

log = logging.getLogger("bridge.parking")
UntilDue = Callable[[ParkedAt, bytes | None], Awaitable[Partition | None]]
Back = Callable[[Any, ParkedAt], Coroutine[Any, Any, None]]


class Committer(Protocol):
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


class Progress:
    """The replay group's position in one parking partition: past a record once it and every earlier
    record ended."""

    def __init__(
        self, consumer: Committer, tp: TopicPartition, passed: Callable[[int], None] = lambda _: None
    ) -> None:
        self._consumer = consumer
        self._passed = passed  # told each position committed (what lies below is never read again)
        self.tp = tp
        self._tracker = OffsetTracker()
        self._committed: int | None = None
        self._lock = asyncio.Lock()

    def add(self, offset: int) -> None:
        self._tracker.add(offset)

    async def done(self, offset: int) -> None:
        self._tracker.done(offset)
        async with self._lock:
            position = self._tracker.committable()
            if position is None or position == self._committed:
                return
            try:
                await self._consumer.commit({self.tp: position})
                self._committed = position
                self._passed(position)
            except KafkaError as exc:  # brought back again later: the ledger absorbs a second answer
                log.warning("committing the replay position %s failed: %s", position, exc, extra=COLLAPSE)


class Lane:
    def __init__(
        self,
        progress: Progress,
        until_due: UntilDue,
        back: Back,
        command_topic: str,
        answered: Callable[[int], bool] = lambda _: False,
    ) -> None:
        self._progress = progress
        self._answered = answered  # a command offset answered before the partition moved here
        self._until_due = until_due
        self._back = back
        self._topic = command_topic
        self._keys: dict[bytes | None, deque[tuple[Any, ParkedAt]]] = {}
        self._waiters: dict[bytes | None, asyncio.Task[None]] = {}
        self._adopted: set[asyncio.Task[None]] = set()  # brought back, running in the engine
        self.next_offset: int | None = None  # after the last record fed: where the fetch goes on
        self.moved = False
        self.held = 0
        self.waiting: Counter[str] = Counter()  # held records a recovery of their target releases

    async def feed(self, records: Sequence[Any]) -> None:
        for record in records:
            if self.next_offset is not None and record.offset < self.next_offset:
                continue  # the client reading again what this lane already holds or brought back
            self._progress.add(record.offset)
            self.next_offset = record.offset + 1
            at = read_parked(record.headers or ())
            if at is None or at.topic != self._topic or self._answered(at.offset):
                await self._progress.done(record.offset)
            elif not self.moved:
                self._keys.setdefault(record.key, deque()).append((record, at))
                self.held += 1
                self.waiting[at.target] += at.recovers
                self._wake(record.key)

    def _wake(self, key: bytes | None) -> None:
        if key not in self._waiters:
            name = f"replay-wait:{self._progress.tp.topic}[{self._progress.tp.partition}]"
            self._waiters[key] = asyncio.create_task(self._wait(key), name=name)

    async def _wait(self, key: bytes | None) -> None:
        """Bring back one key's records one after the other, each once due."""
        queue = self._keys[key]
        try:
            while queue and not self.moved:
                if not await self._one(key, *queue[0]):
                    return
                _, at = queue.popleft()
                self.held -= 1
                self.waiting[at.target] -= at.recovers
        finally:
            del self._waiters[key]
            if not queue or self.moved:
                self._drop(key)

    async def _one(self, key: bytes | None, record: Any, at: ParkedAt) -> bool:
        home = await self._until_due(at, key)
        if home is None:
            self.cancel()
            return False
        if self._answered(at.offset):  # an older parking record of a command answered since
            await self._progress.done(record.offset)
            return True
        task = home.adopt(self._ended(record, at), f"replay:{self._progress.tp.topic}")
        self._adopted.add(task)
        task.add_done_callback(self._adopted.discard)
        await asyncio.wait([task])  # not ``await task``: cancelling this waiter must not cancel it
        if task.cancelled() or task.exception() is not None:
            self.cancel()  # abandoned: the later ones of its key must not overtake it; read again
            return False
        return True

    async def _ended(self, record: Any, at: ParkedAt) -> None:
        await self._back(record, at)
        await self._progress.done(record.offset)

    def _drop(self, key: bytes | None) -> None:
        dropped = self._keys.pop(key, ())
        self.held -= len(dropped)
        for _, at in dropped:
            self.waiting[at.target] -= at.recovers

    def cancel(self) -> None:
        """The partition moved: no waiter runs anything more (routines already adopted drain in the
        engine); its next owner reads on from the committed position."""
        self.moved = True
        for waiter in list(self._waiters.values()):
            waiter.cancel()

    @property
    def busy(self) -> bool:
        """Whether records it brought back still run in the engine (a new lane waits for them)."""
        return bool(self._adopted)

    async def settled(self) -> bool:
        """Wait until no waiter is left; False when the partition moved meanwhile."""
        while self._waiters:
            await asyncio.wait(list(self._waiters.values()))
        return not self.moved
