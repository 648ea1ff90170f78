"""Whether a local store may be trusted on assignment, from its changelog checkpoint. Pure.

A local store (:mod:`bridge.ledger.disk`) holds a copy of one ledger partition, and with it, in the
same atomic write, a checkpoint: which topic and partition it copies, how many partitions that topic
had, and the next changelog offset to apply. On assignment the store is trusted only when the
checkpoint is readable, names the same topic, partition and partition count, and its offset lies
within the partition's log (not before its first offset, which retention moved past records the
store never saw; not beyond its end, which a recreated topic or a restored backup would show), and
it is younger than the topic's tombstone horizon (compaction drops a tombstone the store has not
applied after ``delete.retention.ms``). Anything else is rebuilt from offset 0, with one line why.

Example::

    decision = decide(read_checkpoint(raw), Identity("bridge.ledger", 3, 12), start, end, now_ms=now,
                      max_age_ms=86_400_000)
    if decision.resume is None: ...  # wipe, then read the changelog from its beginning
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

VERSION = 1


@dataclass(frozen=True, slots=True)
class Identity:
    """Which changelog partition a store copies."""

    topic: str
    partition: int
    partitions: int  # the topic's partition count when the store was written


@dataclass(frozen=True, slots=True)
class Checkpoint:
    identity: Identity
    offset: int  # the next changelog offset to apply: every record before it is in the store
    written_ms: int  # when: a tombstone the store missed is compacted away after delete.retention.ms


class Corrupt:
    """A checkpoint that is there but cannot be read."""

    def __init__(self, why: str) -> None:
        self.why = why


@dataclass(frozen=True, slots=True)
class Decision:
    resume: int | None  # the changelog offset to read from; None: wipe and rebuild from the start
    reason: str  # one line for the log


def encode(checkpoint: Checkpoint) -> bytes:
    ident = checkpoint.identity
    return orjson.dumps(
        {
            "v": VERSION,
            "topic": ident.topic,
            "partition": ident.partition,
            "partitions": ident.partitions,
            "offset": checkpoint.offset,
            "written": checkpoint.written_ms,
        }
    )


def read_checkpoint(raw: bytes | None) -> Checkpoint | Corrupt | None:
    """None when there is none; :class:`Corrupt` when it cannot be read."""
    if raw is None:
        return None
    try:
        doc = orjson.loads(raw)
        if doc["v"] != VERSION:
            return Corrupt(f"checkpoint format {doc['v']!r}, this version reads {VERSION}")
        ident = Identity(str(doc["topic"]), int(doc["partition"]), int(doc["partitions"]))
        offset, written = int(doc["offset"]), int(doc["written"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        return Corrupt(f"checkpoint unreadable ({type(exc).__name__})")
    if offset < 0:
        return Corrupt(f"checkpoint offset {offset} is negative")
    return Checkpoint(ident, offset, written)


def decide(
    found: Checkpoint | Corrupt | None,
    expected: Identity,
    log_start: int | None,
    log_end: int,
    *,
    now_ms: int,
    max_age_ms: int,
) -> Decision:
    """Trust the store and read from its checkpoint, or rebuild (``resume`` None), and why.

    ``max_age_ms``: a checkpoint older than this is not trusted (set it at most to the topic's
    ``delete.retention.ms``: after that, compaction drops the tombstones the store has not applied).

    ``log_start``: the partition's first offset (None when unknown: then only a store whose checkpoint
    is 0 is kept, as nothing can have been compacted past it); ``log_end``: its end (high watermark).
    """
    if found is None:
        return Decision(None, "no local store checkpoint")
    if isinstance(found, Corrupt):
        return Decision(None, found.why)
    had = found.identity
    if had.topic != expected.topic or had.partition != expected.partition:
        return Decision(None, f"the store copies {had.topic}[{had.partition}], not this partition")
    if had.partitions != expected.partitions:
        return Decision(
            None,
            f"the topic had {had.partitions} partition(s) when the store was written, "
            f"now {expected.partitions}",
        )
    age_ms = now_ms - found.written_ms
    if age_ms > max_age_ms:
        return Decision(None, f"checkpoint is {age_ms / 1000:.0f}s old, more than {max_age_ms / 1000:.0f}s")
    if found.offset > log_end:
        return Decision(None, f"checkpoint offset {found.offset} is beyond the log end {log_end}")
    if log_start is None and found.offset > 0:
        return Decision(None, "the log's first offset is unknown")
    if log_start is not None and found.offset < log_start:
        return Decision(
            None,
            f"checkpoint offset {found.offset} is before the log start {log_start} (compacted or deleted)",
        )
    return Decision(
        found.offset, f"local store kept: reading the changelog from offset {found.offset} to {log_end}"
    )
