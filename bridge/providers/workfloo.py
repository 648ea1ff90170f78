"""workfloo (Kiban) adapter: start a workfloo execution (``POST /api/v1/workfloo``).

Auth is a static space API key in ``x-api-key`` (raw key: a ``Bearer`` prefix is refused with 401).
A target with ``sandbox: true`` adds ``?sandbox=true``.

Example::

    provider = WorkflooProvider("onboarding", target, session)
    request = provider.build_request(command)
    headers = {**request.headers, **await provider.auth_headers()}
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import replace
from typing import Annotated, Any, Literal

import orjson
from pydantic import Field, StringConstraints, field_validator
from yarl import URL

from bridge.providers.api import (
    API_VERSION,
    UNREADABLE,
    CloudEventExample,
    Command,
    CommandExample,
    CommandFamily,
    CommandRejected,
    CommandSpec,
    ErrorKind,
    HttpRequest,
    JsonObject,
    ProviderSpec,
    ReadFailure,
    Reading,
    RunReading,
    RunState,
    Secret,
    StaticKeyProvider,
    Status,
    StatusRead,
    TargetBase,
    Verdict,
    classify_common,
    clip,
    json_or_none,
    plain_read,
    reference_of,
    resolve_secret,
    scope_busy,
    segment,
    status_document,
    unexpected,
)

KIND = "workfloo"

API_PATH = "/api/v1/workfloo"
STATUS_ROUTE = API_PATH + "/status/{id}"
FINISHED = {"SUCCESS": RunState.COMPLETED, "ERROR": RunState.FAILED, "ABANDONED": RunState.STOPPED}
HUMAN_STEPS = frozenset({"FORM", "DOCUMENT", "LINK", "VALIDATION", "TIMER", "NIP", "OTP", "REVIEW"})
SANDBOX_HOST = "sandbox.workfloo.kiban.com"  # sandbox mode by itself; ``?sandbox=`` is ignored there
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_NO_ACCESS = "API key has no access to this definition"


class WorkflooTarget(TargetBase):
    provider: Literal["workfloo"]
    sandbox: bool = Field(default=False, description="Add ?sandbox=true (ignored on the sandbox host).")
    api_key: Secret

    _secrets = field_validator("api_key", mode="before")(resolve_secret)


_Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9]{1,64}$")]


class WorkflooExecute(Command):
    """Start a workfloo execution (POST /api/v1/workfloo)."""

    operation: Literal["workfloo.execute"]
    definition_id: _Id = Field(description="idWorkflooDefinition of a published workfloo.")
    scenario_id: _Id | None = Field(
        default=None, description="Test scenario (Pruebas) id; required when the target runs in sandbox."
    )
    form: JsonObject | None = Field(default=None, description="Initial form data.")
    document: JsonObject | None = Field(default=None, description="Initial document data.")


def runs_in_sandbox(target: WorkflooTarget) -> bool:
    """Sandbox mode: ``sandbox: true`` (``?sandbox=true`` on the production host) or the sandbox host."""
    return target.sandbox or URL(target.base_url).host == SANDBOX_HOST


def build_request(command: Command, *, sandbox: bool = False, sandbox_host: bool = False) -> HttpRequest:
    """The execute call; optional fields are omitted when unset. Sandbox mode needs a scenario."""
    if not isinstance(command, WorkflooExecute):
        raise CommandRejected(ErrorKind.TARGET_MISMATCH, f"workfloo targets cannot run {command.operation}")
    if (sandbox or sandbox_host) and command.scenario_id is None:
        raise CommandRejected(ErrorKind.VALIDATION, "scenario_id: required, the target runs in sandbox mode")
    body: dict[str, Any] = {"idWorkflooDefinition": command.definition_id}
    optional = {"scenarioId": command.scenario_id, "form": command.form, "document": command.document}
    body.update({key: value for key, value in optional.items() if value is not None})
    query = {"sandbox": "true"} if sandbox else {}
    return HttpRequest(
        "POST", API_PATH, headers=dict(_JSON_HEADERS), body=orjson.dumps(body), query=query, route=API_PATH
    )


def _errors_text(errors: Any) -> str:
    if isinstance(errors, dict):
        return ", ".join(f"{key}: {value}" for key, value in list(errors.items())[:5])
    if isinstance(errors, list):
        return ", ".join(str(item) for item in errors[:5])
    return ""


def error_detail(body: bytes) -> str:
    """``typeError: errorMessage`` (or the ``errors`` map when the message is empty)."""
    parsed = json_or_none(body)
    if not isinstance(parsed, dict):
        return ""
    kind = parsed.get("typeError")
    message = parsed.get("errorMessage")
    text = message if isinstance(message, str) and message else _errors_text(parsed.get("errors"))
    parts = [part for part in (kind if isinstance(kind, str) else "", text) if part]
    return clip(": ".join(parts))


def _with_detail(text: str, body: bytes) -> str:
    detail = error_detail(body)
    return f"{text}: {detail}" if detail else text


def classify(command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    """200 queued (execution id); 403 key not allowed for the definition; 409 a busy scope (the conflict
    policy applies)."""
    if 200 <= status < 300:
        parsed = json_or_none(body)
        reference = reference_of(parsed.get("id")) if isinstance(parsed, dict) else None
        return Verdict(Status.QUEUED, reference=reference)
    if status == 403:
        return Verdict(Status.ERROR, error_kind=ErrorKind.AUTH, message=_NO_ACCESS)
    if status == 409:
        message = _with_detail("workfloo reported a conflict creating the execution (409)", body)
        return scope_busy(message)
    verdict = classify_common(status, headers) or unexpected(status)
    if verdict.status is Status.REJECTED:
        return replace(verdict, message=_with_detail(verdict.message, body))
    return verdict


def status_ref(command: Command, reference: str | None) -> dict[str, str] | None:
    return {"execution_id": reference} if isinstance(command, WorkflooExecute) and reference else None


def build_status_request(ref: Mapping[str, str], *, sandbox: bool = False) -> HttpRequest:
    path = f"{API_PATH}/status/{segment(ref['execution_id'])}"
    query = {"sandbox": "true"} if sandbox else {}
    return HttpRequest("GET", path, headers={"Accept": "application/json"}, query=query, route=STATUS_ROUTE)


def execution_state(status: str, node: object) -> RunReading:
    """SUCCESS, ERROR, ABANDONED end a run; a human step (a node not ``*_PROCESSING``) is waiting."""
    if status in FINISHED:
        detail = f"workfloo ended the execution with status {status}" if status != "SUCCESS" else None
        return RunReading(FINISHED[status], status, detail=detail)
    if isinstance(node, str) and node.upper() in HUMAN_STEPS:
        return RunReading(RunState.WAITING, status, waiting_for=node.lower())
    return RunReading(RunState.RUNNING, status)


def classify_status(status: int, headers: Mapping[str, str], body: bytes) -> Reading:
    doc = status_document(status, headers, body)
    if isinstance(doc, ReadFailure):
        return doc
    raw = doc.get("status")
    if not isinstance(raw, str) or not raw:
        return UNREADABLE
    return execution_state(clip(raw, 64), doc.get("currentNodeType"))


class WorkflooProvider(StaticKeyProvider[WorkflooTarget]):
    """One workfloo space: the raw key in ``x-api-key`` (a ``Bearer`` prefix would be a 401)."""

    kind = KIND

    @functools.cached_property
    def _sandbox_host(self) -> bool:
        return runs_in_sandbox(self._target)  # parses the base URL: once, not per command

    def build_request(self, command: Command) -> HttpRequest:
        return build_request(command, sandbox=self._target.sandbox, sandbox_host=self._sandbox_host)

    def classify(self, command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        return classify(command, status, headers, body)

    def key_headers(self, key: str) -> Mapping[str, str]:
        return {"x-api-key": key}


def _status_read(target: WorkflooTarget) -> StatusRead:
    def request(ref: Mapping[str, str]) -> HttpRequest:
        return build_status_request(ref, sandbox=target.sandbox)

    return plain_read(status_ref, request, classify_status)


_EXAMPLE = {
    "target": "workfloo-prod",
    "definition_id": "657117e1d511b6e54fe2a967",
    "form": {"amount": 25000, "currency": "EUR"},
}
SPEC = ProviderSpec(
    kind=KIND,
    api_version=API_VERSION,
    title="workfloo",
    order=3,
    target=WorkflooTarget,
    adapter=WorkflooProvider,
    commands=(
        CommandSpec(
            WorkflooExecute,
            CommandFamily.RUN,
            CommandExample(3, "loan-20250115-17", _EXAMPLE, CloudEventExample(7, "urn:loans-service")),
        ),
    ),
    status_read=_status_read,
    what_to_check="whether an execution of this definition was started",
    followed="execution_id",
)
