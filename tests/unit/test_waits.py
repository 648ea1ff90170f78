"""bridge.waits.within: a time-limited wait that never loses a cancellation (Python 3.11's wait_for does)."""

from __future__ import annotations

import asyncio

from bridge.waits import within


async def test_it_says_whether_the_awaited_thing_finished_in_time() -> None:
    done = asyncio.Event()
    done.set()
    assert await within(done.wait(), 1.0) is True
    assert await within(asyncio.Event().wait(), 0.01) is False
    assert await within(asyncio.Event().wait(), -5) is False  # a deadline already past: no wait


async def test_a_cancel_that_arrives_as_the_wait_ends_still_cancels() -> None:
    woken = asyncio.Event()
    after: list[str] = []

    async def stopping() -> None:
        await within(woken.wait(), 10)
        after.append("carried on")  # what asyncio.wait_for does on 3.11 in this same race

    task = asyncio.create_task(stopping())
    await asyncio.sleep(0.01)
    woken.set()  # the wait ends in this loop turn...
    task.cancel()  # ...and the stop arrives in the same one
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and after == []
