"""Example messages, built from the real models so that they are right by construction."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bridge.commands import OPERATION_FAMILY, OPERATION_PROVIDER, CommandFamily, Operation
from bridge.contracts.lifecycle import lifecycle_example_docs
from bridge.ledger.entries import DoneFields, encode_dispatched, encode_done
from bridge.outcomes import (
    ErrorKind,
    OutcomeData,
    OutcomeError,
    SourceRecord,
    Status,
    outcome_event_id,
    to_cloudevent,
)
from bridge.settings import TopicSettings

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


_COMMANDS: dict[Operation, tuple[str, dict[str, Any]]] = {
    Operation.ZILLIANT_QUEUE_JOB: (
        "pricing-eu",
        {
            "target": "zilliant-prod",
            "automation_id": "PublishListPrices",
            "scope": "pricing-eu",
            "parameters": {"PRICE_LIST": "EU-2025"},
            "ttl_s": 900,
        },
    ),
    Operation.ZUORA_RUN_WORKFLOW: (
        "acct-4028905f",
        {
            "target": "zuora-prod",
            "workflow_id": 396,
            "parameters": {"accountId": "4028905f5a87c0ff015a87d25ae90025"},
            "zuora": {"track_id": "billing-run-2025-01"},
        },
    ),
    Operation.WORKFLOO_EXECUTE: (
        "loan-20250115-17",
        {
            "target": "workfloo-prod",
            "definition_id": "657117e1d511b6e54fe2a967",
            "form": {"amount": 25000, "currency": "EUR"},
        },
    ),
    Operation.ZUORA_RERUN_TASK: ("task-2770", {"target": "zuora-prod", "task_id": "2770"}),
    Operation.EIGHT_BY_EIGHT_UPDATE_INSTANCE: (
        "60dbe307fe55d99fc083db61",
        {
            "target": "8x8-prod",
            "action": "suspend",
            "definition_id": "5870442f-3ddd-4657-b74c-6e17308f5230",
            "instance_id": "60dbe307fe55d99fc083db61",
            "expires_at": "2025-01-15T10:00:00Z",
        },
    ),
    Operation.ZUORA_STOP_RUN: ("acct-4028905f", {"target": "zuora-prod", "run_id": 401}),
}


def command_examples() -> list[Example]:
    examples = []
    for number, (operation, (key, fields)) in enumerate(_COMMANDS.items(), start=1):
        family = OPERATION_FAMILY[operation]
        doc = {"id": f"cmd-7f3a-{number:04d}", "operation": operation.value, **fields}
        examples.append(Example(f"{family.value}-command.{operation.value}.json", key, family, doc))
    return examples


def cloudevent_example() -> Example:
    key, fields = _COMMANDS[Operation.WORKFLOO_EXECUTE]
    envelope = {
        "specversion": "1.0",
        "id": "cmd-7f3a-0007",
        "source": "urn:loans-service",
        "type": "workflow.command.run",
        "time": "2025-01-15T09:30:00Z",
        "datacontenttype": "application/json",
        "data": {"operation": Operation.WORKFLOO_EXECUTE.value, **fields},
    }
    return Example(
        f"command-cloudevent.{Operation.WORKFLOO_EXECUTE.value}.json", key, CommandFamily.RUN, envelope
    )


_CONFLICT = OutcomeError(kind=ErrorKind.CONFLICT, retryable=True, message="scope 'pricing-eu' is busy")
_REJECTED = OutcomeError(
    kind=ErrorKind.PROVIDER_REJECTED, retryable=False, message="Zuora refused: workflow 396 is not active"
)
_TIMEOUT = OutcomeError(kind=ErrorKind.TIMEOUT, retryable=True, message="8x8 did not answer within 30.0 s")
# status, the command it answers, the command's offset, the other OutcomeData fields
_OUTCOMES: tuple[tuple[Status, Operation, int, dict[str, Any]], ...] = (
    (Status.QUEUED, Operation.ZILLIANT_QUEUE_JOB, 1042, {"provider_ref": "4711", "http_status": 200}),
    (Status.APPLIED, Operation.ZUORA_RERUN_TASK, 77, {"provider_ref": "2770", "http_status": 200}),
    (Status.CONFLICT, Operation.ZILLIANT_QUEUE_JOB, 1043, {"http_status": 409, "error": _CONFLICT}),
    (Status.REJECTED, Operation.ZUORA_RUN_WORKFLOW, 5120, {"http_status": 400, "error": _REJECTED}),
    (Status.ERROR, Operation.EIGHT_BY_EIGHT_UPDATE_INSTANCE, 311, {"attempts": 5, "error": _TIMEOUT}),
)


def outcome_data(status: Status, operation: Operation, offset: int, fields: dict[str, Any]) -> OutcomeData:
    """A real outcome for one of the example commands, so the examples are right by construction."""
    number = list(_COMMANDS).index(operation) + 1
    topic = getattr(TopicSettings(), f"{OPERATION_FAMILY[operation].value}_commands")
    return OutcomeData.model_validate(
        {
            "command_id": f"cmd-7f3a-{number:04d}",
            "target": _COMMANDS[operation][1]["target"],
            "provider": OPERATION_PROVIDER[operation],
            "operation": operation.value,
            "status": status,
            "source": SourceRecord(topic=topic, partition=3, offset=offset),
            "attempts": 1,
            "duration_ms": 182.5,
            **fields,
        }
    )


def outcome_examples() -> list[Example]:
    examples = []
    for status, operation, offset, fields in _OUTCOMES:
        event = to_cloudevent(outcome_data(status, operation, offset, fields), now=EXAMPLE_TIME)
        key = _COMMANDS[operation][0]
        examples.append(
            Example(f"outcome-event.{status.value}.json", key, OPERATION_FAMILY[operation], event)
        )
    return examples


def ledger_examples() -> list[Example]:
    """Entries as the bridge writes them, for the queued Zilliant example command."""
    topic, command_id, fp, at = (
        TopicSettings().run_commands,
        "cmd-7f3a-0001",
        0x9F3C2A41D07B5E18,
        1736933400000,
    )
    source = SourceRecord(topic=topic, partition=3, offset=1042)
    done = DoneFields("queued", "4711", outcome_event_id(source))
    entries = {
        "dispatched": encode_dispatched(topic, command_id, fp, 1042, at),
        "done": encode_done(topic, command_id, fp, 1042, at + 182, done),
    }
    return [
        Example(f"ledger-entry.{state}.json", key.decode(), None, json.loads(value))
        for state, (key, value) in entries.items()
    ]


def build_examples() -> list[Example]:
    lifecycle = [Example(file, key, None, doc) for file, key, doc in lifecycle_example_docs(EXAMPLE_TIME)]
    return [*command_examples(), cloudevent_example(), *outcome_examples(), *ledger_examples(), *lifecycle]
