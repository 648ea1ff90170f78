"""Zuora workflows: OAuth client credentials, Run a workflow, Rerun a task, and idempotent replay.

Routes (under the ``/zuora`` prefix)::

    POST /zuora/oauth/token
    POST /zuora/workflows/{workflow_id}/run
    POST /zuora/workflows/tasks/{task_id}/rerun

:meth:`ZuoraSandbox.header_middleware` stamps ``Zuora-Request-Id`` and echoes ``Zuora-Track-Id``
on every Zuora response (including injected faults); :meth:`ZuoraSandbox.idempotency_middleware`
stores and replays workflow POSTs that carry an ``Idempotency-Key``.
"""

from __future__ import annotations

import copy
import hmac
import uuid
from dataclasses import dataclass

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.sandbox.config import (
    ZUORA_DEFINITION_CALLOUT_DISABLED,
    ZUORA_DEFINITION_NO_PARAMS,
    ZUORA_DEFINITION_REQUIRES_ACCOUNT,
    ZUORA_SEEDED_INSTANCE,
    SandboxConfig,
    zuora_seeded_tasks,
)
from bridge.sandbox.state import (
    IdempotencyStore,
    IdempotencyVerdict,
    JsonObject,
    TokenStore,
    bearer,
    iso_millis,
    json_response,
    read_json_object,
    utc,
)

RESERVED_WORDS = frozenset({"controller", "action", "id", "user_email", "user_token", "format"})
TRACK_ID_FORBIDDEN = frozenset(":;\"'")
MAX_TRACK_ID = 64
AUTH_ERROR = {"message": "Authentication error"}


def errors(status: int, title: str, code: str = "invalid") -> JsonObject:
    return {"errors": [{"code": code, "status": status, "title": title}]}


def track_id_ok(value: str) -> bool:
    """Pure: ≤ 64 printable US-ASCII characters without ``: ; " '``."""
    return (
        len(value) <= MAX_TRACK_ID
        and all(" " <= ch <= "~" for ch in value)
        and not TRACK_ID_FORBIDDEN.intersection(value)
    )


IDEMPOTENCY_REFUSALS = {
    IdempotencyVerdict.IN_FLIGHT: errors(
        409, "Another request with the same Idempotency-Key is in progress", "conflict"
    ),
    IdempotencyVerdict.MISMATCH: errors(
        422,
        "The Idempotency-Key was already used with a different URL or HTTP method",
        "unprocessable_entity",
    ),
}


def zuora_time(epoch_s: float) -> str:
    """``2019-09-19 18:25:33 UTC``, the format of workflow instance timestamps."""
    return utc(epoch_s).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Definition:
    id: int
    callout_enabled: bool
    required: tuple[str, ...] = ()


def run_error(definition: Definition, body: JsonObject) -> tuple[int, JsonObject] | None:
    """Pure: the error a Run with this body gets from this definition, or None when it runs."""
    if not definition.callout_enabled:
        return 400, errors(400, "Callout not enabled for the workflow")
    reserved = sorted(RESERVED_WORDS.intersection(body))
    if reserved:
        # (inference) Zuora documents the reserved words but not what it answers when one is sent.
        return 400, errors(400, f"Reserved words cannot be used as parameters: {', '.join(reserved)}")
    if any(name not in body for name in definition.required):
        title = "The provided body is missing one or more required parameters"
        return 406, {**errors(406, title), "parameters": body}
    return None


def seeded_definitions() -> dict[int, Definition]:
    return {
        d.id: d
        for d in (
            Definition(ZUORA_DEFINITION_REQUIRES_ACCOUNT, callout_enabled=True, required=("accountId",)),
            Definition(ZUORA_DEFINITION_CALLOUT_DISABLED, callout_enabled=False),
            Definition(ZUORA_DEFINITION_NO_PARAMS, callout_enabled=True),
        )
    }


