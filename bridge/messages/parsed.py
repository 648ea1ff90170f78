"""What decoding a record can give: a command, a rejection addressed to its sender, or a dead letter."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from bridge.messages.commands import Command
from bridge.messages.outcomes import ErrorKind

MAX_ID_LENGTH = 200


class DeadLetterReason(StrEnum):
    EMPTY_VALUE = "empty_value"
    TOO_LARGE = "too_large"
    NOT_UTF8 = "not_utf8"
    INVALID_JSON = "invalid_json"
    NOT_AN_OBJECT = "not_an_object"
    BAD_CLOUDEVENT = "bad_cloudevent"
    MISSING_ID = "missing_id"
    INTERNAL_ERROR = "internal_error"
    UNDECODABLE = "undecodable"  # the Kafka client cannot decode the record (e.g. a non-UTF-8 header key)
    CORRUPT = "corrupt"  # the record's batch fails its CRC check on every read
    KEY_TOO_LARGE = "key_too_large"  # no outcome could carry the key: not executed, the letter drops it
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


def usable_id(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= MAX_ID_LENGTH


def invalid(
    doc: dict[str, Any], command_id: str, message: str, kind: ErrorKind = ErrorKind.VALIDATION
) -> Invalid:
    """A rejection of ``doc``, naming its target and operation when they are strings."""
    target = doc.get("target")
    operation = doc.get("operation")
    return Invalid(
        command_id,
        target if isinstance(target, str) else None,
        operation if isinstance(operation, str) else None,
        kind,
        message,
    )


def describe_errors(
    exc: ValidationError, limit: int = 5, prefix: str = "", *, tags: Collection[str] = ()
) -> str:
    """'field.path: message' for the first few errors, without echoing input values. ``tags``: the
    discriminated union's tags (the catalog's operations), left out of the path: the user wrote none."""
    parts = []
    for err in exc.errors(include_input=False, include_url=False)[:limit]:
        where = ".".join(str(p) for p in err["loc"] if not _is_union_tag(p, tags)) or "<command>"
        parts.append(f"{prefix}{where}: {err['msg']}")
    more = exc.error_count() - limit
    if more > 0:
        parts.append(f"... and {more} more")
    return "; ".join(parts)


def _is_union_tag(part: Any, tags: Collection[str]) -> bool:
    return isinstance(part, str) and part in tags
