"""The JSON Schema of a CloudEvent the bridge publishes (outcomes, lifecycle events). Pure."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, cast

from pydantic import BaseModel, create_model

from bridge.messages.outcomes import CLOUDEVENTS_SOURCE
from bridge.providers.catalog import CATALOG

# Enum's functional API with the catalog's kinds (mypy types it only for a literal member list)
_ENUM = cast(Callable[[str, dict[str, str]], type[StrEnum]], StrEnum)


def provider_kinds() -> type[StrEnum]:
    """The catalog's kinds as the contracts show them: the ``ProviderKind`` enum, in catalog order."""
    return _ENUM("ProviderKind", {kind.upper(): kind for kind in CATALOG.kinds})


def with_provider_kinds(model: type[BaseModel], *, optional: bool) -> type[BaseModel]:
    """``model`` whose ``provider`` (a plain string at run time) is one of :func:`provider_kinds`."""
    kinds: Any = provider_kinds()
    field = (kinds | None, ...) if optional else (kinds, ...)
    return create_model(model.__name__, __base__=model, __doc__=model.__doc__, provider=field)


def event_schema(
    data_name: str,
    data: dict[str, Any],
    statuses: list[tuple[str, str]],
    id_description: str,
    optional: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A CloudEvent the bridge publishes: ``statuses`` pairs each ``type`` with its ``data.status``."""
    defs: dict[str, Any] = {**data.pop("$defs", {}), data_name: data}
    properties: dict[str, Any] = {
        "specversion": {"const": "1.0"},
        "id": {"type": "string", "format": "uuid", "description": id_description},
        "source": {"type": "string", "minLength": 1, "examples": [CLOUDEVENTS_SOURCE]},
        "type": {"enum": [event_type for event_type, _ in statuses]},
        "subject": {"type": "string", "description": "The command id (equals data.command_id)."},
        "time": {"type": "string", "format": "date-time"},
        "datacontenttype": {"const": "application/json"},
        "data": {"$ref": f"#/$defs/{data_name}"},
    }
    return {
        "type": "object",
        "properties": {**properties, **(optional or {})},
        "required": list(properties),
        "allOf": [_type_matches_status(event_type, status) for event_type, status in statuses],
        "$defs": defs,
    }


def _type_matches_status(event_type: str, status: str) -> dict[str, Any]:
    return {
        "if": {"properties": {"type": {"const": event_type}}, "required": ["type"]},
        "then": {"properties": {"data": {"properties": {"status": {"const": status}}}}},
    }


def tracing_attributes(whose: str) -> dict[str, Any]:
    """The CloudEvents distributed-tracing extension (W3C Trace Context), optional."""
    return {
        "traceparent": {
            "type": "string",
            "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}(-.*)?$",
            "description": f"W3C traceparent of {whose}.",
        },
        "tracestate": {"type": "string", "description": "W3C tracestate that goes with traceparent."},
    }
