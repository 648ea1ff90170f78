"""Waiting with a time limit without losing a cancellation, and background routines that never end silently.

On Python 3.11 ``asyncio.wait_for`` swallows a cancellation that arrives in the same loop turn as the
awaited thing finishing (CPython gh-86296, fixed in 3.12): a task stopped that way carries on as if
never cancelled, and whoever awaits its end waits forever. ``asyncio.timeout`` does not.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any


async def within(awaitable: Awaitable[object], timeout_s: float) -> bool:
    """Await ``awaitable`` for at most ``timeout_s`` seconds: True when it finished in time."""
    try:
        async with asyncio.timeout(max(0.0, timeout_s)):
            await awaitable
    except TimeoutError:
        return False
    return True


def log_crash(log: logging.Logger, what: str) -> Callable[[asyncio.Task[Any]], None]:
    """A done-callback for a background routine: its exception, if it ended with one, is logged as
    ``<what> crashed`` (nobody awaits such a task, so it would otherwise be lost)."""

    def callback(task: asyncio.Task[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("%s crashed", what, exc_info=task.exception())

    return callback
