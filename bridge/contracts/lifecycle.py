"""The lifecycle topic's contract: the event schema, the tracked-entry schema and their examples."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from bridge.config.settings import TopicSettings
from bridge.contracts.events import event_schema, tracing_attributes, with_provider_kinds
from bridge.messages.outcomes import SourceRecord
from bridge.providers.catalog import CATALOG
from bridge.providers.readings import RunState
from bridge.providers.spec import CommandSpec
from bridge.tracking.entries import TrackedEntry, TrackedEntryModel, encode
from bridge.tracking.events import LifecycleData, lifecycle_type, to_lifecycle_event

LIFECYCLE_EVENT = "lifecycle-event.schema.json"
TRACKED_ENTRY = "tracked-entry.schema.json"


def lifecycle_schema() -> dict[str, Any]:
    statuses = [(lifecycle_type(state), state.value) for state in RunState]
    data = TypeAdapter(with_provider_kinds(LifecycleData, optional=False)).json_schema(mode="serialization")
    return event_schema(
        "LifecycleData",
        data,
        statuses,
        "Same when an event is published again.",
        tracing_attributes("the command's outcome (tracing on: the bridge's span; off: the command's own)"),
    )


def tracked_entry_schema() -> dict[str, Any]:
    return TypeAdapter(TrackedEntryModel).json_schema(mode="serialization")


_OFFSET = 5120
# status, provider status, waiting for, detail, seconds since the queued outcome
_EVENTS: tuple[tuple[RunState, str, str | None, str | None, float], ...] = (
    (RunState.RUNNING, "Processing", None, None, 2.1),
    (RunState.WAITING, "IN_PROGRESS", "form", None, 6.3),
    (RunState.COMPLETED, "Finished", None, None, 184.2),
    (RunState.FAILED, "Finished", None, "1 of 3 task(s) ended in error", 96.0),
    (RunState.STOPPED, "Stopped", None, None, 41.5),
    (
        RunState.LOST,
        "horizon",
        None,
        "tracking gave up: no terminal state within the horizon of 604800s",
        604800.0,
    ),
)


def _tracked() -> CommandSpec:
    """The example command whose run the lifecycle examples follow."""
    return next(command for command in CATALOG.commands if command.example.tracked)


def _source(command: CommandSpec) -> SourceRecord:
    topic = str(getattr(TopicSettings(), f"{command.family.value}_commands"))
    return SourceRecord(topic=topic, partition=3, offset=_OFFSET)


def lifecycle_data(number: int) -> LifecycleData:
    state, raw, waiting_for, detail, elapsed = _EVENTS[number]
    command = _tracked()
    ref = command.example.tracked or {}
    return LifecycleData(
        command_id=command.example.id,
        target=command.example.fields["target"],
        provider=CATALOG.provider_of(command.operation),
        operation=command.operation,
        status=state,
        provider_ref=next(iter(ref.values())),
        provider_status=raw,
        waiting_for=waiting_for,
        detail=detail,
        tracked_for_s=elapsed,
        sequence=2 if state.terminal else 1,
        source=_source(command),
    )


def lifecycle_example_docs(now: datetime) -> list[tuple[str, str, dict[str, Any]]]:
    """(file, Kafka key, document) for one lifecycle event per status and one tracked entry."""
    command = _tracked()
    example = command.example
    docs = [
        (f"lifecycle-event.{state.value}.json", example.key, to_lifecycle_event(lifecycle_data(n), now))
        for n, (state, *_) in enumerate(_EVENTS)
    ]
    entry = TrackedEntry(
        _source(command).topic,
        3,
        example.id,
        example.fields["target"],
        command.operation,
        example.key.encode(),
        tuple((example.tracked or {}).items()),
        _OFFSET,
        1736933400182,
        RunState.RUNNING,
        None,
        1,
    )
    key, value = encode(entry)
    return [*docs, ("tracked-entry.running.json", key.decode(), json.loads(value))]
