"""Tracked-workflow entries: the second kind of entry in the ledger topic. Pure.

Keyed ``trk:<command topic>:<command id>`` in the ledger partition of the command's partition, so
a tracked workflow moves with its command partition. The entry is written when tracking starts
(after the ``queued`` / ``applied`` outcome, before the ledger's ``done``), rewritten after each
lifecycle event of a change, and deleted with a tombstone after the terminal event. It never holds
a command offset: the command is committed as soon as its outcome and entries are acknowledged.

Example::

    key, value = encode(entry)
    restored = decode(key, value)  # None for a tombstone or a value this version cannot read
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

import orjson
from pydantic import BaseModel, ConfigDict, Field

from bridge.providers.readings import RunState

TRACKED_PREFIX = b"trk:"
VERSION = 1


class TrackedEntryModel(BaseModel):
    """The JSON value of a tracked-workflow entry (published in ``topics/schemas``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    v: int = Field(description="Entry format version.")
    kind: str = Field(description='"tracked"; readers skip kinds they do not know.')
    target: str
    operation: str
    key: str | None = Field(description="The command's Kafka key, base64; lifecycle events carry it.")
    ref: dict[str, str] = Field(description="What the provider's status read needs (run id, ...).")
    offset: int = Field(ge=0, description="Offset of the command record (the event ids derive from it).")
    started: int = Field(description="Unix ms of the outcome that started tracking.")
    state: str | None = Field(description="The last reported lifecycle state; null before the first.")
    waiting_for: str | None = None
    seq: int = Field(ge=0, description="Lifecycle events published so far.")
    trace: dict[str, str] | None = Field(
        default=None,
        description="The command's W3C trace context (traceparent, tracestate): its events carry it.",
    )


@dataclass(frozen=True, slots=True)
class TrackedEntry:
    topic: str
    partition: int
    command_id: str
    target: str
    operation: str
    key: bytes | None
    ref: tuple[tuple[str, str], ...]
    offset: int
    started_ms: int
    state: RunState | None = None
    waiting_for: str | None = None
    seq: int = 0
    trace: tuple[tuple[str, str], ...] = ()  # traceparent (and tracestate) for the lifecycle events


def entry_key(topic: str, command_id: str) -> bytes:
    return TRACKED_PREFIX + topic.encode() + b":" + command_id.encode()


def encode(entry: TrackedEntry) -> tuple[bytes, bytes]:
    value = {
        "v": VERSION,
        "kind": "tracked",
        "target": entry.target,
        "operation": entry.operation,
        "key": base64.b64encode(entry.key).decode() if entry.key is not None else None,
        "ref": dict(entry.ref),
        "offset": entry.offset,
        "started": entry.started_ms,
        "state": entry.state.value if entry.state else None,
        "waiting_for": entry.waiting_for,
        "seq": entry.seq,
    }
    if entry.trace:
        value["trace"] = dict(entry.trace)
    return entry_key(entry.topic, entry.command_id), orjson.dumps(value)


def split_key(key: bytes | None) -> tuple[str, str] | None:
    """(command topic, command id) of a tracked entry's key; None for other kinds."""
    if key is None or not key.startswith(TRACKED_PREFIX):
        return None
    topic, sep, command_id = key[len(TRACKED_PREFIX) :].decode("utf-8", "replace").partition(":")
    return (topic, command_id) if sep else None


def decode(key: bytes | None, value: bytes | None, partition: int) -> TrackedEntry | None:
    """The entry, or None for a tombstone, another kind, or a value this version cannot read."""
    names = split_key(key)
    if names is None or value is None:
        return None
    try:
        doc = orjson.loads(value)
        raw_key = doc["key"]
        return TrackedEntry(
            names[0],
            partition,
            names[1],
            str(doc["target"]),
            str(doc["operation"]),
            base64.b64decode(raw_key) if isinstance(raw_key, str) else None,
            tuple(sorted((str(k), str(v)) for k, v in doc["ref"].items())),
            int(doc["offset"]),
            int(doc["started"]),
            RunState(doc["state"]) if doc.get("state") else None,
            doc.get("waiting_for"),
            int(doc.get("seq", 0)),
            tuple((str(k), str(v)) for k, v in (doc.get("trace") or {}).items()),
        )
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError, AttributeError):
        return None
