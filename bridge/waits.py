"""Waiting with a time limit without losing a cancellation.

On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives in the same loop turn as the
awaited thing finishing (CPython gh-86296, fixed in 3.12): a task stopped that way carries on as if
never cancelled, and whoever awaits its end waits forever. ``asyncio.timeout`` does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable


async def within(awaitable: Awaitable[object], timeout_s: float) -> bool:
    """Await ``awaitable`` for at most ``timeout_s`` seconds: True when it finished in time."""
    try:
        async with asyncio.timeout(max(0.0, timeout_s)):
            await awaitable
    except TimeoutError:
        return False
    return True
