"""Zilliant adapter: queue a predefined job workflow (``POST /v1/JobWorkflow/Authorized``).

Auth is Salesforce's username-password OAuth flow. Zilliant wants the *entire* token response,
Base64-encoded exactly as received, in ``Authorization: OAuth <b64>``, plus ``X-Forwarded-Host``.
Salesforce returns no ``expires_in``, so a token lives ``target.token_ttl_s`` (the org session
timeout); a 401 from the API makes the executor ask for ``auth_headers(refresh=True)``.

Example::

    provider = ZilliantProvider("pricing-prod", target, session)
    request = provider.build_request(command)
    headers = {**request.headers, **await provider.auth_headers()}
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

import orjson
from pydantic import Field, StringConstraints, field_validator

from bridge.providers.api import (
    API_VERSION,
    UNREADABLE,
    AuthError,
    Command,
    CommandExample,
    CommandFamily,
    CommandRejected,
    CommandSpec,
    ErrorKind,
    HttpRequest,
    JsonObject,
    OAuthProvider,
    OutcomeExample,
    ProviderSpec,
    ReadFailure,
    Reading,
    RunReading,
    RunState,
    Secret,
    Status,
    TargetBase,
    Token,
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

if TYPE_CHECKING:
    pass

KIND = "zilliant"

API_PATH = "/v1/JobWorkflow/Authorized"
STATUS_ROUTE = API_PATH + "/{jobId}/Status"
_JSON_HEADERS = {"Content-Type": "application/json", "Accept": "application/json"}
_MAX_SKEW_S = 60.0


class ZilliantTarget(TargetBase):
    provider: Literal["zilliant"]
    token_url: str = Field(description="Salesforce token endpoint, e.g. https://login.salesforce.com/...")
    forwarded_host: str = Field(description="X-Forwarded-Host value naming the OAuth host.")
    token_ttl_s: float = Field(
        default=3600.0, gt=0, description="Salesforce returns no expires_in: the org session timeout."
    )
    username: Secret
    password: Secret
    client_id: Secret
    client_secret: Secret

    _secrets = field_validator("username", "password", "client_id", "client_secret", mode="before")(
        resolve_secret
    )


class ZilliantQueueJob(Command):
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


def build_request(command: Command) -> HttpRequest:
    """The queue-job call for ``command`` (the model refuses WORKFLOW_AUTOMATION_ID in parameters)."""
    if not isinstance(command, ZilliantQueueJob):
        raise CommandRejected(ErrorKind.TARGET_MISMATCH, f"zilliant targets cannot run {command.operation}")
    body: dict[str, Any] = {"descriptor": command.descriptor}
    if command.scope is not None:
        body["scope"] = command.scope
    body["parameters"] = {"WORKFLOW_AUTOMATION_ID": command.automation_id, **command.parameters}
    return HttpRequest("POST", API_PATH, headers=dict(_JSON_HEADERS), body=orjson.dumps(body), route=API_PATH)


def job_id(body: bytes) -> str | None:
    """The job id from a 202 body: ``{"jobId": ...}``, a JSON string, or bare text."""
    parsed = json_or_none(body)
    if isinstance(parsed, dict):
        return reference_of(parsed.get("jobId"))
    if parsed is None:
        text = body.decode("utf-8", errors="replace").strip()
        return reference_of(text) if text != "null" else None
    return reference_of(parsed)


def _detail(body: bytes) -> str:
    parsed = json_or_none(body)
    if isinstance(parsed, dict):
        for key in ("message", "errorMessage", "error"):
            if isinstance(parsed.get(key), str) and parsed[key]:
                return f": {clip(parsed[key])}"
    return ""


def classify(command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    """202 queued; 409 scope busy (the executor applies the target's conflict policy); 400 rejected."""
    if 200 <= status < 300:
        return Verdict(Status.QUEUED, reference=job_id(body))
    if status == 409:
        return scope_busy("scope busy")
    if status == 400:
        message = f"Zilliant could not process the JSON body (400){_detail(body)}"
        return Verdict(Status.REJECTED, error_kind=ErrorKind.PROVIDER_REJECTED, message=message)
    return classify_common(status, headers) or unexpected(status)


def status_ref(command: Command, reference: str | None) -> dict[str, str] | None:
    """What a status read of the queued job needs: its job id."""
    return {"job_id": reference} if isinstance(command, ZilliantQueueJob) and reference else None


def build_status_request(ref: Mapping[str, str]) -> HttpRequest:
    path = f"{API_PATH}/{segment(ref['job_id'])}/Status"
    return HttpRequest("GET", path, headers={"Accept": "application/json"}, route=STATUS_ROUTE)


def classify_status(status: int, headers: Mapping[str, str], body: bytes) -> Reading:
    """OPEN is running; CLOSED with closeStatus COMPLETED completed, any other close status failed."""
    doc = status_document(status, headers, body)
    if isinstance(doc, ReadFailure):
        return doc
    execution = doc.get("executionStatus")
    if execution == "OPEN":
        return RunReading(RunState.RUNNING, "OPEN")
    if execution != "CLOSED":
        return UNREADABLE
    close = doc.get("closeStatus")
    if close == "COMPLETED":
        return RunReading(RunState.COMPLETED, "COMPLETED")
    raw = clip(str(close), 64)
    return RunReading(RunState.FAILED, raw, detail=f"Zilliant closed the job with closeStatus {raw}")


def parse_token(body: bytes, expires_at: float) -> Token:
    """Base64 of the exact token response, after checking that it is one."""
    fields = json_or_none(body)
    if not isinstance(fields, dict) or not isinstance(fields.get("access_token"), str):
        raise AuthError("Zilliant token endpoint returned no access_token", retryable=True)
    return Token(base64.b64encode(body).decode("ascii"), expires_at)


class ZilliantProvider(OAuthProvider[ZilliantTarget]):
    """One Zilliant environment: Salesforce password-grant tokens, cached for ``token_ttl_s``."""

    kind = KIND
    label = "Zilliant"
    scheme = "OAuth"

    def build_request(self, command: Command) -> HttpRequest:
        return build_request(command)

    def classify(self, command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        return classify(command, status, headers, body)

    def token_url(self, target: ZilliantTarget) -> str:
        return target.token_url

    def skew_s(self, target: ZilliantTarget) -> float:
        return min(_MAX_SKEW_S, target.token_ttl_s / 4)

    def token_form(self, target: ZilliantTarget) -> dict[str, str]:
        return {
            "grant_type": "password",
            "username": target.username.get_secret_value(),
            "password": target.password.get_secret_value(),
            "client_id": target.client_id.get_secret_value(),
            "client_secret": target.client_secret.get_secret_value(),
        }

    def parse_token(self, body: bytes, started: float) -> Token:
        return parse_token(body, started + self._target.token_ttl_s)

    def token_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"OAuth {token}", "X-Forwarded-Host": self._target.forwarded_host}


_EXAMPLE = {
    "target": "zilliant-prod",
    "automation_id": "PublishListPrices",
    "scope": "pricing-eu",
    "parameters": {"PRICE_LIST": "EU-2025"},
    "ttl_s": 900,
}
_BUSY = {"kind": ErrorKind.CONFLICT, "retryable": True, "message": "scope 'pricing-eu' is busy"}
SPEC = ProviderSpec(
    kind=KIND,
    api_version=API_VERSION,
    title="Zilliant",
    order=1,
    target=ZilliantTarget,
    adapter=ZilliantProvider,
    commands=(
        CommandSpec(
            ZilliantQueueJob,
            CommandFamily.RUN,
            CommandExample(1, "pricing-eu", _EXAMPLE),
            (
                OutcomeExample(Status.QUEUED, 1042, {"provider_ref": "4711", "http_status": 200}),
                OutcomeExample(Status.CONFLICT, 1043, {"http_status": 409, "error": _BUSY}),
            ),
        ),
    ),
    status_read=lambda target: plain_read(status_ref, build_status_request, classify_status),
    what_to_check="whether a job for this automation was queued",
    followed="job_id",
    uses_tokens=True,
)
