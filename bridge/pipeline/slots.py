"""A target's call slots, handed from the call that ends straight to the command that waits longest.

A command that waits for a slot costs nothing while it waits: it sleeps on a future of its own, and
only three things wake it. The end of a call hands its slot to the oldest waiter (``release``); the
target's bulkhead filling while it is down refuses every waiter at once (``refuse_all``); and the
waiter's own deadline (its retry budget or its expiry), kept by **one** timer per target armed at the
earliest deadline of those waiting, not one per waiter and never a short re-arming one. While
commands wait, a ``watchdog`` may also run every ``watch_s`` (the target's ``silent_s``, seconds): the
executor uses it to open the circuit of a target whose calls in flight all hang.

Example::

    slots = CallSlots(64)
    if await slots.acquire(within_s=30.0):   # True: the slot is ours; False: deadline or refused
        try:
            ...                              # the call
        finally:
            slots.release()                  # hands it to the oldest waiter, if any
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import Callable

_order = itertools.count()


class CallSlots:
    """``size`` slots; a waiter is woken by the slot's release, by ``refuse_all`` or at its deadline."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.free = size
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._deadlines: list[tuple[float, int, asyncio.Future[bool]]] = []  # heap by loop time
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._watch: asyncio.TimerHandle | None = None
        self.watchdog: Callable[[], None] | None = None
        """Called every ``watch_s`` while some command waits (the executor's stalled-target check)."""
        self.watch_s = 1.0

    @property
    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    @property
    def available(self) -> bool:
        """A slot is free and nobody waits for one (a newcomer does not overtake a waiter)."""
        return self.free > 0 and not self._live_waiters()

    def try_acquire(self) -> bool:
        if not self.available:
            return False
        self.free -= 1
        return True

    async def acquire(self, within_s: float) -> bool:
        """A slot (True), or False when ``within_s`` passed or the waiters were refused first."""
        if self.try_acquire():
            return True
        if within_s <= 0:
            return False
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bool] = loop.create_future()
        self._waiters.append(future)
        at = loop.time() + within_s
        if len(self._deadlines) > 2 * len(self._waiters) + 64:  # most were handed a slot long ago
            self._deadlines = [d for d in self._deadlines if not d[2].done()]
            heapq.heapify(self._deadlines)
        heapq.heappush(self._deadlines, (at, next(_order), future))
        if at < self._timer_at:
            self._arm(loop, at)
        if self._watch is None and self.watchdog is not None:
            self._watch = loop.call_later(self.watch_s, self._watched)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.result():
                self.release()  # handed a slot in the same turn as the cancellation: pass it on
            raise
        finally:
            if not self._live_waiters():
                self._idle()

    def release(self) -> None:
        """A call ended: its slot goes to the oldest waiter, or back to the free ones."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(True)
                return
        self.free = min(self.size, self.free + 1)

    def refuse_all(self) -> None:
        """Every waiter gives up now (its target is down and at its share)."""
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(False)

    def _live_waiters(self) -> bool:
        while self._waiters and self._waiters[0].done():
            self._waiters.popleft()
        return bool(self._waiters)

    def _arm(self, loop: asyncio.AbstractEventLoop, at: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._expire)

    def _expire(self) -> None:
        """The earliest deadline came: those whose deadline passed give up; re-arm for the next."""
        self._timer, self._timer_at = None, float("inf")
        loop = asyncio.get_running_loop()
        now = loop.time()
        heap = self._deadlines
        while heap and (heap[0][0] <= now or heap[0][2].done()):
            _, _, future = heapq.heappop(heap)
            if not future.done():
                future.set_result(False)
        if heap:
            self._arm(loop, heap[0][0])

    def _watched(self) -> None:
        self._watch = None
        if self.watchdog is not None:
            self.watchdog()
        if self._live_waiters() and self.watchdog is not None:
            self._watch = asyncio.get_running_loop().call_later(self.watch_s, self._watched)

    def _idle(self) -> None:
        """Nobody waits: drop the deadlines and the timers (the heap holds only finished waiters)."""
        self._deadlines.clear()
        for timer in (self._timer, self._watch):
            if timer is not None:
                timer.cancel()
        self._timer, self._timer_at, self._watch = None, float("inf"), None
