"""What the bridge's topics say about one command id, record by record. Pure.

Each ``read_*`` function takes one raw record of one of the bridge's topics (already known to
mention the id somewhere in its bytes) and returns the fact it states about the command, or None
when the record is about another command after all. :mod:`bridge.status.story` puts the facts in
order; :mod:`bridge.status.lookup` finds the records.

Example::

    fact = read_command(raw, CommandFamily.RUN, "cmd-1")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from bridge.ledger.entries import COMMAND_PREFIX, command_of
from bridge.messages.commands import CommandFamily
from bridge.messages.parsing import DeadLetter, Invalid
from bridge.messages.wire import Header
from bridge.parking.records import read_parked
from bridge.providers.parsing import parse_command

UNBOUNDED = 1 << 40  # the size limit handed to the parser: a lookup reads what the bridge has read


@dataclass(frozen=True, slots=True)
class RawRecord:
    """One record as read from a partition, before it is understood."""

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...] = ()


@dataclass(frozen=True, slots=True, order=True)
class Where:
    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}[{self.partition}]@{self.offset}"


@dataclass(frozen=True, slots=True)
class CommandSeen:
    """A command record carrying the id (the original, a duplicate, or a reuse of the id)."""

    where: Where
    timestamp_ms: int
    key: bytes | None
    target: str | None
    operation: str | None
    payload: dict[str, Any] | None = field(default=None, compare=False)


@dataclass(frozen=True, slots=True)
class LedgerSeen:
    """A ledger entry of the id: ``dispatched``, ``done``, or ``released`` (a tombstone: it was parked)."""

    topic: str  # the command topic it is about
    state: str
    at_ms: int
    command_offset: int | None
    attempt: int
    status: str | None = None
    ref: str | None = None


@dataclass(frozen=True, slots=True)
class ParkedSeen:
    where: Where  # on the parking topic
    command: Where  # the command record it holds
    at_ms: int  # when it was parked (the parking record's timestamp)
    due_ms: int
    until_ms: int
    count: int
    reason: str


@dataclass(frozen=True, slots=True)
class OutcomeSeen:
    where: Where
    at_ms: int
    source: Where  # the command record it answers
    status: str
    provider_ref: str | None
    http_status: int | None
    attempts: int
    error_kind: str | None
    error_message: str | None


@dataclass(frozen=True, slots=True)
class DeadLetterSeen:
    where: Where
    at_ms: int
    source: Where | None
    reason: str
    detail: str


@dataclass(frozen=True, slots=True)
class LifecycleSeen:
    where: Where
    at_ms: int
    source: Where
    status: str
    provider_status: str | None
    waiting_for: str | None
    detail: str | None
    sequence: int


def _where(raw: RawRecord) -> Where:
    return Where(raw.topic, raw.partition, raw.offset)


def read_command(raw: RawRecord, family: CommandFamily, command_id: str) -> CommandSeen | None:
    parsed = parse_command(raw.value, family, UNBOUNDED, raw.headers)
    if isinstance(parsed, DeadLetter):
        return None
    if isinstance(parsed, Invalid):
        if parsed.command_id != command_id:
            return None
        target, operation = parsed.target, parsed.operation
    else:
        if parsed.command.id != command_id:
            return None
        target, operation = parsed.command.target, parsed.command.operation
    payload = _json_object(raw.value)
    return CommandSeen(_where(raw), raw.timestamp_ms, raw.key, target, operation, payload)


def read_ledger(raw: RawRecord, command_topics: frozenset[str], command_id: str) -> LedgerSeen | None:
    if raw.key is None or not raw.key.startswith(COMMAND_PREFIX):
        return None  # tracked-workflow entries (trk:) add nothing the lifecycle events do not say
    named = command_of(raw.key)
    if named is None or named[1] != command_id or named[0] not in command_topics:
        return None
    if raw.value is None:
        return LedgerSeen(named[0], "released", raw.timestamp_ms, None, 0)
    doc = _json_object(raw.value)
    if doc is None or not isinstance(doc.get("state"), str):
        return None
    return LedgerSeen(
        named[0],
        doc["state"],
        _int(doc.get("at"), raw.timestamp_ms),
        _int(doc.get("offset"), -1),
        _int(doc.get("attempt"), 1),
        _str(doc.get("status")),
        _str(doc.get("ref")),
    )


def read_parking(raw: RawRecord, commands: frozenset[Where]) -> ParkedSeen | None:
    at = read_parked(raw.headers)
    if at is None:
        return None
    command = Where(at.topic, raw.partition, at.offset)
    if command not in commands:
        return None
    return ParkedSeen(_where(raw), command, raw.timestamp_ms, at.due_ms, at.until_ms, at.count, at.reason)


def read_outcome(raw: RawRecord, command_id: str) -> OutcomeSeen | None:
    found = _event_about(raw, command_id)
    if found is None:
        return None
    data, source = found
    error: dict[str, Any] = data["error"] if isinstance(data.get("error"), dict) else {}
    return OutcomeSeen(
        _where(raw),
        raw.timestamp_ms,
        source,
        str(data.get("status")),
        _str(data.get("provider_ref")),
        data.get("http_status") if isinstance(data.get("http_status"), int) else None,
        _int(data.get("attempts"), 0),
        _str(error.get("kind")),
        _str(error.get("message")),
    )


def read_dead_letter(raw: RawRecord, commands: frozenset[Where], command_id: str) -> DeadLetterSeen | None:
    meta = {name: (value or b"").decode("utf-8", "replace") for name, value in raw.headers}
    try:
        source: Where | None = Where(
            meta["dlq.source.topic"], int(meta["dlq.source.partition"]), int(meta["dlq.source.offset"])
        )
    except (KeyError, ValueError):
        source = None
    if source not in commands and not _names(raw.value, command_id):
        return None
    reason, detail = meta.get("dlq.reason", "?"), meta.get("dlq.detail", "")
    return DeadLetterSeen(_where(raw), raw.timestamp_ms, source, reason, detail)


def read_lifecycle(raw: RawRecord, command_id: str) -> LifecycleSeen | None:
    found = _event_about(raw, command_id)
    if found is None:
        return None
    data, source = found
    return LifecycleSeen(
        _where(raw),
        raw.timestamp_ms,
        source,
        str(data.get("status")),
        _str(data.get("provider_status")),
        _str(data.get("waiting_for")),
        _str(data.get("detail")),
        _int(data.get("sequence"), 0),
    )


def _event_about(raw: RawRecord, command_id: str) -> tuple[dict[str, Any], Where] | None:
    """An outcome's or lifecycle event's ``data`` and the command record it names, when it is about
    ``command_id``."""
    event = _json_object(raw.value) or {}
    data = event.get("data")
    if not isinstance(data, dict) or data.get("command_id") != command_id:
        return None
    source = _source(data.get("source"))
    return None if source is None else (data, source)


def _names(value: bytes | None, command_id: str) -> bool:
    """Whether a dead letter's value (the command record's own) is a command with this id."""
    doc = _json_object(value) or {}
    return doc.get("id") == command_id  # a CloudEvent's id is the command's id too


def _source(value: Any) -> Where | None:
    if not isinstance(value, dict):
        return None
    topic, partition, offset = value.get("topic"), value.get("partition"), value.get("offset")
    if isinstance(topic, str) and isinstance(partition, int) and isinstance(offset, int):
        return Where(topic, partition, offset)
    return None


def _json_object(value: bytes | None) -> dict[str, Any] | None:
    if not value:
        return None
    text = value[5:] if value[:1] == b"\x00" else value  # Schema Registry framing
    try:
        doc = orjson.loads(text)
    except orjson.JSONDecodeError:
        return None
    return doc if isinstance(doc, dict) else None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
