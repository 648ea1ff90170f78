"""Command models: what upstream services publish to the command topics.

Every command is a JSON object with an ``id`` (idempotency and correlation), a ``target`` (the name of
a provider connection in configuration) and an ``operation`` that selects one of the models below.
Commands are untrusted input: identifiers that end up in URL paths or HTTP headers are checked here,
and nothing in a command can choose a URL or a credential.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)

from bridge.outcomes import ProviderKind


class Operation(StrEnum):
    """The six things the bridge can ask a provider to do."""

    ZILLIANT_QUEUE_JOB = "zilliant.queue_job"
    ZUORA_RUN_WORKFLOW = "zuora.run_workflow"
    WORKFLOO_EXECUTE = "workfloo.execute"
    ZUORA_RERUN_TASK = "zuora.rerun_task"
    ZUORA_STOP_RUN = "zuora.stop_run"
    EIGHT_BY_EIGHT_UPDATE_INSTANCE = "8x8.update_instance"


class CommandFamily(StrEnum):
    """Run commands start work; control commands steer work that exists."""

    RUN = "run"
    CONTROL = "control"


OPERATION_FAMILY: dict[Operation, CommandFamily] = {
    Operation.ZILLIANT_QUEUE_JOB: CommandFamily.RUN,
    Operation.ZUORA_RUN_WORKFLOW: CommandFamily.RUN,
    Operation.WORKFLOO_EXECUTE: CommandFamily.RUN,
    Operation.ZUORA_RERUN_TASK: CommandFamily.CONTROL,
    Operation.ZUORA_STOP_RUN: CommandFamily.CONTROL,
    Operation.EIGHT_BY_EIGHT_UPDATE_INSTANCE: CommandFamily.CONTROL,
}

OPERATION_PROVIDER: dict[Operation, ProviderKind] = {
    Operation.ZILLIANT_QUEUE_JOB: ProviderKind.ZILLIANT,
    Operation.ZUORA_RUN_WORKFLOW: ProviderKind.ZUORA,
    Operation.WORKFLOO_EXECUTE: ProviderKind.WORKFLOO,
    Operation.ZUORA_RERUN_TASK: ProviderKind.ZUORA,
    Operation.ZUORA_STOP_RUN: ProviderKind.ZUORA,
    Operation.EIGHT_BY_EIGHT_UPDATE_INSTANCE: ProviderKind.EIGHT_BY_EIGHT,
}

ZUORA_RESERVED_PARAMETERS = frozenset({"controller", "action", "id", "user_email", "user_token", "format"})

# Printable ASCII without whitespace, '/', '\\', '?', '#', '%': safe in a URL path segment (it is still
# percent-encoded on the wire) and in an HTTP header. Dot-segments are refused separately.
_SEGMENT_PATTERN = r"^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,128}$"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
MAX_TTL_S = 10 * 366 * 86_400  # far beyond any real TTL, and record time + TTL stays a valid datetime


def _no_dot_segment(value: str) -> str:
    """Servers drop ``;params`` before resolving dot-segments: ``..;x`` is ``..`` to them."""
    if value.split(";", 1)[0].strip(".") == "":
        raise ValueError("must not be a dot-segment: only dots, or empty or only dots before a ';'")
    return value


def _rfc3339_text(value: Any) -> Any:
    """Only an RFC 3339 string is a time: no Unix timestamps, numeric strings or bare dates."""
    if isinstance(value, datetime):  # built in Python, not read from JSON
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 time string with an offset, e.g. 2026-11-23T10:15:00Z")
    return value


CommandId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,200}$")]
TargetName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
PathSegment = Annotated[str, StringConstraints(pattern=_SEGMENT_PATTERN), AfterValidator(_no_dot_segment)]
# lax after the check: strict mode takes only datetime objects, never the JSON string
Rfc3339Time = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_rfc3339_text)]
# Zuora-Track-Id: <= 64 US-ASCII characters, none of : ; " '
TrackId = Annotated[str, StringConstraints(pattern=r"^[\x20-\x21\x23-\x26\x28-\x39\x3c-\x7e]{1,64}$")]
HeaderToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
JsonObject = dict[str, Any]


class StrictModel(BaseModel):
    """Every command model: unknown fields refused, no type coercion (pydantic strict mode).

    ``true`` is not an integer, ``"909"`` is not a number and ``1700000000`` is not a time. The only
    lax fields are those whose own validator is stricter than strict mode could be from JSON
    (:data:`Rfc3339Time`) or that strict mode would refuse in their JSON form (enums)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class CommandBase(StrictModel):
    """Fields every command carries."""

    id: CommandId = Field(description="Unique command id; the outcome's subject and the idempotency key.")
    target: TargetName = Field(description="Name of a target (provider connection) in the bridge config.")
    expires_at: Rfc3339Time | None = Field(
        default=None, description="Do not execute after this instant (RFC 3339 with offset)."
    )
    ttl_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TTL_S,
        description="Do not execute later than this many seconds after the record time.",
    )


