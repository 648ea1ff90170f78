"""Zuora adapter: run a workflow definition, rerun a workflow task, stop and read a workflow run.

``POST /workflows/{workflow_id}/run`` (body: the workflow parameters),
``POST /workflows/tasks/{task_id}/rerun`` (no body), ``PUT /workflows/workflow_runs/{id}/stop`` and
``GET /workflows/workflow_runs/{id}`` (the status read of tracking). Every POST carries an ``Idempotency-Key``
derived from the command id, so a redelivered or retried command gets Zuora's stored answer
instead of a second workflow run. Auth is OAuth client credentials; tokens are cached until
shortly before ``expires_in``.

Example::

    provider = ZuoraProvider("billing-eu", target, session)
    request = provider.build_request(command)
    headers = {**request.headers, **await provider.auth_headers()}
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Literal

import orjson
from pydantic import Field, StringConstraints, field_validator

from bridge.providers.api import (
    API_VERSION,
    UNREADABLE,
    Command,
    CommandExample,
    CommandFamily,
    CommandRejected,
    CommandSpec,
    ErrorKind,
    HttpRequest,
    JsonObject,
    OAuthProvider,
    OnUnknown,
    OutcomeExample,
    PathSegment,
    ProviderSpec,
    ReadFailure,
    Reading,
    RunReading,
    RunState,
    Secret,
    Status,
    StrictModel,
    TargetBase,
    Token,
    Verdict,
    bearer_token,
    classify_common,
    clip,
    header,
    json_or_none,
    plain_read,
    reference_of,
    resolve_secret,
    segment,
    status_document,
    unexpected,
)

if TYPE_CHECKING:
    pass

KIND = "zuora"
RESERVED_PARAMETERS = frozenset({"controller", "action", "id", "user_email", "user_token", "format"})
# Zuora-Track-Id: <= 64 US-ASCII characters, none of : ; " '
TrackId = Annotated[str, StringConstraints(pattern=r"^[\x20-\x21\x23-\x26\x28-\x39\x3c-\x7e]{1,64}$")]
HeaderToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]

DEFAULT_TOKEN_LIFETIME_S = 3599.0  # "tokens expire after one hour"; used when expires_in is missing
_JSON = "application/json"
_REASONS = {
    400: "Zuora rejected the request",
    404: "Zuora found no such workflow or task",
    406: "the body is missing required workflow parameters",
    422: "the Idempotency-Key was already used for another URL or method",
}
_REFUSED = {"zuora.rerun_task": "Zuora refused the rerun", "zuora.stop_run": "Zuora refused the stop"}
_IN_FLIGHT = "a request with the same Idempotency-Key is still in progress"
_INSTANCE_ID = "workflow_id references a workflow instance, not a definition"
RUN_ROUTE = "/workflows/{workflow_id}/run"
RERUN_ROUTE = "/workflows/tasks/{task_id}/rerun"
RUN_STATUS_ROUTE = "/workflows/workflow_runs/{workflow_run_id}"
STOP_ROUTE = RUN_STATUS_ROUTE + "/stop"
_RUNNING = frozenset({"Queued", "Processing", "Stopping"})
_TASK_COUNTS = ("pending", "processing", "queued")


class ZuoraTarget(TargetBase):
    provider: Literal["zuora"]
    token_url: str | None = Field(default=None, description="Defaults to <base_url>/oauth/token.")
    on_unknown: OnUnknown = Field(default="retry", description="Safe: the Idempotency-Key replays (24 h).")
    client_id: Secret
    client_secret: Secret

    _secrets = field_validator("client_id", "client_secret", mode="before")(resolve_secret)

    @property
    def effective_token_url(self) -> str:
        return self.token_url or f"{self.base_url}/oauth/token"


class ZuoraHeaders(StrictModel):
    """Optional Zuora routing headers, shared by run and rerun."""

    track_id: TrackId | None = Field(default=None, description="Zuora-Track-Id (<= 64 ASCII, no : ; \" ').")
    entity_id: HeaderToken | None = Field(default=None, description="Zuora-Entity-Ids (multi-entity only).")
    org_ids: list[HeaderToken] | None = Field(default=None, description="Zuora-Org-Ids (multi-org only).")


class ZuoraRunWorkflow(Command):
    """Run a Zuora workflow definition (POST /workflows/{workflow_id}/run)."""

    operation: Literal["zuora.run_workflow"]
    workflow_id: int = Field(gt=0, lt=2**63, description="Id of the workflow definition (not an instance).")
    parameters: JsonObject = Field(default_factory=dict, description="Workflow parameters (request body).")
    zuora: ZuoraHeaders = Field(default_factory=ZuoraHeaders)

    @field_validator("parameters")
    @classmethod
    def _no_reserved_words(cls, value: JsonObject) -> JsonObject:
        reserved = sorted(RESERVED_PARAMETERS.intersection(value))
        if reserved:
            raise ValueError(f"Zuora reserves these parameter names; rename them: {', '.join(reserved)}")
        return value


class ZuoraRerunTask(Command):
    """Rerun a Zuora workflow task (POST /workflows/tasks/{task_id}/rerun)."""

    operation: Literal["zuora.rerun_task"]
    task_id: PathSegment = Field(description="Id of the task to rerun.")
    zuora: ZuoraHeaders = Field(default_factory=ZuoraHeaders)


class ZuoraStopRun(Command):
    """Stop a Zuora workflow run (PUT /workflows/workflow_runs/{run_id}/stop)."""

    operation: Literal["zuora.stop_run"]
    run_id: int = Field(gt=0, lt=2**63, description="Id of the workflow run (a run outcome provider_ref).")


def idempotency_key(command: ZuoraRunWorkflow | ZuoraRerunTask) -> str:
    """Deterministic per command: the same on every attempt and after a restart (52 hex-ish chars)."""
    digest = hashlib.sha256(f"{command.operation}:{command.id}".encode()).hexdigest()
    return f"wfb-{digest[:48]}"


def routing_headers(options: ZuoraHeaders) -> dict[str, str]:
    """Zuora-Track-Id / -Entity-Ids / -Org-Ids, only those the command sets."""
    headers: dict[str, str] = {}
    if options.track_id is not None:
        headers["Zuora-Track-Id"] = options.track_id
    if options.entity_id is not None:
        headers["Zuora-Entity-Ids"] = options.entity_id
    if options.org_ids:
        headers["Zuora-Org-Ids"] = ",".join(options.org_ids)
    return headers


def build_request(command: Command) -> HttpRequest:
    """The run or rerun call for ``command``."""
    if isinstance(command, ZuoraRunWorkflow):
        headers = {"Content-Type": _JSON, "Accept": _JSON, **_common_headers(command)}
        path = f"/workflows/{segment(str(command.workflow_id))}/run"
        body = orjson.dumps(command.parameters)
        return HttpRequest("POST", path, headers=headers, body=body, route=RUN_ROUTE)
    if isinstance(command, ZuoraRerunTask):
        path = f"/workflows/tasks/{segment(command.task_id)}/rerun"
        headers = {"Accept": _JSON, **_common_headers(command)}
        return HttpRequest("POST", path, headers=headers, route=RERUN_ROUTE)
    if isinstance(command, ZuoraStopRun):  # a PUT: Zuora takes Idempotency-Key on POST and PATCH only
        path = f"/workflows/workflow_runs/{segment(str(command.run_id))}/stop"
        return HttpRequest("PUT", path, headers={"Accept": _JSON}, route=STOP_ROUTE)
    raise CommandRejected(ErrorKind.TARGET_MISMATCH, f"zuora targets cannot run {command.operation}")


def _common_headers(command: ZuoraRunWorkflow | ZuoraRerunTask) -> dict[str, str]:
    return {"Idempotency-Key": idempotency_key(command), **routing_headers(command.zuora)}


def error_detail(body: bytes) -> str:
    """``errors[].title`` (workflow API), else ``reasons[].message`` (v1 API), else ``message``."""
    parsed = json_or_none(body)
    if not isinstance(parsed, dict):
        return ""
    for key, field in (("errors", "title"), ("reasons", "message")):
        items = parsed.get(key)
        if isinstance(items, list):
            texts = [i[field] for i in items[:3] if isinstance(i, dict) and isinstance(i.get(field), str)]
            if texts:
                return clip("; ".join(texts))
    message = parsed.get("message")
    return clip(message) if isinstance(message, str) else ""


def _message(reason: str, status: int, body: bytes, headers: Mapping[str, str]) -> str:
    detail = error_detail(body)
    request_id = header(headers, "Zuora-Request-Id")
    text = f"{reason} ({status})" + (f": {detail}" if detail else "")
    return text + (f" [Zuora-Request-Id {clip(request_id, 64)}]" if request_id else "")


def _conflict(command: Command, headers: Mapping[str, str], body: bytes) -> Verdict:
    if b"idempotency" in body.lower():
        # Another attempt with this key is still running: wait, retry with the same key.
        message = _message(_IN_FLIGHT, 409, body, headers)
        return Verdict(Status.CONFLICT, error_kind=ErrorKind.CONFLICT, message=message, retryable=True)
    reason = _INSTANCE_ID if isinstance(command, ZuoraRunWorkflow) else _REFUSED.get(command.operation, "")
    return Verdict(
        Status.REJECTED, error_kind=ErrorKind.PROVIDER_REJECTED, message=_message(reason, 409, body, headers)
    )


def classify(command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    """Run 200 queued, rerun and stop 200 applied; 409 in-flight key is a retryable conflict."""
    if 200 <= status < 300:
        parsed = json_or_none(body)
        reference = reference_of(parsed.get("id")) if isinstance(parsed, dict) else None
        if isinstance(command, ZuoraStopRun):
            return Verdict(Status.APPLIED, reference=reference or str(command.run_id))
        done = Status.QUEUED if isinstance(command, ZuoraRunWorkflow) else Status.APPLIED
        return Verdict(done, reference=reference)
    if status == 409:
        return _conflict(command, headers, body)
    verdict = classify_common(status, headers) or unexpected(status)
    if verdict.status is Status.REJECTED:
        reason = _REASONS.get(status, "Zuora rejected the request")
        return replace(verdict, message=_message(reason, status, body, headers))
    return verdict


def status_ref(command: Command, reference: str | None) -> dict[str, str] | None:
    """The run a queued run or an applied stop is about (a rerun's task has no run read)."""
    if isinstance(command, ZuoraRunWorkflow) and reference:
        return {"run_id": reference}
    if isinstance(command, ZuoraStopRun):
        return {"run_id": str(command.run_id)}
    return None


def build_status_request(ref: Mapping[str, str]) -> HttpRequest:
    path = f"/workflows/workflow_runs/{segment(ref['run_id'])}"
    return HttpRequest("GET", path, headers={"Accept": _JSON}, route=RUN_STATUS_ROUTE)


def _task_count(tasks: object, name: str) -> int:
    value = tasks.get(name) if isinstance(tasks, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def run_state(status: object, tasks: object) -> RunReading | None:
    """Finished is not success: task errors mean failed, unfinished tasks mean not done yet."""
    if status in _RUNNING:
        return RunReading(RunState.RUNNING, str(status))
    if status == "Stopped":
        return RunReading(RunState.STOPPED, "Stopped")
    if status != "Finished":
        return None
    errors = _task_count(tasks, "error")
    if errors:
        total = _task_count(tasks, "total")
        return RunReading(RunState.FAILED, "Finished", detail=f"{errors} of {total} task(s) ended in error")
    if any(_task_count(tasks, name) for name in _TASK_COUNTS):
        return RunReading(RunState.RUNNING, "Finished")
    return RunReading(RunState.COMPLETED, "Finished")


def classify_status(status: int, headers: Mapping[str, str], body: bytes) -> Reading:
    doc = status_document(status, headers, body)
    if isinstance(doc, ReadFailure):
        return doc
    return run_state(doc.get("status"), doc.get("tasks")) or UNREADABLE


class ZuoraProvider(OAuthProvider[ZuoraTarget]):
    """One Zuora tenant: client-credentials tokens cached until near ``expires_in``."""

    kind = KIND
    label = "Zuora"

    def build_request(self, command: Command) -> HttpRequest:
        return build_request(command)

    def classify(self, command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        return classify(command, status, headers, body)

    def token_url(self, target: ZuoraTarget) -> str:
        return target.effective_token_url

    def token_form(self, target: ZuoraTarget) -> dict[str, str]:
        return {
            "client_id": target.client_id.get_secret_value(),
            "client_secret": target.client_secret.get_secret_value(),
            "grant_type": "client_credentials",
        }

    def parse_token(self, body: bytes, started: float) -> Token:
        return bearer_token(body, started, "Zuora", DEFAULT_TOKEN_LIFETIME_S)


_RUN = {"workflow_id": 396, "parameters": {"accountId": "4028905f5a87c0ff015a87d25ae90025"}}
_REFUSED_RUN = {
    "kind": ErrorKind.PROVIDER_REJECTED,
    "retryable": False,
    "message": "Zuora refused: workflow 396 is not active",
}
SPEC = ProviderSpec(
    kind=KIND,
    api_version=API_VERSION,
    title="Zuora",
    order=2,
    target=ZuoraTarget,
    adapter=ZuoraProvider,
    commands=(
        CommandSpec(
            ZuoraRunWorkflow,
            CommandFamily.RUN,
            CommandExample(
                2,
                "acct-4028905f",
                {"target": "zuora-prod", **_RUN, "zuora": {"track_id": "billing-run-2025-01"}},
                tracked={"run_id": "401"},
            ),
            (OutcomeExample(Status.REJECTED, 5120, {"http_status": 400, "error": _REFUSED_RUN}),),
        ),
        CommandSpec(
            ZuoraRerunTask,
            CommandFamily.CONTROL,
            CommandExample(4, "task-2770", {"target": "zuora-prod", "task_id": "2770"}),
            (OutcomeExample(Status.APPLIED, 77, {"provider_ref": "2770", "http_status": 200}),),
        ),
        CommandSpec(
            ZuoraStopRun,
            CommandFamily.CONTROL,
            CommandExample(6, "acct-4028905f", {"target": "zuora-prod", "run_id": 401}),
        ),
    ),
    status_read=lambda target: plain_read(status_ref, build_status_request, classify_status),
    what_to_check="whether a workflow run or task with this command's Idempotency-Key exists",
    followed="run_id",
    uses_tokens=True,
)
