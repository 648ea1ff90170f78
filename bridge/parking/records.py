"""Parked records and the parked set. Pure.

A parked record is the command record itself (key, value, original headers) on the parking topic,
partition p for command partition p, with ``bridge.parked.*`` headers: where it came from, when it
may run again (``due``) and when it must have its outcome at the latest (``until``), and, for an
early return when its target recovers (bridge/parking/recovery.py), its target, when it was parked
(``since``) and whether a recovery of its target releases it (``recovers``: not for a provider's own
rate limit, whose ``Retry-After`` holds whatever the circuit does). The parked set
holds, per command partition and key, the offsets of that key's commands that are parked now; a
command of a parked key may run only when no earlier command of its key is parked.

Example::

    at = ParkedAt("workflow.run.commands", 1187, record_ms, due_ms, until_ms, 1, "circuit_open")
    headers = parked_headers(at, original)
    where = read_parked(headers)
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from bridge.messages.wire import Header

PREFIX = "bridge.parked."
TOPIC, OFFSET, TIME, DUE, UNTIL, COUNT, REASON, TARGET, SINCE, RECOVERS = (
    PREFIX + name
    for name in ("topic", "offset", "time", "due", "until", "count", "reason", "target", "since", "recovers")
)


@dataclass(frozen=True, slots=True)
class ParkedAt:
    """What a parked record's headers say."""

    topic: str  # the command topic it came from
    offset: int  # its offset there: the key order
    timestamp_ms: int | None  # the command record's own timestamp (ttl_s and max_age_s count from it)
    due_ms: int  # Unix ms: not run before
    until_ms: int  # Unix ms: answered by then, whatever its target does
    count: int  # how many times it was parked
    reason: str = ""
    target: str = ""  # the target it waits for ("": unknown, written by an older bridge)
    since_ms: int = 0  # Unix ms: when it was parked (this time)
    recovers: bool = False  # its target's recovery makes it due at once


def parked_headers(at: ParkedAt, original: Iterable[Header]) -> list[Header]:
    kept = [(name, value) for name, value in original if not name.startswith(PREFIX)]
    fields = (
        (TOPIC, at.topic),
        (OFFSET, at.offset),
        (TIME, -1 if at.timestamp_ms is None else at.timestamp_ms),
        (DUE, at.due_ms),
        (UNTIL, at.until_ms),
        (COUNT, at.count),
        (REASON, at.reason),
        (TARGET, at.target),
        (SINCE, at.since_ms),
        (RECOVERS, int(at.recovers)),
    )
    return [*kept, *((name, str(value).encode()) for name, value in fields)]


def read_parked(headers: Iterable[Header]) -> ParkedAt | None:
    """The parking headers of a record, or None when it has none (or they are unreadable)."""
    found = {name: value for name, value in headers if name.startswith(PREFIX) and value is not None}
    try:
        return ParkedAt(
            found[TOPIC].decode(),
            int(found[OFFSET]),
            None if (stamp := int(found[TIME])) < 0 else stamp,
            int(found[DUE]),
            int(found[UNTIL]),
            int(found[COUNT]),
            found.get(REASON, b"").decode(),
            found.get(TARGET, b"").decode(),
            int(found.get(SINCE, b"0")),
            found.get(RECOVERS) == b"1",
        )
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


ANSWERED_TOPIC = "bridge.answered.topic"  # not under PREFIX: a marker is no parked command
ANSWERED_OFFSET = "bridge.answered.offset"


def answered_marker(command_topic: str, offset: int) -> list[Header]:
    """The headers of the record that says, in the parking partition, that the parked command at
    ``offset`` of ``command_topic`` got its outcome: the partition's next owner does not bring it back
    (without the ledger nothing else would keep it from running twice)."""
    return [(ANSWERED_TOPIC, command_topic.encode()), (ANSWERED_OFFSET, str(offset).encode())]


def read_answered(headers: Iterable[Header]) -> tuple[str, int] | None:
    """(command topic, command offset) of an answered marker, or None for any other record."""
    found = {name: value for name, value in headers if value is not None}
    try:
        return found[ANSWERED_TOPIC].decode(), int(found[ANSWERED_OFFSET])
    except (KeyError, ValueError, UnicodeDecodeError):
        return None


def original_headers(headers: Iterable[Header]) -> tuple[Header, ...]:
    return tuple((name, value) for name, value in headers if not name.startswith(PREFIX))


PartitionKey = tuple[str, int]


@dataclass
class ParkedSet:
    """Per command partition and key: the offsets parked now."""

    _keys: dict[PartitionKey, dict[bytes, set[int]]] = field(default_factory=dict)

    def add(self, where: PartitionKey, key: bytes, offset: int) -> None:
        self._keys.setdefault(where, {}).setdefault(key, set()).add(offset)

    def discard(self, where: PartitionKey, key: bytes, offset: int) -> None:
        keys = self._keys.get(where, {})
        offsets = keys.get(key)
        if offsets is not None:
            offsets.discard(offset)
            if not offsets:
                del keys[key]

    def blocked(self, where: PartitionKey, key: bytes, offset: int) -> bool:
        """Whether an earlier command of this key is parked (so this one must park behind it)."""
        offsets = self._keys.get(where, {}).get(key)
        return offsets is not None and min(offsets) < offset

    def holds(self, where: PartitionKey, key: bytes, offset: int) -> bool:
        return offset in self._keys.get(where, {}).get(key, ())

    def replace(self, where: PartitionKey, keys: dict[bytes, set[int]]) -> None:
        self._keys[where] = keys

    def forget(self, where: PartitionKey) -> None:
        self._keys.pop(where, None)

    def __len__(self) -> int:
        return sum(len(offsets) for keys in self._keys.values() for offsets in keys.values())
