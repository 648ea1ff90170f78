"""The timer heap of tracked workflows (the tracker keeps one per target), and the backoff of each.
Pure: no clock, no I/O.

A workflow is rescheduled by pushing it again with a new due time; the older heap entry is skipped
when it surfaces (its due time no longer matches), so nothing is ever searched or removed.

Example::

    heap = TimerHeap()
    heap.push(workflow, now + first_poll_s)
    for workflow in heap.pop_due(now):
        ...
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass

from bridge.config.tracking import TargetTracking
from bridge.tracking.entries import TrackedEntry


@dataclass(slots=True, eq=False)
class Tracked:
    """One tracked workflow: its durable entry and its place in the schedule."""

    entry: TrackedEntry
    interval_s: float
    due: float = 0.0
    misses: int = 0  # consecutive reads that found no such run
    active: bool = True  # False once finished or forgotten: its heap entries are skipped


def next_interval(current_s: float, policy: TargetTracking, *, waiting: bool) -> float:
    """Doubling up to the cap; a run waiting on a human step is asked at the waiting interval."""
    if waiting:
        return policy.waiting_interval_s
    return min(policy.max_interval_s, current_s * 2)


def jittered(interval_s: float, jitter: float, roll: float) -> float:
    """``interval_s`` shortened by up to ``jitter`` of itself; ``roll`` is uniform in [0, 1).

    Never lengthened: a run that ends is read again within its interval (a jitter either way let
    a 16 s interval see a finished run 3 s late)."""
    return interval_s * (1.0 - jitter * roll)


def capped_due(due: float, started_s: float, horizon_s: float) -> float:
    """Never later than the horizon: the last look is when tracking gives up."""
    return min(due, started_s + horizon_s)


class TimerHeap:
    __slots__ = ("_counter", "_heap")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Tracked]] = []
        self._counter = itertools.count()

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, workflow: Tracked, due: float) -> None:
        workflow.due = due
        heapq.heappush(self._heap, (due, next(self._counter), workflow))

    def next_due(self) -> float | None:
        """The earliest live due time, dropping stale entries on the way."""
        while self._heap:
            due, _, workflow = self._heap[0]
            if workflow.active and workflow.due == due:
                return due
            heapq.heappop(self._heap)
        return None

    def pop_due(self, now: float, limit: int) -> list[Tracked]:
        """Up to ``limit`` live workflows due at ``now``, earliest first."""
        found: list[Tracked] = []
        while len(found) < limit and (due := self.next_due()) is not None and due <= now:
            found.append(heapq.heappop(self._heap)[2])
        return found
