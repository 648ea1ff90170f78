"""Waiting for a call slot costs nothing (issue 26): the releaser wakes the waiter, no timer does.

The tests run on an event loop whose clock never advances, so that no timer can ever come due: a
waiter that gets its slot was handed it by the call that ended. The loop also counts the timers
scheduled, so that a polling loop or a per-waiter timer would show.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from bridge.pipeline.bulkheads import TargetLoad
from bridge.pipeline.slots import CallSlots


class FrozenLoop(asyncio.SelectorEventLoop):
    """Its clock stands still (no timer ever fires) and it counts the timers scheduled."""

    timers = 0

    def time(self) -> float:
        return 1000.0

    def call_at(self, when: float, callback: Any, *args: Any, **kw: Any) -> Any:  # type: ignore[override]
        self.timers += 1
        return super().call_at(when, callback, *args, **kw)


def frozen(main: Callable[[FrozenLoop], Coroutine[Any, Any, None]]) -> None:
    with asyncio.Runner(loop_factory=FrozenLoop) as runner:
        loop = runner.get_loop()
        assert isinstance(loop, FrozenLoop)
        runner.run(main(loop))


async def turns(n: int = 20) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


def test_a_waiter_is_woken_by_the_release_not_by_a_timer() -> None:
    async def main(loop: FrozenLoop) -> None:
        slots = CallSlots(1)
        assert await slots.acquire(5.0)
        waiter = asyncio.create_task(slots.acquire(5.0))
        await turns()
        assert not waiter.done()  # the clock never moves: nothing but the release can wake it
        slots.release()
        await turns(2)
        assert waiter.done() and waiter.result() is True
        assert slots.free == 0  # handed over, not returned to the pool

    frozen(main)


def test_a_thousand_waiters_share_one_deadline_timer_and_each_wakes_once_per_release() -> None:
    async def main(loop: FrozenLoop) -> None:
        slots = CallSlots(2)
        assert await slots.acquire(60.0) and await slots.acquire(60.0)
        before = loop.timers
        waiters = [asyncio.create_task(slots.acquire(60.0)) for _ in range(1000)]
        await turns()
        assert loop.timers - before == 1  # one timer for the earliest deadline, not one per waiter
        assert slots.waiting == 1000
        for _ in range(10):
            slots.release()
        await turns(3)
        done = [w for w in waiters if w.done()]
        assert done == waiters[:10]  # first come, first served
        assert all(w.result() for w in done)
        slots.refuse_all()
        await turns(3)
        assert all(w.done() for w in waiters)
        assert [w.result() for w in waiters[10:]] == [False] * 990
        assert loop.timers - before == 1

    frozen(main)


def test_a_newcomer_does_not_overtake_a_waiter() -> None:
    async def main(loop: FrozenLoop) -> None:
        slots = CallSlots(1)
        assert await slots.acquire(5.0)
        waiter = asyncio.create_task(slots.acquire(5.0))
        await turns()
        slots.release()  # handed to the waiter before it runs again
        assert not slots.try_acquire()
        await turns(2)
        assert waiter.result() is True

    frozen(main)


def test_a_cancelled_waiter_that_was_just_handed_a_slot_passes_it_on() -> None:
    async def main(loop: FrozenLoop) -> None:
        slots = CallSlots(1)
        assert await slots.acquire(5.0)
        first = asyncio.create_task(slots.acquire(5.0))
        second = asyncio.create_task(slots.acquire(5.0))
        await turns()
        slots.release()  # the slot goes to the first waiter, which is cancelled in the same turn
        first.cancel()
        await turns()
        assert first.cancelled()
        assert second.done() and second.result() is True

    frozen(main)


async def test_a_waiter_gives_up_at_its_deadline() -> None:
    slots = CallSlots(1)
    assert await slots.acquire(1.0)
    assert await slots.acquire(0.05) is False
    assert slots.waiting == 0
    slots.release()
    assert await slots.acquire(0.05) is True


def test_the_bulkhead_filling_while_its_target_is_down_refuses_its_waiters_at_once() -> None:
    async def main(loop: FrozenLoop) -> None:
        load = TargetLoad("a", limit=1, max_calls=1, silent_s=10.0, max_unanswered=3)
        assert await load.acquire_call(5.0)
        waiter = asyncio.create_task(load.acquire_call(5.0))
        await turns()
        load.enter(0.0)
        assert not waiter.done()
        load.circuit_changed(closed=False)  # down and at its share: pressure
        await turns(2)
        assert waiter.done() and waiter.result() is False

    frozen(main)


def test_a_call_that_ends_hands_its_slot_to_a_waiting_command() -> None:
    async def main(loop: FrozenLoop) -> None:
        load = TargetLoad("a", limit=10, max_calls=1, silent_s=10.0, max_unanswered=3)
        assert await load.acquire_call(5.0)
        token = load.call_started(0.0)
        waiter = asyncio.create_task(load.acquire_call(5.0))
        await turns()
        assert not waiter.done()
        load.call_ended(token, 0.05, answered=True)
        await turns(2)
        assert waiter.result() is True

    frozen(main)
