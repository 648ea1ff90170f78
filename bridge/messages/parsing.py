"""Decode a Kafka record into a command document, a rejection, or a dead letter. Pure.

The document is validated against its model by :mod:`bridge.providers.parsing`, which knows the provider
catalog's command models; this module knows none.

A value that cannot be read as a command at all (no usable ``id``) is a dead letter: there is
nobody to address an outcome to. A value that has an ``id`` but is otherwise wrong becomes a
``rejected`` outcome, so that the sender learns why.

Input rules (docs/commands.md, "Input rules"): UTF-8 JSON, optionally framed by the Schema Registry header
(:mod:`bridge.messages.wire`); plain, or a CloudEvent in structured or binary mode
(:mod:`bridge.messages.cloudevents`); at most ``MAX_DEPTH`` levels of nesting and ``MAX_VALUES`` JSON
values; every field of the JSON type its model says, without coercion
(:class:`bridge.messages.commands.StrictModel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import TypeAdapter

from bridge.messages.cloudevents import binary_attributes, open_binary, open_structured
from bridge.messages.commands import Command
from bridge.messages.parsed import (
    MAX_ID_LENGTH,
    DeadLetter,
    DeadLetterReason,
    Invalid,
    Parsed,
    ParseResult,
    describe_errors,
)
from bridge.messages.wire import Header, split_frame

__all__ = [
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_VALUES",
    "DeadLetter",
    "DeadLetterReason",
    "Decoded",
    "Invalid",
    "ParseResult",
    "Parsed",
    "decode_command",
    "describe_errors",
    "strict_validate",
    "unwrap_cloudevent",
]

MAX_DEPTH = 32
"""Objects and arrays nested in a command, the command object itself included."""
MAX_VALUES = 20_000
"""JSON values (objects, arrays, strings, numbers, booleans, nulls) in one command."""


def decode_command(
    value: bytes | None, max_bytes: int, headers: Sequence[Header] = ()
) -> Decoded | DeadLetter | Invalid:
    """The command document a record carries (framing, JSON and CloudEvents opened), before its
    model validates it (:func:`bridge.providers.parsing.parse_command`, with the provider catalog)."""
    if value is None or len(value) == 0:
        return DeadLetter(DeadLetterReason.EMPTY_VALUE, "record has no value")
    if len(value) > max_bytes:
        return DeadLetter(DeadLetterReason.TOO_LARGE, f"value is {len(value)} bytes, limit is {max_bytes}")
    doc = _json_object(value)
    if isinstance(doc, DeadLetter):
        return doc
    attributes = binary_attributes(headers)
    if isinstance(attributes, DeadLetter):
        return attributes
    if attributes is not None:
        unwrapped = open_binary(attributes, doc)
    else:
        unwrapped = open_structured(doc) if "specversion" in doc else doc
    if isinstance(unwrapped, DeadLetter | Invalid):
        return unwrapped
    return Decoded(unwrapped, bounded=_small_enough(value))


@dataclass(frozen=True, slots=True)
class Decoded:
    """A command document; ``bounded``: its JSON text alone proved it within the nesting and size limits."""

    doc: dict[str, Any]
    bounded: bool


def _json_object(value: bytes) -> dict[str, Any] | DeadLetter:
    framed = split_frame(value)
    if framed is None:
        return DeadLetter(
            DeadLetterReason.INVALID_JSON, "Schema Registry frame shorter than its 5-byte header"
        )
    payload = framed[1]
    if not payload:
        return DeadLetter(DeadLetterReason.EMPTY_VALUE, "Schema Registry frame holds no JSON")
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        return DeadLetter(DeadLetterReason.NOT_UTF8, f"value is not UTF-8 (byte {exc.start})")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        return DeadLetter(DeadLetterReason.INVALID_JSON, f"value is not JSON: {exc}"[:300])
    if not isinstance(doc, dict):
        return DeadLetter(
            DeadLetterReason.NOT_AN_OBJECT, f"value is a JSON {type(doc).__name__}, not an object"
        )
    return doc


def unwrap_cloudevent(doc: dict[str, Any]) -> dict[str, Any] | DeadLetter:
    """A CloudEvents 1.0 structured envelope: ``data`` is the command and the event ``id`` its id."""
    unwrapped = open_structured(doc)
    if isinstance(unwrapped, Invalid):
        return DeadLetter(DeadLetterReason.BAD_CLOUDEVENT, unwrapped.message)
    return unwrapped


def _small_enough(text: bytes) -> bool:
    """True when the JSON text alone proves the limits: every level of nesting needs a bracket of
    its own and every value a first byte of its own. Saves the walk for nearly every command."""
    return len(text) <= MAX_VALUES and text.count(b"{") + text.count(b"[") <= MAX_DEPTH


def strict_validate(adapter: TypeAdapter[Any], doc: dict[str, Any], *, bounded: bool = False) -> Command:
    """Validate a decoded JSON document against the strict command models.

    Raises ``ValueError`` (before any serialisation) when the document is too deep or too large;
    ``bounded``: the caller has already proved it is neither."""
    shape = None if bounded else shape_error(doc)
    if shape is not None:
        raise ValueError(shape)
    command: Command = adapter.validate_python(doc)
    return command


def shape_error(doc: dict[str, Any]) -> str | None:
    """Why ``doc`` nests too deep or holds too many values, naming the top-level field; None if fine."""
    budget = MAX_VALUES
    for field, value in doc.items():
        depth, count = _measure(value, MAX_DEPTH - 1, budget)
        budget -= count
        if depth > MAX_DEPTH - 1:
            return f"{field}: nests deeper than {MAX_DEPTH} levels of objects and arrays (command included)"
        if budget < 0:
            return f"{field}: the command holds more than {MAX_VALUES} JSON values"
    return None


def _measure(value: Any, max_depth: int, max_count: int) -> tuple[int, int]:
    """(nesting depth, value count) of ``value``, stopping early past either limit.

    Level by level, without recursion: a recursive walk would overflow where the JSON encoder does."""
    depth, count, level = 0, 0, [value]
    while level and depth <= max_depth and count <= max_count:
        count += len(level)
        containers = [v for v in level if type(v) is dict or type(v) is list]
        depth += 1 if containers else 0
        level = [c for v in containers for c in (v.values() if type(v) is dict else v)]
    return depth, count
