"""Decode a Kafka record value into a command, a rejection, or a dead letter. Pure.

A value that cannot be read as a command at all (no usable ``id``) is a dead letter: there is
nobody to address an outcome to. A value that has an ``id`` but is otherwise wrong becomes a
``rejected`` outcome, so that the sender learns why.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson
from pydantic import TypeAdapter, ValidationError

from bridge.commands import (
    OPERATION_FAMILY,
    AnyCommand,
    Command,
    CommandFamily,
    ControlCommand,
    Operation,
    RunCommand,
)
from bridge.outcomes import ErrorKind

MAX_ID_LENGTH = 200
_ADAPTERS: dict[CommandFamily, TypeAdapter[Any]] = {
    CommandFamily.RUN: TypeAdapter(RunCommand),
    CommandFamily.CONTROL: TypeAdapter(ControlCommand),
}
_ANY_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnyCommand)


class DeadLetterReason(StrEnum):
    EMPTY_VALUE = "empty_value"
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_CLOUDEVENT = "bad_cloudevent"
    MISSING_ID = "missing_id"
    INTERNAL_ERROR = "internal_error"
    ID_REUSED = "id_reused"  # the ledger remembers this id with another payload: not executed


@dataclass(frozen=True, slots=True)
class DeadLetter:
    reason: DeadLetterReason
    detail: str


@dataclass(frozen=True, slots=True)
class Invalid:
    """The command has an id but cannot be executed: it earns a ``rejected`` outcome."""

    command_id: str
    target: str | None
    operation: str | None
    kind: ErrorKind
    message: str


@dataclass(frozen=True, slots=True)
class Parsed:
    command: Command


ParseResult = Parsed | Invalid | DeadLetter


def parse_command(value: bytes | None, family: CommandFamily, max_bytes: int) -> ParseResult:
    if value is None or len(value) == 0:
        return DeadLetter(DeadLetterReason.EMPTY_VALUE, "record has no value")
    if len(value) > max_bytes:
        return DeadLetter(DeadLetterReason.TOO_LARGE, f"value is {len(value)} bytes, limit is {max_bytes}")
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DeadLetter(DeadLetterReason.NOT_UTF8, f"value is not UTF-8 (byte {exc.start})")
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        return DeadLetter(DeadLetterReason.INVALID_JSON, f"value is not JSON: {exc}"[:300])
    if not isinstance(doc, dict):
        return DeadLetter(
            DeadLetterReason.NOT_AN_OBJECT, f"value is a JSON {type(doc).__name__}, not an object"
        )
    unwrapped = unwrap_cloudevent(doc) if "specversion" in doc else doc
    if isinstance(unwrapped, DeadLetter):
        return unwrapped
    return validate_command(unwrapped, family)


def unwrap_cloudevent(doc: dict[str, Any]) -> dict[str, Any] | DeadLetter:
    """A CloudEvents 1.0 structured envelope: ``data`` is the command and the event ``id`` its id."""
    if doc.get("specversion") != "1.0":
        return DeadLetter(DeadLetterReason.BAD_CLOUDEVENT, "only CloudEvents specversion 1.0 is supported")
    event_id = doc.get("id")
    if not _usable_id(event_id):
        return DeadLetter(DeadLetterReason.MISSING_ID, "CloudEvent has no usable 'id'")
    data = doc.get("data")
    if not isinstance(data, dict):
        return DeadLetter(
            DeadLetterReason.BAD_CLOUDEVENT, "CloudEvent 'data' must be a JSON object holding the command"
        )
    return {**data, "id": event_id}


def _usable_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def validate_command(doc: dict[str, Any], family: CommandFamily) -> ParseResult:
    command_id = doc.get("id")
    if not _usable_id(command_id):
        return DeadLetter(DeadLetterReason.MISSING_ID, "command has no 'id' string (1-200 characters)")
    assert isinstance(command_id, str)
    target = doc.get("target") if isinstance(doc.get("target"), str) else None
    operation = doc.get("operation") if isinstance(doc.get("operation"), str) else None
    home = _family_of(operation)
    if home is not None and home != family:
        return Invalid(
            command_id,
            target,
            operation,
            ErrorKind.WRONG_TOPIC,
            f"'{operation}' is a {home.value} command; publish it to the {home.value} command topic",
        )
    try:
        command = _ADAPTERS[family].validate_python(doc)
    except ValidationError as exc:
        return Invalid(command_id, target, operation, ErrorKind.VALIDATION, describe_errors(exc))
    return Parsed(command)


def _family_of(operation: str | None) -> CommandFamily | None:
    try:
        return OPERATION_FAMILY[Operation(operation)] if operation is not None else None
    except ValueError:
        return None


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """'field.path: message' for the first few errors, without echoing input values."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p)) or "<command>"
        parts.append(f"{where}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in Operation.__members__.values()


def parse_any(doc: dict[str, Any]) -> Command:
    """Validate a command document of either family (used by ``bridge send``)."""
    command: Command = _ANY_ADAPTER.validate_python(doc)
    return command
