"""The in-memory index of one command partition's ledger: which ids ran, compactly. Pure.

Each remembered id costs one dict slot plus two small ints (about 110 bytes on CPython 3.11,
measured in bench/): the key is a 60-bit hash of the command id, the value packs the minute of the
last write, 29 bits of the payload fingerprint, done/error flags and the attempt count. Both stay
below 2**60, the largest size of a two-digit CPython int. A hash collision between two ids of one
partition (about 1 in 10**12 at a million ids) would make the second look like a reused id.

Insertion order is write order (an update moves the id to the end), so expiry pops from the front.

Example::

    index = CommandIndex(retention_s=604_800)
    index.put("cmd-1", fp, done=True, error=False, attempt=1, at_ms=now_ms)
    seen = index.get("cmd-1")
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

EPOCH_MS = 1_704_067_200_000  # 2024-01-01T00:00:00Z: minutes since then fit 24 bits until 2055
_MINUTE_MS = 60_000
_FP_BITS = 29
_FLAG_BITS = 5  # done, error, 3 bits of attempt count
_MAX_ATTEMPT = 7


@dataclass(frozen=True, slots=True)
class Remembered:
    """What the index knows about one id."""

    done: bool
    error: bool
    attempt: int
    fp: int  # the top 29 bits of the 64-bit fingerprint
    minute: int


def id_hash(command_id: str) -> int:
    return int.from_bytes(hashlib.blake2b(command_id.encode(), digest_size=8).digest(), "big") >> 4


def short_fp(fingerprint: int) -> int:
    return fingerprint >> (64 - _FP_BITS)


def pack(fp: int, *, done: bool, error: bool, attempt: int, at_ms: int) -> int:
    minute = max(0, (at_ms - EPOCH_MS) // _MINUTE_MS)
    flags = int(done) | int(error) << 1 | min(attempt, _MAX_ATTEMPT) << 2
    return (minute << (_FP_BITS + _FLAG_BITS)) | (short_fp(fp) << _FLAG_BITS) | flags


def unpack(value: int) -> Remembered:
    return Remembered(
        done=bool(value & 1),
        error=bool(value & 2),
        attempt=(value >> 2) & _MAX_ATTEMPT,
        fp=(value >> _FLAG_BITS) & ((1 << _FP_BITS) - 1),
        minute=value >> (_FP_BITS + _FLAG_BITS),
    )


def _dead_letter_id(offset: int) -> str:
    """The index's name for a dead-lettered offset: never a command id (those have no spaces)."""
    return f"dead letter {offset}"


class CommandIndex:
    """Remembered command ids of one command partition, forgotten after ``retention_s``."""

    __slots__ = ("_entries", "_retention_min")

    def __init__(self, retention_s: float) -> None:
        self._entries: dict[int, int] = {}
        self._retention_min = int(retention_s // 60)

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, command_id: str) -> Remembered | None:
        return self.get_hashed(id_hash(command_id))

    def get_hashed(self, key: int) -> Remembered | None:
        value = self._entries.get(key)
        return None if value is None else unpack(value)

    def clear(self) -> None:
        self._entries.clear()

    def put(self, command_id: str, fp: int, *, done: bool, error: bool, attempt: int, at_ms: int) -> None:
        self.put_hashed(id_hash(command_id), pack(fp, done=done, error=error, attempt=attempt, at_ms=at_ms))

    def put_hashed(self, key: int, value: int) -> None:
        self._entries.pop(key, None)  # move to the end: insertion order stays write order
        self._entries[key] = value

    def mark_dead_letter(self, offset: int, at_ms: int) -> None:
        """The record at ``offset`` was dead-lettered (kept and expired like a done command)."""
        self.put(_dead_letter_id(offset), 0, done=True, error=True, attempt=1, at_ms=at_ms)

    def dead_lettered(self, offset: int) -> bool:
        return self.get(_dead_letter_id(offset)) is not None

    def forget_hashed(self, key: int) -> None:
        self._entries.pop(key, None)

    def expire(self, now_ms: int) -> int:
        """Forget ids whose last write is older than the retention; returns how many were dropped."""
        horizon = (now_ms - EPOCH_MS) // _MINUTE_MS - self._retention_min
        shift = _FP_BITS + _FLAG_BITS
        old = []
        for key, value in self._entries.items():
            if value >> shift >= horizon:
                break
            old.append(key)
        for key in old:
            del self._entries[key]
        return len(old)

    def is_fresh(self, at_ms: int, now_ms: int) -> bool:
        """Whether an entry written at ``at_ms`` is still within the retention (restore skips the rest)."""
        return (at_ms - EPOCH_MS) // _MINUTE_MS >= (now_ms - EPOCH_MS) // _MINUTE_MS - self._retention_min
