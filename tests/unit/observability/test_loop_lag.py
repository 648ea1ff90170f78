"""The event-loop lag series: a timer's lateness, observed while the loop is blocked and while not."""

from __future__ import annotations

import asyncio
import time

from bridge.observability.loop_lag import lateness, watch_loop_lag


def test_lateness_is_the_time_past_the_interval_and_never_negative() -> None:
    assert abs(lateness(10.0, 10.35, 0.25) - 0.1) < 1e-9
    assert lateness(10.0, 10.2, 0.25) == 0.0  # a clock that reads early is no lag


async def test_a_blocked_loop_is_seen_as_lag_and_a_free_one_as_almost_none() -> None:
    seen: list[float] = []
    watcher = asyncio.create_task(watch_loop_lag(seen.append, interval_s=0.02))
    await asyncio.sleep(0.1)  # free: timers run on time
    free = list(seen)
    time.sleep(0.15)  # noqa: ASYNC251  the point: a synchronous call holding the loop
    await asyncio.sleep(0.05)
    watcher.cancel()
    assert free and min(free) < 0.05  # on time while nothing held the loop (a busy machine may delay one)
    assert max(seen) >= 0.12, seen
