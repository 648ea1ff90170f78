"""Lifecycle events: CloudEvents 1.0 (structured JSON) like the outcomes, on their own topic. Pure.

``type`` is ``workflow.lifecycle.<status>``, ``subject`` the command id, the Kafka key the command's.
The event id derives from the command record and the event's number within its workflow, so an
event published again after a crash (see docs/tracking.md) keeps its id.

Example::

    value = encode_lifecycle(LifecycleData(...))
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field

from bridge.messages.outcomes import CLOUDEVENTS_SOURCE, SourceRecord
from bridge.observability.redact import Redactor
from bridge.providers.catalog import CATALOG
from bridge.providers.readings import RunReading, RunState
from bridge.tracking.entries import TrackedEntry

LIFECYCLE_TYPE_PREFIX = "workflow.lifecycle."
MAX_DETAIL = 500  # characters of the provider's failure detail an event carries
_NAMESPACE = uuid.UUID("0b7d3c1e-9a55-4f0e-8c21-5d2f6a9e4b73")


class LifecycleData(BaseModel):
    """The ``data`` of a lifecycle event."""

    model_config = ConfigDict(frozen=True)

    command_id: str
    target: str
    provider: str  # one of the catalog's kinds (bridge.providers.catalog)
    operation: str
    status: RunState
    provider_ref: str | None = Field(description="The run, job, execution or instance being followed.")
    provider_status: str | None = Field(
        default=None, description="The provider's own word for the state (Finished, CLOSED, Suspended...)."
    )
    waiting_for: str | None = Field(default=None, description="waiting: the step it waits on (form, ...).")
    detail: str | None = Field(
        default=None, description="failed / lost: why, capped and with secrets removed."
    )
    tracked_for_s: float = Field(description="Seconds since the outcome that started tracking.")
    sequence: int = Field(ge=1, description="1 for the workflow's first lifecycle event, then 2, ...")
    source: SourceRecord = Field(description="The command record this workflow was started by.")


def lifecycle_type(status: RunState) -> str:
    return f"{LIFECYCLE_TYPE_PREFIX}{status.value}"


def lifecycle_event_id(source: SourceRecord, sequence: int) -> str:
    return str(uuid.uuid5(_NAMESPACE, f"{source.topic}/{source.partition}/{source.offset}/{sequence}"))


def to_lifecycle_event(
    data: LifecycleData, now: datetime | None = None, extensions: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """``extensions``: CloudEvents extension attributes (the distributed-tracing ones)."""
    return {
        **(extensions or {}),
        "specversion": "1.0",
        "id": lifecycle_event_id(data.source, data.sequence),
        "source": CLOUDEVENTS_SOURCE,
        "type": lifecycle_type(data.status),
        "subject": data.command_id,
        "time": (now or datetime.now(UTC)).isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": data.model_dump(mode="json"),
    }


def encode_lifecycle(
    data: LifecycleData, now: datetime | None = None, extensions: Mapping[str, str] | None = None
) -> bytes:
    return orjson.dumps(to_lifecycle_event(data, now, extensions))


def lifecycle_data(entry: TrackedEntry, reading: RunReading, now: float, redactor: Redactor) -> LifecycleData:
    """The next event of the workflow ``entry`` tracks, from what its provider said (``reading``)."""
    provider = CATALOG.provider_of(entry.operation)
    detail = redactor.scrub(reading.detail)[:MAX_DETAIL] if reading.detail else None
    return LifecycleData(
        command_id=entry.command_id,
        target=entry.target,
        provider=provider,
        operation=entry.operation,
        status=reading.state,
        provider_ref=dict(entry.ref).get(CATALOG.spec(provider).followed),
        provider_status=reading.raw,
        waiting_for=reading.waiting_for,
        detail=detail,
        tracked_for_s=round(max(0.0, now - entry.started_ms / 1000), 3),
        sequence=entry.seq + 1,
        source=SourceRecord(topic=entry.topic, partition=entry.partition, offset=entry.offset),
    )
