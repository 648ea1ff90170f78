"""Zilliant job workflows and the Salesforce password-grant token endpoint that authenticates them.

Routes (under the ``/salesforce`` and ``/zilliant`` prefixes)::

    POST /salesforce/services/oauth2/token
    POST /zilliant/v1/JobWorkflow/Authorized
    GET  /zilliant/v1/JobWorkflow/Authorized/{jobId}/Status

Jobs are scheduled at submission (start and end times) and their status is computed from the clock,
so no background task is needed.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.spec import Emulation, Example, LocalTargets, SandboxSpec
from bridge.sandbox.state import (
    JsonObject,
    TokenStore,
    iso_millis,
    json_response,
    parse_json,
    read_json_object,
)

KIND = "zilliant"
SALESFORCE_USERNAME = "sandbox-user"
SALESFORCE_PASSWORD = "sandbox-password"  # noqa: S105 (public sandbox credential)
SALESFORCE_CLIENT_ID = "sandbox-sf-client"
SALESFORCE_CLIENT_SECRET = "sandbox-sf-secret"  # noqa: S105 (public sandbox credential)
ZILLIANT_FORWARDED_HOST = "sandbox.zilliant.local"
LOCAL_TARGET = "zilliant-sandbox"
TOKEN_FIELDS = ("access_token", "instance_url", "id", "token_type", "issued_at", "signature")
BAD_BODY = {"message": "Unable to process the JSON body."}
AUTH_ERROR = {"message": "Authentication error: invalid Authorization or X-Forwarded-Host header."}
CLOSE_STATUS_PARAM = "SANDBOX_CLOSE_STATUS"
"""Sandbox extension: a job parameter naming the closeStatus the job ends with (default COMPLETED)."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ZilliantSandboxSettings:
    salesforce_username: str = SALESFORCE_USERNAME
    salesforce_password: str = SALESFORCE_PASSWORD
    salesforce_client_id: str = SALESFORCE_CLIENT_ID
    salesforce_client_secret: str = SALESFORCE_CLIENT_SECRET
    salesforce_token_ttl_s: float = 7200.0
    forwarded_host: str = ZILLIANT_FORWARDED_HOST
    parallel_enabled: bool = False
    job_duration_s: float = 2.0


class SalesforceSandbox:
    """``POST /services/oauth2/token`` with the password grant; no expires_in, no refresh token."""

    def __init__(self, config: SandboxConfig, prefix: str = "/salesforce") -> None:
        self.config = config
        self.settings = config.of(KIND, ZilliantSandboxSettings)
        self.prefix = prefix
        self.tokens = TokenStore(config.clock, prefix="00DSANDBOX!")

    def reset(self) -> None:
        self.tokens.revoke_all()

    def routes(self) -> list[web.RouteDef]:
        return [web.post(f"{self.prefix}/services/oauth2/token", self.token)]

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "password":
            return json_response(
                {"error": "unsupported_grant_type", "error_description": "grant type not supported"}, 400
            )
        if not self._credentials_ok({k: str(v) for k, v in form.items()}):
            failure = {"error": "invalid_grant", "error_description": "authentication failure"}
            return json_response(failure, 400)
        token = self.tokens.issue(self.settings.salesforce_username, self.settings.salesforce_token_ttl_s)
        return json_response(self._token_body(token.value, str(request.url.origin()), token.expires_at))

    def _credentials_ok(self, form: dict[str, str]) -> bool:
        c = self.settings
        expected = {
            "username": c.salesforce_username,
            "password": c.salesforce_password,
            "client_id": c.salesforce_client_id,
            "client_secret": c.salesforce_client_secret,
        }
        return all(hmac.compare_digest(form.get(k, ""), v) for k, v in expected.items())

    def _token_body(self, access_token: str, origin: str, expires_at: float) -> JsonObject:
        issued_at = str(int((expires_at - self.settings.salesforce_token_ttl_s) * 1000))
        identity = f"{origin}{self.prefix}/id/00DSANDBOX000001/005SANDBOX000001"
        secret = self.settings.salesforce_client_secret.encode()
        mac = hmac.new(secret, (identity + issued_at).encode(), "sha256")
        return {
            "access_token": access_token,
            "instance_url": origin + self.prefix,
            "id": identity,
            "token_type": "Bearer",
            "issued_at": issued_at,
            "signature": base64.b64encode(mac.digest()).decode(),
        }


def decode_oauth_header(value: str | None) -> JsonObject | None:
    """Pure: the token JSON inside ``OAuth <base64>``, or None when it is not a full token response."""
    if value is None:
        return None
    scheme, _, payload = value.partition(" ")
    if scheme != "OAuth" or not payload.strip():
        return None
    try:
        token = parse_json(base64.b64decode(payload.strip(), validate=True))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(token, dict) or not all(isinstance(token.get(f), str) for f in TOKEN_FIELDS):
        return None
    return token


@dataclass(frozen=True, slots=True)
class Job:
    job_id: str
    scope: str | None
    submitted_at: float
    start_at: float
    end_at: float
    close_status: str
    body: JsonObject

    def is_open(self, now: float) -> bool:
        return now < self.end_at

    def status(self, now: float) -> JsonObject:
        """(inference) startTimeStamp is the scheduled start, so a queued job shows a future time."""
        closed = not self.is_open(now)
        return {
            "executionStatus": "CLOSED" if closed else "OPEN",
            "closeStatus": self.close_status if closed else None,
            "startTimeStamp": iso_millis(self.start_at),
            "closeTimeStamp": iso_millis(self.end_at) if closed else None,
        }


