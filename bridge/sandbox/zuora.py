"""Zuora workflows: OAuth client credentials, Run a workflow, Rerun a task, and idempotent replay.

Routes (under the ``/zuora`` prefix)::

    POST /zuora/oauth/token
    POST /zuora/workflows/{workflow_id}/run
    POST /zuora/workflows/tasks/{task_id}/rerun
    GET  /zuora/workflows/workflow_runs/{run_id}        the run: Queued, Processing, Finished, ...
    PUT  /zuora/workflows/workflow_runs/{run_id}/stop   Stopping, then Stopped

A run is Queued for the first tenth of ``zuora_run_duration_s``, Processing until it ends, then
Finished with three successful tasks, or (run parameter ``SANDBOX_RESULT: "error"``) one in error;
a positive number in run parameter ``SANDBOX_DURATION_S`` is that run's duration instead.

:meth:`ZuoraSandbox.header_middleware` stamps ``Zuora-Request-Id`` and echoes ``Zuora-Track-Id``
on every Zuora response (including injected faults); :meth:`ZuoraSandbox.idempotency_middleware`
stores and replays workflow POSTs that carry an ``Idempotency-Key``.
"""

from __future__ import annotations

import copy
import hmac
import uuid
from dataclasses import dataclass, field

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.sandbox.config import (
    ZUORA_DEFINITION_CALLOUT_DISABLED,
    ZUORA_DEFINITION_NO_PARAMS,
    ZUORA_DEFINITION_REQUIRES_ACCOUNT,
    ZUORA_DURATION_PARAM,
    ZUORA_RESULT_PARAM,
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


STOPPING_S = 0.5  # (inference) how long a stop takes is not documented
TASKS = 3


@dataclass(slots=True)
class RunTimeline:
    """When a run was created, how long it runs, whether a task fails, and when a stop came."""

    created_at: float
    duration_s: float
    fails: bool = False
    stop_at: float | None = None
    tasks: dict[str, int] = field(default_factory=dict)


def _counts(**counts: int) -> dict[str, int]:
    base = dict.fromkeys(("error", "pending", "processing", "queued", "stopped", "success"), 0)
    return {**base, **counts, "total": TASKS}


def run_status(run: RunTimeline, now: float) -> tuple[str, dict[str, int], float | None]:
    """Pure: (status, task counts, finished at) of a run at ``now``."""
    end = run.created_at + run.duration_s
    if run.stop_at is not None and run.stop_at < end:
        done = run.stop_at + STOPPING_S
        if now < done:
            return "Stopping", _counts(processing=1, stopped=TASKS - 1), None
        return "Stopped", _counts(stopped=TASKS), done
    if now < run.created_at + run.duration_s / 10:
        return "Queued", _counts(queued=TASKS), None
    if now < end:
        return "Processing", _counts(processing=1, queued=TASKS - 1), None
    tasks = _counts(error=1, success=TASKS - 1) if run.fails else _counts(success=TASKS)
    return "Finished", tasks, end


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
        self.timelines: dict[int, RunTimeline] = {}
        self._next_instance = self._next_task = 0
        self.reset()

    def reset(self) -> None:
        """Seeded state: instance 400 (the third run of 396), tasks 2770 and 2771, no tokens or keys."""
        self.tokens.revoke_all()
        self.idempotency.clear()
        self.instances.clear()
        self.runs.clear()
        self.timelines.clear()
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
            web.get(f"{p}/workflows/workflow_runs/{{run_id}}", self.read_run),
            web.put(f"{p}/workflows/workflow_runs/{{run_id}}/stop", self.stop_run),
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
        instance = self._create_instance(definition.id, self.config.clock())
        timeline, duration = self.timelines[instance["id"]], body.get(ZUORA_DURATION_PARAM)
        timeline.fails = body.get(ZUORA_RESULT_PARAM) == "error"
        if isinstance(duration, int | float) and not isinstance(duration, bool) and duration > 0:
            timeline.duration_s = float(duration)
        return json_response(instance)

    def _run_of(self, request: web.Request) -> tuple[JsonObject, RunTimeline] | web.Response:
        if self.tenant_of(request) is None:
            return json_response(AUTH_ERROR, 401)
        raw_id = request.match_info["run_id"]
        run_id = int(raw_id) if raw_id.isdigit() else -1
        if run_id not in self.instances:
            return json_response(errors(404, "Workflow run not found", "not_found"), 404)
        return self.instances[run_id], self.timelines[run_id]

    def _run_body(self, instance: JsonObject, run: RunTimeline) -> JsonObject:
        status, tasks, finished = run_status(run, self.config.clock())
        finished_at = zuora_time(finished) if finished is not None else None
        return {**instance, "status": status, "tasks": tasks, "finishedAt": finished_at}

    async def read_run(self, request: web.Request) -> web.Response:
        found = self._run_of(request)
        if isinstance(found, web.Response):
            return found
        return json_response(self._run_body(*found))

    async def stop_run(self, request: web.Request) -> web.Response:
        found = self._run_of(request)
        if isinstance(found, web.Response):
            return found
        instance, run = found
        status, _, _ = run_status(run, self.config.clock())
        if status in ("Finished", "Stopped"):
            # (inference) Zuora does not document the answer to stopping a run that has ended.
            return json_response(errors(400, f"The workflow run is already {status}"), 400)
        if run.stop_at is None:
            run.stop_at = self.config.clock()
        return json_response(self._run_body(instance, run))

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
        self.timelines[self._next_instance] = RunTimeline(now, self.config.zuora_run_duration_s)
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
