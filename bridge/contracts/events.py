"""The JSON Schema of a CloudEvent the bridge publishes (outcomes, lifecycle events). Pure."""

from __future__ import annotations

from typing import Any

from bridge.outcomes import CLOUDEVENTS_SOURCE


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
