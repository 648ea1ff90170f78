"""Example messages, built from the real models so that they are right by construction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.config.settings import TopicSettings
from bridge.contracts.lifecycle import lifecycle_example_docs
from bridge.ledger.entries import DoneFields, encode_dispatched, encode_done
from bridge.messages.commands import CommandFamily
from bridge.messages.outcomes import OutcomeData, SourceRecord, Status, to_cloudevent
from bridge.providers.catalog import CATALOG
from bridge.providers.spec import CommandSpec, OutcomeExample

EXAMPLE_TIME = datetime(2025, 1, 15, 9, 30, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Example:
    """One example message; ``file`` is its name under ``topics/examples/``."""

    file: str
    key: str
    family: CommandFamily | None  # None: not a command or outcome (the ledger's entries)
    payload: dict[str, Any]

    @property
    def schema(self) -> str:
        return self.file.split(".", 1)[0] + ".schema.json"

    @property
    def summary(self) -> str:
        return f"Kafka key: {self.key}"


def _topic(family: CommandFamily) -> str:
    return str(getattr(TopicSettings(), f"{family.value}_commands"))


def _by_number() -> list[CommandSpec]:
    return sorted(CATALOG.commands, key=lambda command: command.example.number)


def command_examples() -> list[Example]:
    examples = []
    for command in _by_number():
        example, family = command.example, command.family
        doc = {"id": example.id, "operation": command.operation, **example.fields}
        examples.append(Example(f"{family.value}-command.{command.operation}.json", example.key, family, doc))
    return examples


def cloudevent_examples() -> list[Example]:
    return [_cloudevent(command) for command in _by_number() if command.example.cloudevent is not None]


def _cloudevent(command: CommandSpec) -> Example:
    example, family = command.example, command.family
    assert example.cloudevent is not None
    envelope = {
        "specversion": "1.0",
        "id": example.cloudevent.id,
        "source": example.cloudevent.source,
        "type": f"workflow.command.{family.value}",
        "time": "2025-01-15T09:30:00Z",
        "datacontenttype": "application/json",
        "data": {"operation": command.operation, **example.fields},
    }
    return Example(f"command-cloudevent.{command.operation}.json", example.key, family, envelope)


def _outcomes() -> list[tuple[CommandSpec, OutcomeExample]]:
    """Every outcome example with the command it answers, one per status in ``Status`` order."""
    pairs = [(command, outcome) for command in CATALOG.commands for outcome in command.outcomes]
    return sorted(pairs, key=lambda pair: list(Status).index(pair[1].status))


def outcome_data(command: CommandSpec, outcome: OutcomeExample) -> OutcomeData:
    """A real outcome for one of the example commands, so the examples are right by construction."""
    return OutcomeData.model_validate(
        {
            "command_id": command.example.id,
            "target": command.example.fields["target"],
            "provider": CATALOG.provider_of(command.operation),
            "operation": command.operation,
            "status": outcome.status,
            "source": SourceRecord(topic=_topic(command.family), partition=3, offset=outcome.offset),
            "attempts": 1,
            "duration_ms": 182.5,
            **outcome.fields,
        }
    )


def outcome_examples() -> list[Example]:
    examples = []
    for command, outcome in _outcomes():
        event = to_cloudevent(outcome_data(command, outcome), now=EXAMPLE_TIME)
        file = f"outcome-event.{outcome.status.value}.json"
        examples.append(Example(file, command.example.key, command.family, event))
    return examples


def ledger_examples() -> list[Example]:
    """Entries as the bridge writes them, for the command of the queued outcome example."""
    command, outcome = next(pair for pair in _outcomes() if pair[1].status is Status.QUEUED)
    data = outcome_data(command, outcome)
    topic, command_id, offset = data.source.topic, data.command_id, data.source.offset
    fp, at = 0x9F3C2A41D07B5E18, 1736933400000
    done = DoneFields(data.status.value, data.provider_ref, data.source.event_id)
    entries = {
        "dispatched": encode_dispatched(topic, command_id, fp, offset, at),
        "done": encode_done(topic, command_id, fp, offset, at + 182, done),
    }
    return [
        Example(f"ledger-entry.{state}.json", key.decode(), None, json.loads(value))
        for state, (key, value) in entries.items()
    ]


def build_examples() -> list[Example]:
    lifecycle = [Example(file, key, None, doc) for file, key, doc in lifecycle_example_docs(EXAMPLE_TIME)]
    return [*command_examples(), *cloudevent_examples(), *outcome_examples(), *ledger_examples(), *lifecycle]