class ZuoraSandbox:
    def __init__(self, config: SandboxConfig, prefix: str = "/zuora") -> None:
        self.config = config
        self.prefix = prefix
        self.tokens = TokenStore(config.clock)
        self.idempotency = IdempotencyStore(config.clock, config.zuora_idempotency_ttl_s)
        self.definitions = seeded_definitions()
        self.instances: dict[int, JsonObject] = {}
        self.runs: dict[int, int] = {}
        self.tasks: dict[str, JsonObject] = {}
        self._next_instance = self._next_task = 0
        self.reset()

    def reset(self) -> None:
        """Seeded state: instance 400 (the third run of 396), tasks 2770 and 2771, no tokens or keys."""
        self.tokens.revoke_all()
        self.idempotency.clear()
        self.instances.clear()
        self.runs.clear()
        self.tasks = zuora_seeded_tasks()
        self._next_instance = ZUORA_SEEDED_INSTANCE
        self._next_task = max(int(t) for t in self.tasks) + 1
        self._create_instance(ZUORA_DEFINITION_REQUIRES_ACCOUNT, 1568917533.0, seq=3)

    def routes(self) -> list[web.RouteDef]:
        p = self.prefix
        return [
            web.post(f"{p}/oauth/token", self.token),
            web.post(f"{p}/workflows/tasks/{{task_id}}/rerun", self.rerun),
            web.post(f"{p}/workflows/{{workflow_id}}/run", self.run),
        ]

    def tenant_of(self, request: web.Request) -> str | None:
        token = bearer(request)
        issued = self.tokens.lookup(token) if token else None
        return issued.tenant if issued else None

    async def token(self, request: web.Request) -> web.Response:
        form = await request.post()
        if form.get("grant_type") != "client_credentials":
            return json_response({"error": "unsupported_grant_type"}, 400)
        client_id, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        clients = self.config.zuora_clients()
        if client_id not in clients or not hmac.compare_digest(clients[client_id], secret):
            return json_response({"error": "invalid_client"}, 401)
        issued = self.tokens.issue(client_id, self.config.zuora_token_ttl_s)
        tenant_no = 10000 + list(clients).index(client_id)
        scope = f"user.{uuid.uuid4().hex} entity.{uuid.uuid4()} service.workflow.write tenant.{tenant_no}"
        body = {"access_token": issued.value, "expires_in": self.config.zuora_token_ttl_s}
        return json_response({**body, "jti": uuid.uuid4().hex, "scope": scope, "token_type": "bearer"})

    async def run(self, request: web.Request) -> web.Response:
        if self.tenant_of(request) is None:
            return json_response(AUTH_ERROR, 401)
        raw_id = request.match_info["workflow_id"]
        workflow_id = int(raw_id) if raw_id.isdigit() else None
        if workflow_id is not None and workflow_id in self.instances:
            title = "The provided workflow_id references a workflow instance"
            return json_response(errors(409, title), 409)
        definition = self.definitions.get(workflow_id) if workflow_id is not None else None
        if definition is None:
            return json_response(errors(404, "Workflow not found", "not_found"), 404)
        body = await read_json_object(request, empty_ok=True)
        if body is None:
            # (inference) Not documented; a body that is not a JSON object is refused like bad input.
            return json_response(errors(400, "The request body must be a JSON object"), 400)
        error = run_error(definition, body)
        if error is not None:
            return json_response(error[1], error[0])
        return json_response(self._create_instance(definition.id, self.config.clock()))

    def _create_instance(self, definition_id: int, now: float, seq: int | None = None) -> JsonObject:
        seq = seq if seq is not None else self.runs.get(definition_id, 0) + 1
        self.runs[definition_id] = seq
        instance = {
            "id": self._next_instance,
            "name": f"WF-{definition_id}-{seq:08d}",
            "originalWorkflowId": definition_id,
            "status": "Queued",
            "type": "Workflow::Instance",
            "createdAt": zuora_time(now),
            "updatedAt": zuora_time(now),
        }
        self.instances[self._next_instance] = instance
        self._next_instance += 1
        return instance

    async def rerun(self, request: web.Request) -> web.Response:
        if self.tenant_of(request) is None:
            return json_response(AUTH_ERROR, 401)
        task_id = request.match_info["task_id"]
        source = self.tasks.get(task_id)
        if source is None:
            return json_response(errors(404, "Task not found", "not_found"), 404)
        # (inference) Which task states may be rerun is not documented; every known task may.
        task = copy.deepcopy(source)
        task.update(id=self._next_task, original_task_id=int(task_id), status="Queued", end_time=None)
        task.update(
            start_time=iso_millis(self.config.clock()), error=None, error_class=None, error_details=None
        )
        self.tasks[str(self._next_task)] = task
        self._next_task += 1
        return json_response(task)

    @web.middleware
    async def header_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.path.startswith(self.prefix + "/"):
            return await handler(request)
        track_id = request.headers.get("Zuora-Track-Id")
        valid = track_id is None or track_id_ok(track_id)
        # (inference) Zuora documents the limits of this header, not the answer to breaking them.
        invalid = json_response(errors(400, "Invalid Zuora-Track-Id header"), 400)
        try:
            response = await handler(request) if valid else invalid
        except web.HTTPException as exc:  # unknown path or method: still a Zuora answer
            self._stamp(exc, track_id if valid else None)
            raise
        return self._stamp(response, track_id if valid else None)

    @staticmethod
    def _stamp(response: web.StreamResponse, track_id: str | None) -> web.StreamResponse:
        response.headers["Zuora-Request-Id"] = str(uuid.uuid4())
        if track_id is not None:
            response.headers["Zuora-Track-Id"] = track_id
        return response

    @web.middleware
    async def idempotency_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        key = request.headers.get("Idempotency-Key")
        tenant = self.tenant_of(request)
        workflow_post = request.method == "POST" and request.path.startswith(self.prefix + "/workflows/")
        if key is None or tenant is None or not workflow_post:
            return await handler(request)
        if len(key) > IdempotencyStore.MAX_KEY:
            return json_response(errors(400, "Idempotency-Key must be at most 255 characters"), 400)
        # (inference) Zuora lists only tenant/URL/method mismatches; the same key with a different
        # body replays the stored result, so a retry can never run the workflow twice.
        verdict, stored = self.idempotency.begin(tenant, key, request.method, request.path_qs)
        if stored is not None:
            return stored.to_response()
        if verdict in IDEMPOTENCY_REFUSALS:
            refusal = IDEMPOTENCY_REFUSALS[verdict]
            return json_response(refusal, refusal["errors"][0]["status"])
        try:
            response = await handler(request)
        except BaseException:
            self.idempotency.abandon(tenant, key)
            raise
        self.idempotency.complete(tenant, key, response)
        return response
