"""A Kafka record read as one of the catalog's commands, a rejection, or a dead letter. Pure.

:mod:`bridge.messages.parsing` opens the record (framing, JSON, CloudEvents, the input limits); the
document is then validated against the command models the providers declare (:mod:`bridge.providers.catalog`
joins them into one union per family).

Example::

    result = parse_command(record.value, CommandFamily.RUN, max_bytes, record.headers)
    if isinstance(result, Parsed):
        command = result.command
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import ValidationError

from bridge.messages.commands import Command, CommandFamily
from bridge.messages.outcomes import ErrorKind
from bridge.messages.parsed import (
    DeadLetter,
    DeadLetterReason,
    Invalid,
    Parsed,
    ParseResult,
    describe_errors,
    invalid,
    usable_id,
)
from bridge.messages.parsing import decode_command, strict_validate
from bridge.messages.wire import Header
from bridge.providers.catalog import CATALOG


def parse_command(
    value: bytes | None, family: CommandFamily, max_bytes: int, headers: Sequence[Header] = ()
) -> ParseResult:
    decoded = decode_command(value, max_bytes, headers)
    if isinstance(decoded, DeadLetter | Invalid):
        return decoded
    return validate_command(decoded.doc, family, bounded=decoded.bounded)


def validate_command(doc: dict[str, Any], family: CommandFamily, *, bounded: bool = False) -> ParseResult:
    command_id = doc.get("id")
    if not usable_id(command_id):
        return DeadLetter(DeadLetterReason.MISSING_ID, "command has no 'id' string (1-200 characters)")
    assert isinstance(command_id, str)
    operation = doc.get("operation") if isinstance(doc.get("operation"), str) else None
    home = CATALOG.family_of(operation)
    if home is not None and home != family:
        message = f"'{operation}' is a {home.value} command; publish it to the {home.value} command topic"
        return invalid(doc, command_id, message, ErrorKind.WRONG_TOPIC)
    try:
        command = strict_validate(CATALOG.adapters[family], doc, bounded=bounded)
    except ValidationError as exc:
        return invalid(doc, command_id, describe_command_errors(exc))
    except ValueError as exc:
        return invalid(doc, command_id, str(exc))
    return Parsed(command)


def parse_any(doc: dict[str, Any]) -> Command:
    """Validate a command document of either family (used by ``bridge send``)."""
    return strict_validate(CATALOG.any_adapter, doc)


def describe_command_errors(exc: ValidationError) -> str:
    """:func:`bridge.messages.parsed.describe_errors` of a command's validation: the union's tags (the
    catalog's operations) are left out of the field paths."""
    return describe_errors(exc, tags=CATALOG.operations)
