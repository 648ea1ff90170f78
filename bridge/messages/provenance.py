"""Provenance headers on records put back on a command topic by ``bridge dlq replay`` and ``bridge redrive``.

- ``bridge.replay.from``: ``topic/partition/offset`` of the record that asked for the replay (the dead
  letter, or the outcome event of a redrive).
- ``bridge.replay.count``: how many times this command record has been put back (1 the first time).
  A dead letter keeps the headers of the record it copies, so the count survives a second failure.
- ``bridge.redrive``: ``1`` on a command re-submitted because of its outcome: an explicit re-run of
  that command id, never an accidental duplicate.
"""

from __future__ import annotations

from collections.abc import Iterable

from bridge.messages.wire import Header

REPLAY_FROM = "bridge.replay.from"
REPLAY_COUNT = "bridge.replay.count"
REDRIVE = "bridge.redrive"
DLQ_HEADER_PREFIX = "dlq."
_OURS = frozenset({REPLAY_FROM, REPLAY_COUNT, REDRIVE})


def replay_count(headers: Iterable[Header]) -> int:
    """The record's replay count: 0 when it was never replayed (or the header is not a number)."""
    count = 0
    for name, value in headers:
        if name == REPLAY_COUNT and value is not None:
            text = value.decode("ascii", errors="replace")
            count = int(text) if text.isdigit() else count
    return count


def replay_headers(headers: Iterable[Header], origin: str, count: int, *, redrive: bool) -> list[Header]:
    """The original headers without dead-letter and old provenance headers, plus the new provenance."""
    kept = [(k, v) for k, v in headers if k not in _OURS and not k.startswith(DLQ_HEADER_PREFIX)]
    kept += [(REPLAY_FROM, origin.encode()), (REPLAY_COUNT, str(count).encode())]
    return [*kept, (REDRIVE, b"1")] if redrive else kept
