"""CloudEvents 1.0 input, in both modes of the Kafka protocol binding. Pure.

* structured: the value is a JSON envelope; ``data`` is the command.
* binary: ``ce_specversion``, ``ce_id``, ``ce_source``, ``ce_type`` (and optional ``ce_*``) headers
  carry the attributes, ``content-type`` is ``datacontenttype`` and the value is the command.

Either way the CloudEvents ``id`` is the command id; a command that names another id is rejected.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, ValidationError

from bridge.messages.commands import Rfc3339Time, StrictModel
from bridge.messages.parsed import DeadLetter, DeadLetterReason, Invalid, describe_errors, invalid, usable_id
from bridge.messages.wire import Header, header_text

HEADER_PREFIX = "ce_"
_TEXT = Annotated[str, Field(min_length=1, max_length=2048)]


def _json_media_type(value: str) -> str:
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise ValueError("the command must be JSON (application/json or a +json type)")
    return value


class CloudEventAttributes(StrictModel):
    """The context attributes the bridge checks; extension attributes are allowed and ignored."""

    model_config = ConfigDict(extra="allow")

    specversion: Literal["1.0"]
    id: Annotated[str, Field(min_length=1, max_length=200)]
    source: _TEXT
    type: _TEXT
    subject: _TEXT | None = None
    time: Rfc3339Time | None = None
    dataschema: _TEXT | None = None
    datacontenttype: Annotated[str, AfterValidator(_json_media_type)] | None = None


def open_structured(doc: dict[str, Any]) -> dict[str, Any] | Invalid | DeadLetter:
    """The command inside a structured-mode envelope."""
    if doc.get("specversion") != "1.0":
        return DeadLetter(DeadLetterReason.BAD_CLOUDEVENT, "only CloudEvents specversion 1.0 is supported")
    event_id = doc.get("id")
    if not usable_id(event_id):
        return DeadLetter(DeadLetterReason.MISSING_ID, "CloudEvent has no usable 'id'")
    data = doc.get("data")
    if not isinstance(data, dict):
        return DeadLetter(
            DeadLetterReason.BAD_CLOUDEVENT, "CloudEvent 'data' must be a JSON object holding the command"
        )
    attributes = {k: v for k, v in doc.items() if k != "data"}
    return _with_event_id(data, str(event_id), attributes)


def binary_attributes(headers: Sequence[Header]) -> dict[str, Any] | DeadLetter | None:
    """The attributes of a binary-mode event, or None when no ``ce_`` header is present."""
    attributes: dict[str, Any] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered == "content-type" and "datacontenttype" not in attributes:
            attributes["datacontenttype"] = header_text(value)
        if not lowered.startswith(HEADER_PREFIX):
            continue
        key = lowered[len(HEADER_PREFIX) :]
        if key in attributes and key != "datacontenttype":
            return DeadLetter(DeadLetterReason.BAD_CLOUDEVENT, f"header '{lowered}' appears more than once")
        attributes[key] = header_text(value)
    if attributes.keys() <= {"datacontenttype"}:
        return None
    return attributes


def open_binary(attributes: dict[str, Any], doc: dict[str, Any]) -> dict[str, Any] | Invalid | DeadLetter:
    """The command of a binary-mode event: the value, with ``ce_id`` as its id."""
    if "specversion" in doc:
        return DeadLetter(
            DeadLetterReason.BAD_CLOUDEVENT,
            "ce_ headers and a structured envelope in one record; use one mode",
        )
    if attributes.get("specversion") != "1.0":
        return DeadLetter(
            DeadLetterReason.BAD_CLOUDEVENT, "binary-mode CloudEvents need the header ce_specversion: 1.0"
        )
    event_id = attributes.get("id")
    if not usable_id(event_id):
        return DeadLetter(
            DeadLetterReason.MISSING_ID, "header ce_id is missing, not UTF-8 or not 1-200 chars"
        )
    return _with_event_id(doc, str(event_id), attributes)


def _with_event_id(
    data: dict[str, Any], event_id: str, attributes: dict[str, Any]
) -> dict[str, Any] | Invalid:
    if "id" in data and data["id"] != event_id:
        return invalid(data, event_id, "the command's 'id' differs from the CloudEvent id; send one id")
    try:
        CloudEventAttributes.model_validate(attributes)
    except ValidationError as exc:
        return invalid(data, event_id, describe_errors(exc, prefix="cloudevent."))
    return {**data, "id": event_id}
