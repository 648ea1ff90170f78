"""Which offset of a partition is safe to commit. Pure.

Records of one partition finish out of order (different keys run concurrently). The committable
offset is one past the longest prefix of finished records, so a crash never skips an unfinished one.
"""

from __future__ import annotations

from collections import deque


class OffsetTracker:
    def __init__(self) -> None:
        self._pending: deque[int] = deque()
        self._done: set[int] = set()
        self._committable: int | None = None
        self._oldest_started_at: dict[int, float] = {}

    def add(self, offset: int, now: float = 0.0) -> None:
        if self._pending and offset <= self._pending[-1]:
            raise ValueError(f"offset {offset} is not after {self._pending[-1]}")
        self._pending.append(offset)
        self._oldest_started_at[offset] = now

    def done(self, offset: int) -> None:
        self._done.add(offset)
        while self._pending and self._pending[0] in self._done:
            head = self._pending.popleft()
            self._done.discard(head)
            self._oldest_started_at.pop(head, None)
            self._committable = head + 1

    def committable(self) -> int | None:
        """The offset to commit (next to read), or None when nothing has finished yet."""
        return self._committable

    def pending(self) -> int:
        return len(self._pending)

    def oldest_pending_since(self) -> float | None:
        """When the oldest unfinished record was accepted (same clock as ``add``)."""
        if not self._pending:
            return None
        return self._oldest_started_at.get(self._pending[0])


def may_start(offset: int, drain_below: int | None) -> bool:
    """Whether a queued record may still start: always, unless its partition is closing.

    A closing partition runs only records below ``drain_below`` (one past the highest offset already
    started). Those are exactly the records that must finish for the commit to cover every answered
    one; a record above it may be abandoned without any later offset having finished past it.
    """
    return drain_below is None or offset < drain_below
