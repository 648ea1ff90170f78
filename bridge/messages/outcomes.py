"""Outcome events: what downstream services read, one per consumed command.

Outcomes are CloudEvents 1.0 in structured JSON mode. ``type`` is ``workflow.outcome.<status>``,
``subject`` is the command id and ``data`` is an :class:`OutcomeData`.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

CLOUDEVENTS_SOURCE = "urn:workflow-bridge"
OUTCOME_TYPE_PREFIX = "workflow.outcome."
# Deterministic event ids: a redelivered command yields an outcome with the same CloudEvents id.
_OUTCOME_NAMESPACE = uuid.UUID("6f1c7f53-2b4e-4d8a-9a43-0c1d7e1f5b21")
_NAMESPACE_SHA1 = hashlib.sha1(_OUTCOME_NAMESPACE.bytes, usedforsecurity=False)


class Status(StrEnum):
    """Final status of a command."""

    QUEUED = "queued"  # a run command was accepted by the provider
    APPLIED = "applied"  # a control command was accepted by the provider
    CONFLICT = "conflict"  # the provider refused because of concurrent work (scope busy, key in flight)
    REJECTED = "rejected"  # the command itself is wrong; retrying it unchanged will not help
    ERROR = "error"  # the bridge or provider failed (auth, 5xx, timeout, unreachable) after retries


class ErrorKind(StrEnum):
    """Why a command did not succeed; stable vocabulary for dashboards and consumers."""

    VALIDATION = "validation"
    UNKNOWN_TARGET = "unknown_target"
    TARGET_MISMATCH = "target_mismatch"
    WRONG_TOPIC = "wrong_topic"
    EXPIRED = "expired"
    PROVIDER_REJECTED = "provider_rejected"
    CONFLICT = "conflict"
    AUTH = "auth"
    RATE_LIMITED = "rate_limited"
    PROVIDER_ERROR = "provider_error"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"
    CIRCUIT_OPEN = "circuit_open"
    TARGET_BUSY = "target_busy"  # its bulkhead was full: answered at once, not called
    SHUTDOWN = "shutdown"
    OUTCOME_UNKNOWN = "outcome_unknown"  # sent before a crash, result never recorded: check the provider
    INTERNAL = "internal"


class OutcomeError(BaseModel):
    model_config = ConfigDict(frozen=True)

    kind: ErrorKind
    message: str
    retryable: bool = Field(description="Whether the same command may succeed if sent again later.")
    provider_body: str | None = Field(
        default=None, description="Provider error body, size-capped, with secrets removed."
    )


class SourceRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    offset: int

    @cached_property
    def event_id(self) -> str:
        """The id of the outcome event for this record (computed once: the event and the ledger's
        ``done`` entry both carry it)."""
        return outcome_event_id(self)


class OutcomeData(BaseModel):
    """The ``data`` of an outcome event."""

    model_config = ConfigDict(frozen=True)

    command_id: str
    target: str | None
    provider: str | None  # one of the catalog's kinds (bridge.providers.catalog)
    operation: str | None
    status: Status
    provider_ref: str | None = Field(
        default=None, description="Job id, instance id, execution id or task id reported by the provider."
    )
    http_status: int | None = None
    attempts: int = 0
    duration_ms: float = 0.0
    error: OutcomeError | None = None
    source: SourceRecord
    schema_id: int | None = Field(
        default=None, description="Schema Registry id the command was framed with (magic byte 0), if any."
    )


def outcome_type(status: Status) -> str:
    return f"{OUTCOME_TYPE_PREFIX}{status.value}"


def outcome_event_id(source: SourceRecord) -> str:
    """``uuid5(_OUTCOME_NAMESPACE, "topic/partition/offset")``, without building a ``uuid.UUID``."""
    digest = _NAMESPACE_SHA1.copy()
    digest.update(f"{source.topic}/{source.partition}/{source.offset}".encode())
    raw = bytearray(digest.digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def to_cloudevent(
    data: OutcomeData, now: datetime | None = None, *, extensions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    return {**to_cloudevent_envelope(data, now, extensions=extensions), "data": data.model_dump(mode="json")}


def to_cloudevent_envelope(
    data: OutcomeData, now: datetime | None = None, *, extensions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """Every CloudEvents attribute of the outcome event; ``data`` is added by the caller.

    ``extensions``: extension attributes, e.g. the distributed-tracing ``traceparent``."""
    return {
        "specversion": "1.0",
        "id": data.source.event_id,
        "source": CLOUDEVENTS_SOURCE,
        "type": outcome_type(data.status),
        "subject": data.command_id,
        "time": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        **(extensions or {}),
    }


def encode_outcome(
    data: OutcomeData, now: datetime | None = None, *, extensions: Mapping[str, str] | None = None
) -> bytes:
    """The same document as ``to_cloudevent``, with ``data`` serialised by pydantic's fast path."""
    envelope = to_cloudevent_envelope(data, now, extensions=extensions)
    return orjson.dumps(envelope)[:-1] + b',"data":' + data.model_dump_json().encode() + b"}"
