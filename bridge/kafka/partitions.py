"""The engine's state of one assigned command partition, the pure questions asked of it, and the
rebalance listener that tells the engine of partitions moving."""

from __future__ import annotations

import asyncio
import contextvars
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from bridge.kafka.fence import HOME, Fence
from bridge.kafka.offsets import OffsetTracker
from bridge.messages.records import Incoming


@dataclass(eq=False)
class Partition:
    """One assigned command partition: its records by key, its offsets, its running key routines."""

    tp: TopicPartition
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    keys: dict[bytes, deque[Incoming]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    committed: int | None = None
    first_seen: int | None = None
    started: int = -1  # highest offset handed to the handler
    next_offset: int = 0  # after the last accepted record: lower ones are the client re-reading
    drain_below: int | None = None  # set when closing: only lower offsets may still start
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once the partition's state is restored
    fence: Fence | None = None  # the member's proof of ownership (bridge/kafka/fence.py); None: transactions
    fenced: bool = False  # the member lost its session: nothing more starts or is written here
    # key -> what to call once its first record here moves on (parked work waiting behind it)
    _watching: dict[bytes, list[Callable[[], None]]] = field(default_factory=dict, init=False, repr=False)

    @property
    def closing(self) -> bool:
        return self.drain_below is not None

    def close(self) -> None:
        if self.drain_below is None:
            self.drain_below = self.started + 1
        watching, self._watching = self._watching, {}
        for calls in watching.values():  # whoever waits for a key here asks again, and finds it closing
            for call in calls:
                call()

    def adopt(self, work: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
        """Run ``work`` as one of this partition's routines: a revocation drains it (and cancels it
        after the grace period) like any other. The routine runs inside the partition
        (``fence.HOME``): what it starts and writes is fenced with it."""
        context = contextvars.copy_context()
        context.run(HOME.set, self)
        task = asyncio.create_task(work, name=name, context=context)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def holds_before(self, key: bytes, offset: int) -> bool:
        """Whether a record of ``key`` earlier than ``offset`` is still here (queued or running)."""
        queue = self.keys.get(key)
        return queue is not None and bool(queue) and queue[0].offset < offset

    def watch_key(self, key: bytes, call: Callable[[], None]) -> None:
        """Call ``call()`` once, when the first record of ``key`` here moves on (answered, abandoned)
        or the partition closes: then :meth:`holds_before` may have changed."""
        self._watching.setdefault(key, []).append(call)

    def advance(self, queue: deque[Incoming], key: bytes | None) -> None:
        """The key routine is done with the first record of its ``queue``: the next one is first."""
        queue.popleft()
        if key is not None:
            self.key_moved(key)

    def drop_key(self, key: bytes) -> None:
        """The key routine of ``key`` ended: nothing of the key is here any more."""
        del self.keys[key]
        self.key_moved(key)

    def key_moved(self, key: bytes) -> None:
        """The key's first record left (answered or abandoned): tell the watchers."""
        for call in self._watching.pop(key, ()):
            call()

    def lag(self, highwater: int | None) -> int | None:
        base = self.committed if self.committed is not None else self.first_seen
        return None if highwater is None or base is None else max(0, highwater - base)


def to_commit(partitions: Iterable[Partition]) -> dict[TopicPartition, int]:
    """Pure: the committable offset of every partition that moved since its last commit."""
    offsets = {}
    for p in partitions:
        offset = p.tracker.committable()
        if offset is not None and offset != p.committed:
            offsets[p.tp] = offset
    return offsets


def known_offset(p: Partition) -> int | None:
    """Pure: an offset of an unfenced partition that is safe to commit again (none moves backwards, none
    skips an unfinished record): the committable one, else the last committed, else the first read."""
    if p.fenced:
        return None
    for offset in (p.tracker.committable(), p.committed, p.first_seen):
        if offset is not None:
            return offset
    return None


def topic_name(tp: TopicPartition) -> str:
    return f"{tp.topic}[{tp.partition}]"


def oldest_pending_age(partitions: Iterable[Partition], now: float) -> float:
    """Pure: seconds since the oldest unfinished record of any partition was accepted (0 if none)."""
    starts = [s for p in partitions if (s := p.tracker.oldest_pending_since()) is not None]
    return max(0.0, now - min(starts)) if starts else 0.0


class Rebalances(ConsumerRebalanceListener):  # type: ignore[misc]
    """Hands the consumer's rebalance callbacks to the engine."""

    def __init__(
        self,
        on_revoked: Callable[[Iterable[TopicPartition]], Awaitable[None]],
        on_assigned: Callable[[Iterable[TopicPartition]], None],
    ) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._on_assigned(assigned)