def schedule_start(
    jobs: Iterable[Job], scope: str | None, now: float, *, parallel_enabled: bool
) -> float | None:
    """Pure: when a new job starts, or None for a 409 (same scope in progress, parallel disabled).

    Unscoped jobs form one serial FIFO; with parallel runs enabled, a scope is its own FIFO.
    (inference) Different scopes never wait for each other or for the unscoped queue, and with
    parallel runs disabled a scoped job that is not refused starts at once.
    """
    same_queue = [j for j in jobs if j.scope == scope and j.is_open(now)]
    if scope is not None and not parallel_enabled:
        return None if same_queue else now
    return max([now, *(j.end_at for j in same_queue)])


def parse_job_body(body: JsonObject | None) -> tuple[str | None, str] | None:
    """Pure: (scope, close status) for a valid POST body, None for "Unable to process the JSON body"."""
    if body is None:
        return None
    params, scope = body.get("parameters"), body.get("scope")
    if not isinstance(params, dict) or not isinstance(params.get("WORKFLOW_AUTOMATION_ID"), str):
        return None
    if not params["WORKFLOW_AUTOMATION_ID"] or not isinstance(scope, str | None):
        return None
    if not isinstance(body.get("descriptor"), str | None):
        return None
    close_status = params.get(CLOSE_STATUS_PARAM)
    return (scope or None), (close_status if isinstance(close_status, str) else "COMPLETED")


class ZilliantSandbox:
    """Job submission and status; the Salesforce tokens decide who may call."""

    def __init__(
        self, config: SandboxConfig, salesforce_tokens: TokenStore, prefix: str = "/zilliant"
    ) -> None:
        self.config = config
        self.settings = config.of(KIND, ZilliantSandboxSettings)
        self.prefix = prefix
        self.tokens = salesforce_tokens
        self.jobs: dict[str, Job] = {}

    def reset(self) -> None:
        self.jobs.clear()

    def routes(self) -> list[web.RouteDef]:
        base = f"{self.prefix}/v1/JobWorkflow/Authorized"
        return [web.post(base, self.submit), web.get(base + "/{jobId}/Status", self.status)]

    def authorized(self, request: web.Request) -> bool:
        if request.headers.get("X-Forwarded-Host") != self.settings.forwarded_host:
            return False
        token = decode_oauth_header(request.headers.get("Authorization"))
        return token is not None and self.tokens.lookup(token["access_token"]) is not None

    async def submit(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return json_response(AUTH_ERROR, 401)
        body = await read_json_object(request)
        parsed = parse_job_body(body)
        if parsed is None or body is None:
            return json_response(BAD_BODY, 400)
        scope, close_status = parsed
        now = self.config.clock()
        start = schedule_start(
            self.jobs.values(), scope, now, parallel_enabled=self.settings.parallel_enabled
        )
        if start is None:
            return json_response({"message": f"A job with scope '{scope}' is already in progress."}, 409)
        job = Job(
            str(uuid.uuid4()),
            scope,
            now,
            start,
            start + self.settings.job_duration_s,
            close_status,
            body,
        )
        self.jobs[job.job_id] = job
        return json_response({"jobId": job.job_id}, 202)

    async def status(self, request: web.Request) -> web.Response:
        if not self.authorized(request):
            return json_response(AUTH_ERROR, 401)
        job = self.jobs.get(request.match_info["jobId"])
        if job is None:
            return json_response({"message": "Job not found."}, 404)
        return json_response(job.status(self.config.clock()))


def encode_oauth_header(token_response: dict[str, Any]) -> str:
    """``OAuth <base64 of the whole token JSON>``: what a Zilliant client sends (used by tests)."""
    return "OAuth " + base64.b64encode(orjson.dumps(token_response)).decode()


def _emulate(config: SandboxConfig) -> Emulation:
    salesforce = SalesforceSandbox(config)
    return Emulation(
        (salesforce, ZilliantSandbox(config, salesforce.tokens)), revoke=(salesforce.tokens.revoke_all,)
    )


def _local_targets(url: str) -> dict[str, dict[str, Any]]:
    return {
        LOCAL_TARGET: {
            "provider": KIND,
            "base_url": f"{url}/zilliant",
            "token_url": f"{url}/salesforce/services/oauth2/token",
            "forwarded_host": ZILLIANT_FORWARDED_HOST,
            **{field: {"env": f"SANDBOX_SF_{field.upper()}"} for field in _CREDENTIALS},
        }
    }


_CREDENTIALS = {
    "username": SALESFORCE_USERNAME,
    "password": SALESFORCE_PASSWORD,
    "client_id": SALESFORCE_CLIENT_ID,
    "client_secret": SALESFORCE_CLIENT_SECRET,
}


def _examples(cid: Callable[[str], str]) -> list[Example]:
    job = {"target": LOCAL_TARGET, "operation": "zilliant.queue_job", "automation_id": "PublishListPrices"}
    return [
        (b"pricing", {"id": cid("zilliant-queued"), **job, "scope": "pricing", "parameters": {"foo": "bar"}}),
        # same key: runs after the first, while its job still holds the scope -> 409 conflict
        (b"pricing", {"id": cid("zilliant-conflict"), **job, "scope": "pricing"}),
    ]


SANDBOX = SandboxSpec(
    kind=KIND,
    fault_keys=("zilliant", "salesforce"),
    fault_key=lambda path: next((k for k in ("zilliant", "salesforce") if path.split("/")[0] == k), None),
    emulate=_emulate,
    local=LocalTargets(
        _local_targets, {f"SANDBOX_SF_{f.upper()}": v for f, v in _CREDENTIALS.items()}, _examples
    ),
)
