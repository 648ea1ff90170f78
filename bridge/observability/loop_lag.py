"""How late the event loop runs: a timer set for every ``interval_s`` fires late by however long the
loop was busy or blocked meanwhile (a long synchronous call, a machine short of CPU). Every command
waits that long too, so when latency rises and neither the provider nor Kafka explains it, this is
the series to read (``bridge_event_loop_lag_seconds``).

Example::

    task = asyncio.create_task(watch_loop_lag(metrics.loop_lag), name="loop-lag")
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

INTERVAL_S = 0.25  # four timers a second: too few to cost anything, enough to catch a stall


def lateness(asked_at: float, woke_at: float, interval_s: float) -> float:
    """How much later than asked a timer set at ``asked_at`` for ``interval_s`` ran (never negative)."""
    return max(0.0, woke_at - asked_at - interval_s)


async def watch_loop_lag(observe: Callable[[float], None], interval_s: float = INTERVAL_S) -> None:
    """Until cancelled: ``observe`` gets each timer's lateness, in seconds."""
    loop = asyncio.get_running_loop()
    while True:
        asked_at = loop.time()
        await asyncio.sleep(interval_s)
        observe(lateness(asked_at, loop.time(), interval_s))
