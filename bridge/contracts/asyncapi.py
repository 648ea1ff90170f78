"""The AsyncAPI 3.0 document: one channel per topic spec, with its messages, headers and examples."""

from __future__ import annotations

from typing import Any

from bridge.config.settings import KafkaSettings, TopicSettings
from bridge.contracts.examples import Example, build_examples
from bridge.contracts.schemas import SCHEMA_FORMAT, build_schemas
from bridge.contracts.specs import TopicRole, TopicSpec
from bridge.messages.parsing import DeadLetterReason
from bridge.providers.catalog import CATALOG

CONTRACT_VERSION = "1.0.0"
KAFKA_BINDING_VERSION = "0.5.0"


def build_asyncapi(specs: list[TopicSpec]) -> dict[str, Any]:
    examples = build_examples()
    return {
        "asyncapi": "3.0.0",
        "id": "urn:workflow-bridge",
        "info": {
            "title": "workflow-bridge",
            "version": CONTRACT_VERSION,
            "description": "Consumes workflow commands from Kafka, calls SaaS providers "
            f"({', '.join(spec.title for spec in CATALOG.specs)}) and publishes exactly one CloudEvents "
            "outcome per command. "
            "Unreadable records go to the dead-letter topic.",
        },
        "defaultContentType": "application/json",
        "servers": {
            "kafka": {
                "host": "kafka.example.internal:9092",
                "protocol": "kafka",
                "description": "Placeholder: each deployment sets kafka.bootstrap_servers.",
            }
        },
        "channels": {spec.role.value: _channel(spec, examples) for spec in specs},
        "operations": dict(_operation(spec) for spec in specs),
    }


def _channel(spec: TopicSpec, examples: list[Example]) -> dict[str, Any]:
    return {
        "address": spec.name,
        "title": spec.name,
        "description": spec.purpose,
        "messages": _messages(spec, examples),
        "bindings": {
            "kafka": {
                "topic": spec.name,
                "partitions": spec.partitions,
                "replicas": spec.replication_factor,
                "topicConfiguration": {key: _binding_value(key, v) for key, v in spec.configs.items()},
                "bindingVersion": KAFKA_BINDING_VERSION,
            }
        },
    }


def _binding_value(key: str, value: str) -> Any:
    if key == "cleanup.policy":
        return value.split(",")
    return int(value) if value.lstrip("-").isdigit() else value


def _message_names(spec: TopicSpec) -> dict[str, str | None]:
    """Message id -> schema file; a topic without a value schema has one 'original-record' message."""
    if not spec.value.schemas:
        return {"original-record": None}
    files = [ref.removeprefix("schemas/") for ref in spec.value.schemas]
    return {file.removesuffix(".schema.json"): file for file in files}


def _messages(spec: TopicSpec, examples: list[Example]) -> dict[str, Any]:
    messages = {}
    for name, file in _message_names(spec).items():
        if file is None:
            messages[name] = _message(spec, {"description": spec.value.description}, [])
            continue
        chosen = [e for e in examples if e.schema == file and e.family == spec.role.family]
        schema = build_schemas()[file]
        message = _message(spec, {"$ref": f"./schemas/{file}"}, chosen)
        messages[name] = {"title": schema["title"], "summary": schema["description"], **message}
    return messages


def _message(spec: TopicSpec, payload: dict[str, Any], examples: list[Example]) -> dict[str, Any]:
    message: dict[str, Any] = {
        "contentType": spec.value.content_type,
        "description": spec.value.description,
        "payload": {"schemaFormat": SCHEMA_FORMAT, "schema": payload},
        "bindings": {"kafka": {"key": _key_schema(spec), "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    if spec.headers:
        message["headers"] = _headers_schema(spec)
    rendered = [
        {"name": e.file.removesuffix(".json"), "summary": e.summary, "payload": e.payload} for e in examples
    ]
    if spec.role is TopicRole.DEAD_LETTER:
        rendered = [_dead_letter_example()]
    if rendered:
        message["examples"] = rendered
    return message


def _key_schema(spec: TopicSpec) -> dict[str, Any]:
    key_type: Any = "string" if spec.key.required else ["string", "null"]
    return {"type": key_type, "description": f"{spec.key.encoding}: {spec.key.semantics}"}


def _headers_schema(spec: TopicSpec) -> dict[str, Any]:
    named: dict[str, dict[str, Any]] = {
        h.name: {"type": "string", "description": h.description} for h in spec.headers if h.name != "*"
    }
    if "dlq.reason" in named:
        named["dlq.reason"]["enum"] = [reason.value for reason in DeadLetterReason]
    rest = [h.description for h in spec.headers if h.name == "*"]
    return {
        "type": "object",
        "properties": named,
        "additionalProperties": {"type": "string", "description": rest[0]} if rest else False,
    }


def _dead_letter_example() -> dict[str, Any]:
    settings = TopicSettings()
    headers = {
        "dlq.reason": DeadLetterReason.INVALID_JSON.value,
        "dlq.detail": "value is not JSON: unexpected character: line 1 column 1 (char 0)",
        "dlq.source.topic": settings.run_commands,
        "dlq.source.partition": "4",
        "dlq.source.offset": "9001",
    }
    return {
        "name": "invalid-json",
        "summary": "Kafka key: as sent",
        "headers": headers,
        "payload": "this is not JSON",
    }


def _operation(spec: TopicSpec) -> tuple[str, dict[str, Any]]:
    channel = f"#/channels/{spec.role.value}"
    operation: dict[str, Any] = {
        "action": spec.role.bridge_action,
        "channel": {"$ref": channel},
        "summary": f"The bridge {spec.role.bridge_action}s {spec.role.value.replace('_', ' ')}.",
        "messages": [{"$ref": f"{channel}/messages/{name}"} for name in _message_names(spec)],
    }
    if spec.role.bridge_action == "receive":
        operation["bindings"] = {"kafka": _consumer_binding()}
        operation["reply"] = {"channel": {"$ref": f"#/channels/{spec.role.value.split('_')[0]}_outcomes"}}
    return f"{spec.role.bridge_action}_{spec.role.value}", operation


def _consumer_binding() -> dict[str, Any]:
    kafka = KafkaSettings()
    return {
        "groupId": {"type": "string", "default": kafka.group_id, "description": "kafka.group_id setting."},
        "clientId": {"type": "string", "default": kafka.client_id, "description": "kafka.client_id setting."},
        "bindingVersion": KAFKA_BINDING_VERSION,
    }