class ZilliantQueueJob(CommandBase):
    """Queue a predefined Zilliant job workflow (POST /v1/JobWorkflow/Authorized)."""

    operation: Literal["zilliant.queue_job"]
    automation_id: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        description="WORKFLOW_AUTOMATION_ID of the job workflow, e.g. PublishListPrices."
    )
    scope: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Concurrency scope; omitted means the shared serial queue."
    )
    descriptor: Annotated[str, StringConstraints(min_length=1, max_length=200)] = Field(
        default="PLATFORM_CUSTOM_WORKFLOW", description="Workflow descriptor id."
    )
    parameters: JsonObject = Field(default_factory=dict, description="Extra stored-procedure arguments.")

    @field_validator("parameters")
    @classmethod
    def _no_automation_id_in_parameters(cls, value: JsonObject) -> JsonObject:
        if "WORKFLOW_AUTOMATION_ID" in value:
            raise ValueError("set the automation id with 'automation_id', not inside 'parameters'")
        return value


class ZuoraHeaders(StrictModel):
    """Optional Zuora routing headers, shared by run and rerun."""

    track_id: TrackId | None = Field(default=None, description="Zuora-Track-Id (<= 64 ASCII, no : ; \" ').")
    entity_id: HeaderToken | None = Field(default=None, description="Zuora-Entity-Ids (multi-entity only).")
    org_ids: list[HeaderToken] | None = Field(default=None, description="Zuora-Org-Ids (multi-org only).")


class ZuoraRunWorkflow(CommandBase):
    """Run a Zuora workflow definition (POST /workflows/{workflow_id}/run)."""

    operation: Literal["zuora.run_workflow"]
    workflow_id: int = Field(gt=0, lt=2**63, description="Id of the workflow definition (not an instance).")
    parameters: JsonObject = Field(default_factory=dict, description="Workflow parameters (request body).")
    zuora: ZuoraHeaders = Field(default_factory=ZuoraHeaders)

    @field_validator("parameters")
    @classmethod
    def _no_reserved_words(cls, value: JsonObject) -> JsonObject:
        reserved = sorted(ZUORA_RESERVED_PARAMETERS.intersection(value))
        if reserved:
            raise ValueError(f"Zuora reserves these parameter names; rename them: {', '.join(reserved)}")
        return value


class ZuoraRerunTask(CommandBase):
    """Rerun a Zuora workflow task (POST /workflows/tasks/{task_id}/rerun)."""

    operation: Literal["zuora.rerun_task"]
    task_id: PathSegment = Field(description="Id of the task to rerun.")
    zuora: ZuoraHeaders = Field(default_factory=ZuoraHeaders)


class ZuoraStopRun(CommandBase):
    """Stop a Zuora workflow run (PUT /workflows/workflow_runs/{run_id}/stop)."""

    operation: Literal["zuora.stop_run"]
    run_id: int = Field(gt=0, lt=2**63, description="Id of the workflow run (a run outcome provider_ref).")


class WorkflooExecute(CommandBase):
    """Start a workfloo execution (POST /api/v1/workfloo)."""

    operation: Literal["workfloo.execute"]
    definition_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,64}$")] = Field(
        description="idWorkflooDefinition of a published workfloo."
    )
    scenario_id: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,64}$")] | None = Field(
        default=None, description="Test scenario (Pruebas) id; required when the target runs in sandbox."
    )
    form: JsonObject | None = Field(default=None, description="Initial form data.")
    document: JsonObject | None = Field(default=None, description="Initial document data.")


class EightByEightAction(StrEnum):
    SUSPEND = "suspend"
    RESUME = "resume"
    TERMINATE = "terminate"


class EightByEightUpdateInstance(CommandBase):
    """Suspend, resume or terminate an 8x8 Automation workflow instance (PATCH .../workflows/{id})."""

    operation: Literal["8x8.update_instance"]
    action: EightByEightAction = Field(strict=False)  # lax enum: still only its values, but from JSON text
    definition_id: PathSegment = Field(description="Workflow definition id (a UUID).")
    instance_id: PathSegment = Field(description="Workflow instance id.")
    account_id: PathSegment | None = Field(
        default=None, description="Overrides the target's configured account id."
    )


RunCommand = Annotated[
    ZilliantQueueJob | ZuoraRunWorkflow | WorkflooExecute, Field(discriminator="operation")
]
ControlCommand = Annotated[
    ZuoraRerunTask | ZuoraStopRun | EightByEightUpdateInstance, Field(discriminator="operation")
]
AnyCommand = Annotated[
    ZilliantQueueJob
    | ZuoraRunWorkflow
    | WorkflooExecute
    | ZuoraRerunTask
    | ZuoraStopRun
    | EightByEightUpdateInstance,
    Field(discriminator="operation"),
]
Command = (
    ZilliantQueueJob
    | ZuoraRunWorkflow
    | WorkflooExecute
    | ZuoraRerunTask
    | ZuoraStopRun
    | EightByEightUpdateInstance
)


def operation_of(command: Command) -> Operation:
    return Operation(command.operation)


def expiry_of(command: Command, record_time: datetime) -> datetime | None:
    """The instant after which the command must not run, from expires_at and ttl_s (earliest wins)."""
    candidates: list[datetime] = []
    if command.expires_at is not None:
        candidates.append(command.expires_at)
    if command.ttl_s is not None:
        candidates.append(record_time + timedelta(seconds=command.ttl_s))
    return min(candidates) if candidates else None
