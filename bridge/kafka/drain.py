"""Draining partitions that move (a revocation, a stop, a reset): what is running may finish within the
grace period, the rest is abandoned (uncommitted, so redelivered to the next owner).

Example::

    drained = await drain(partitions, settings.drain_grace_s)
"""

from __future__ import annotations

import asyncio
import logging

from bridge.kafka.partitions import Partition

log = logging.getLogger("bridge.engine")


async def drain(partitions: list[Partition], grace_s: float) -> int:
    """Close ``partitions``, let their routines finish within ``grace_s`` (none for a fenced partition:
    another member may own it already), cancel the rest; how many routines there were."""
    for p in partitions:
        p.close()
        p.ready.set()  # a key routine still waiting for the restore leaves at once
    tasks = [t for p in partitions for t in p.tasks]
    grace = 0.0 if any(p.fenced for p in partitions) else grace_s
    if not tasks:
        return 0
    log.info(
        "draining %d key routine(s) holding %d command(s) for up to %.1fs",
        len(tasks),
        sum(p.tracker.pending() for p in partitions),
        grace,
    )
    _, pending = await asyncio.wait(tasks, timeout=grace) if grace > 0 else (set(), set(tasks))
    for task in pending:
        task.cancel()
    if pending:
        log.warning("abandoned %d command(s) after the grace period; they will be redelivered", len(pending))
        await asyncio.wait(pending)
    return len(tasks)
