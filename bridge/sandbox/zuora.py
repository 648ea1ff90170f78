"""Zuora workflows: OAuth client credentials, Run a workflow, Rerun a task, and idempotent replay.

Routes (under the ``/zuora`` prefix)::

    POST /zuora/oauth/token
    POST /zuora/workflows/{workflow_id}/run
    POST /zuora/workflows/tasks/{task_id}/rerun
    GET  /zuora/workflows/workflow_runs/{run_id}        the run: Queued, Processing, Finished, ...
    PUT  /zuora/workflows/workflow_runs/{run_id}/stop   Stopping, then Stopped

A run is Queued for the first tenth of ``ZuoraSandboxSettings.run_duration_s``, Processing until it ends, then
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
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.spec import Emulation, Example, LocalTargets, SandboxSpec
from bridge.sandbox.state import (
    IdempotencyStore,
    JsonObject,
    TokenStore,
    bearer,
    iso_millis,
    json_response,
    read_json_object,
)
from bridge.sandbox.zuora_runs import (
    AUTH_ERROR,
    IDEMPOTENCY_REFUSALS,
    KIND,
    ZUORA_CLIENT_ID,
    ZUORA_CLIENT_SECRET,
    ZUORA_DEFINITION_REQUIRES_ACCOUNT,
    ZUORA_DURATION_PARAM,
    ZUORA_RESULT_PARAM,
    ZUORA_SEEDED_INSTANCE,
    ZUORA_TASK_ERROR,
    RunTimeline,
    ZuoraSandboxSettings,
    errors,
    run_error,
    run_status,
    seeded_definitions,
    track_id_ok,
    zuora_seeded_tasks,
    zuora_time,
)

LOCAL_TARGET = "zuora-sandbox"


class ZuoraSandbox:
    def __init__(self, config: SandboxConfig, prefix: str = "/zuora") -> None:
        self.config = config
        self.settings = config.of(KIND, ZuoraSandboxSettings)
        self.prefix = prefix
        self.tokens = TokenStore(config.clock)
        self.idempotency = IdempotencyStore(config.clock, self.settings.idempotency_ttl_s)
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
        clients = self.settings.clients()
        if client_id not in clients or not hmac.compare_digest(clients[client_id], secret):
            return json_response({"error": "invalid_client"}, 401)
        issued = self.tokens.issue(client_id, self.settings.token_ttl_s)
        tenant_no = 10000 + list(clients).index(client_id)
        scope = f"user.{uuid.uuid4().hex} entity.{uuid.uuid4()} service.workflow.write tenant.{tenant_no}"
        body = {"access_token": issued.value, "expires_in": self.settings.token_ttl_s}
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
        self.timelines[self._next_instance] = RunTimeline(now, self.settings.run_duration_s)
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


def _examples(cid: Callable[[str], str]) -> list[Example]:
    zuora = {"target": LOCAL_TARGET}
    run = {**zuora, "operation": "zuora.run_workflow", "workflow_id": ZUORA_DEFINITION_REQUIRES_ACCOUNT}
    account = {"accountId": "4028905f5a87c0ff015a87d25ae90025"}
    return [
        (
            b"acct-1",
            {"id": cid("zuora-queued"), **run, "parameters": account, "zuora": {"track_id": "demo-run-1"}},
        ),
        # the sandbox ends this run Finished with a task in error: its lifecycle ends failed
        (
            b"acct-4",
            {"id": cid("zuora-run-fails"), **run, "parameters": {**account, ZUORA_RESULT_PARAM: "error"}},
        ),
        (b"acct-2", {"id": cid("zuora-missing-param"), **run, "parameters": {}}),
        (
            b"acct-3",
            {"id": cid("zuora-reserved-word"), **run, "parameters": {"accountId": "x", "format": "json"}},
        ),
        (
            b"task-2770",
            {"id": cid("zuora-rerun"), **zuora, "operation": "zuora.rerun_task", "task_id": ZUORA_TASK_ERROR},
        ),
        # run 400 of the sandbox finished long ago: a stop is refused
        (
            b"acct-0",
            {
                "id": cid("zuora-stop-finished"),
                **zuora,
                "operation": "zuora.stop_run",
                "run_id": ZUORA_SEEDED_INSTANCE,
            },
        ),
    ]


def _local_targets(url: str) -> dict[str, dict[str, Any]]:
    credentials = {
        "client_id": {"env": "SANDBOX_ZUORA_CLIENT_ID"},
        "client_secret": {"env": "SANDBOX_ZUORA_CLIENT_SECRET"},
    }
    return {LOCAL_TARGET: {"provider": KIND, "base_url": f"{url}/zuora", **credentials}}


def _emulate(config: SandboxConfig) -> Emulation:
    zuora = ZuoraSandbox(config)
    return Emulation(
        (zuora,), (zuora.header_middleware,), (zuora.idempotency_middleware,), (zuora.tokens.revoke_all,)
    )


def _fault_key(path: str) -> str | None:
    first, _, rest = path.partition("/")
    return None if first != KIND else "zuora-token" if rest.startswith("oauth/") else KIND


SANDBOX = SandboxSpec(
    kind=KIND,
    fault_keys=(KIND, "zuora-token"),
    fault_key=_fault_key,
    emulate=_emulate,
    local=LocalTargets(
        _local_targets,
        {"SANDBOX_ZUORA_CLIENT_ID": ZUORA_CLIENT_ID, "SANDBOX_ZUORA_CLIENT_SECRET": ZUORA_CLIENT_SECRET},
        _examples,
    ),
)
