"""8x8 Automation adapter: suspend, resume or terminate a workflow instance.

``PATCH /api/v1/accounts/{accountId}/definitions/{definitionId}/workflows/{workflowId}`` with
``{"status": "suspend" | "resume" | "terminate"}``. Auth is ``Authorization: Bearer <api key>``
(a static 8x8 Connect key, not ``x-api-key``).

Example::

    provider = EightByEightProvider("cx", target, session)
    request = provider.build_request(command)
    headers = {**request.headers, **await provider.auth_headers()}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from enum import StrEnum
from typing import ClassVar, Literal

import orjson
from pydantic import Field, field_validator

from bridge.providers.api import (
    API_VERSION,
    UNREADABLE,
    Command,
    CommandExample,
    CommandFamily,
    CommandRejected,
    CommandSpec,
    EffectCheck,
    ErrorKind,
    HttpRequest,
    OnUnknown,
    OutcomeExample,
    PathSegment,
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
    reference_of,
    resolve_secret,
    segment,
    status_document,
    unexpected,
)

KIND = "8x8"

_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
ROUTE = "/api/v1/accounts/{account_id}/definitions/{definition_id}/workflows/{instance_id}"


class EightByEightTarget(TargetBase):
    provider: Literal["8x8"]
    account_id: str = Field(pattern=r"^[A-Za-z0-9._~-]{1,128}$")
    on_unknown: OnUnknown = Field(
        default="read_before_write", description="GET the instance; PATCH only if not yet in the asked state."
    )
    api_key: Secret

    READ_BEFORE_WRITE: ClassVar[bool] = True
    _secrets = field_validator("api_key", mode="before")(resolve_secret)


class EightByEightAction(StrEnum):
    SUSPEND = "suspend"
    RESUME = "resume"
    TERMINATE = "terminate"


class EightByEightUpdateInstance(Command):
    """Suspend, resume or terminate an 8x8 Automation workflow instance (PATCH .../workflows/{id})."""

    operation: Literal["8x8.update_instance"]
    action: EightByEightAction = Field(strict=False)  # lax enum: still only its values, but from JSON text
    definition_id: PathSegment = Field(description="Workflow definition id (a UUID).")
    instance_id: PathSegment = Field(description="Workflow instance id.")
    account_id: PathSegment | None = Field(
        default=None, description="Overrides the target's configured account id."
    )


ACTION_STATE = {
    EightByEightAction.SUSPEND: "Suspended",
    EightByEightAction.RESUME: "Runnable",
    EightByEightAction.TERMINATE: "Terminated",
}


def build_request(command: Command, *, default_account: str) -> HttpRequest:
    """The PATCH call; the command's account id overrides the target's."""
    if not isinstance(command, EightByEightUpdateInstance):
        raise CommandRejected(ErrorKind.TARGET_MISMATCH, f"8x8 targets cannot run {command.operation}")
    account = command.account_id or default_account
    path = (
        f"/api/v1/accounts/{segment(account)}/definitions/{segment(command.definition_id)}"
        f"/workflows/{segment(command.instance_id)}"
    )
    body = orjson.dumps({"status": command.action.value})
    return HttpRequest("PATCH", path, headers=dict(_JSON_HEADERS), body=body, route=ROUTE)


def build_status_request(command: Command, *, default_account: str) -> HttpRequest:
    """The GET of the instance the command steers (read before write, after a crash)."""
    patch = build_request(command, default_account=default_account)
    return HttpRequest(
        "GET", patch.path, headers={"Accept": "application/json"}, query={"includeLogs": "false"}
    )


def status_ref(command: Command, reference: str | None, *, default_account: str) -> dict[str, str] | None:
    """The instance an applied control command steered, and what it asked for (to confirm it)."""
    if not isinstance(command, EightByEightUpdateInstance):
        return None
    return {
        "account_id": command.account_id or default_account,
        "definition_id": command.definition_id,
        "instance_id": command.instance_id,
        "action": command.action.value,
    }


def build_instance_read(ref: Mapping[str, str]) -> HttpRequest:
    path = (
        f"/api/v1/accounts/{segment(ref['account_id'])}/definitions/{segment(ref['definition_id'])}"
        f"/workflows/{segment(ref['instance_id'])}"
    )
    headers = {"Accept": "application/json"}
    return HttpRequest("GET", path, headers=headers, query={"includeLogs": "false"}, route=ROUTE)


def instance_state(status: object, action: str | None) -> RunReading | None:
    """Runnable running, Suspended waiting (for a resume), Complete completed; Terminated is
    stopped after our terminate, failed otherwise (a fault, or a terminate from elsewhere)."""
    if status == "Runnable":
        return RunReading(RunState.RUNNING, "Runnable")
    if status == "Suspended":
        return RunReading(RunState.WAITING, "Suspended", waiting_for="resume")
    if status == "Complete":
        return RunReading(RunState.COMPLETED, "Complete")
    if status != "Terminated":
        return None
    if action == "terminate":
        return RunReading(RunState.STOPPED, "Terminated")
    detail = "8x8 terminated the instance (a fault, or by hand)"
    return RunReading(RunState.FAILED, "Terminated", detail=detail)


def classify_status(
    status: int, headers: Mapping[str, str], body: bytes, *, action: str | None = None
) -> Reading:
    doc = status_document(status, headers, body)
    if isinstance(doc, ReadFailure):
        return doc
    return instance_state(doc.get("status"), action) or UNREADABLE


def error_detail(body: bytes) -> str:
    """``message (code N, errorId X)`` from the 8x8 error body."""
    parsed = json_or_none(body)
    if not isinstance(parsed, dict):
        return ""
    message = parsed.get("message")
    code = parsed.get("code")
    error_id = reference_of(parsed.get("errorId"))
    tags: list[str] = []
    if isinstance(code, int) and not isinstance(code, bool):
        tags.append(f"code {code}")
    if error_id:
        tags.append(f"errorId {error_id}")
    text = clip(message) if isinstance(message, str) else ""
    suffix = f"({', '.join(tags)})" if tags else ""
    return f"{text} {suffix}".strip()


def classify(command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    """200 applied (reference: the instance id); 400/404 rejected with the 8x8 code and message."""
    if 200 <= status < 300:
        instance = command.instance_id if isinstance(command, EightByEightUpdateInstance) else None
        return Verdict(Status.APPLIED, reference=instance)
    verdict = classify_common(status, headers) or unexpected(status)
    detail = error_detail(body)
    if verdict.status is Status.REJECTED and detail:
        return replace(verdict, message=f"{verdict.message}: {detail}")
    return verdict


class EightByEightProvider(StaticKeyProvider[EightByEightTarget]):
    """One 8x8 account: ``Authorization: Bearer <api key>`` (not ``x-api-key``)."""

    kind = KIND

    def build_request(self, command: Command) -> HttpRequest:
        return build_request(command, default_account=self._target.account_id)

    def classify(self, command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        return classify(command, status, headers, body)

    def key_headers(self, key: str) -> Mapping[str, str]:
        return {"Authorization": f"Bearer {key}"}


def already_in_state(action: EightByEightAction, instance: object) -> bool:
    """Whether an 8x8 workflowInstance (the GET body) already is what ``action`` asks for."""
    return isinstance(instance, dict) and instance.get("status") == ACTION_STATE[action]


def _effect_check(target: EightByEightTarget) -> EffectCheck:
    """Read before write: GET the instance; already in the asked state means applied, no PATCH."""

    def request(command: Command) -> HttpRequest | None:
        if not isinstance(command, EightByEightUpdateInstance):
            return None
        return build_status_request(command, default_account=target.account_id)

    def applied(command: Command, body: bytes) -> str | None:
        assert isinstance(command, EightByEightUpdateInstance)  # only those get a request
        return command.instance_id if already_in_state(command.action, json_or_none(body)) else None

    return EffectCheck(request, applied)


def _status_read(target: EightByEightTarget) -> StatusRead:
    def ref(command: Command, reference: str | None) -> dict[str, str] | None:
        return status_ref(command, reference, default_account=target.account_id)

    def classify(status: int, headers: Mapping[str, str], body: bytes, ref: Mapping[str, str]) -> Reading:
        return classify_status(status, headers, body, action=ref.get("action"))

    return StatusRead(ref, build_instance_read, classify)


_EXAMPLE = {
    "target": "8x8-prod",
    "action": "suspend",
    "definition_id": "5870442f-3ddd-4657-b74c-6e17308f5230",
    "instance_id": "60dbe307fe55d99fc083db61",
    "expires_at": "2025-01-15T10:00:00Z",
}
_SILENT = {"kind": ErrorKind.TIMEOUT, "retryable": True, "message": "8x8 did not answer within 30.0 s"}
SPEC = ProviderSpec(
    kind=KIND,
    api_version=API_VERSION,
    title="8x8",
    order=4,
    target=EightByEightTarget,
    adapter=EightByEightProvider,
    commands=(
        CommandSpec(
            EightByEightUpdateInstance,
            CommandFamily.CONTROL,
            CommandExample(5, "60dbe307fe55d99fc083db61", _EXAMPLE),
            (OutcomeExample(Status.ERROR, 311, {"attempts": 5, "error": _SILENT}),),
        ),
    ),
    status_read=_status_read,
    what_to_check="the workflow instance's status",
    followed="instance_id",
    effect_check=_effect_check,
)
