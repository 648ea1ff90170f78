"""workfloo (Kiban): "Execute a workfloo", on a production-like and a sandbox host.

Routes::

    POST /workfloo/api/v1/workfloo           production host: sandbox mode only with ?sandbox=true
    POST /workfloo-sandbox/api/v1/workfloo   sandbox host: always sandbox mode, the query is ignored
    GET  /workfloo{,-sandbox}/api/v1/workfloo/status/{id}   the execution's status
    POST /workfloo{,-sandbox}/api/v1/workfloo/{id}/form     a human fills in the step it waits on

An execution runs ``workfloo_run_duration_s`` and ends SUCCESS, or as the form field
``sandboxResult`` says (ERROR, ABANDONED). With ``sandboxWaitFor: "FORM"`` (or DOCUMENT, LINK, ...)
it first waits on that human step until ``.../{id}/form`` is posted.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.spec import Emulation, Example, LocalTargets, SandboxSpec
from bridge.sandbox.state import JsonObject, empty_response, json_response, read_json_object

KIND = "workfloo"
WORKFLOO_API_KEY = "sandbox-workfloo-key"
WORKFLOO_DEFINITION_WITH_LINKS = "657117e1d511b6e54fe2a967"
WORKFLOO_DEFINITION_PLAIN = "657117e1d511b6e54fe2a970"
WORKFLOO_DEFINITION_FORBIDDEN = "657117e1d511b6e54fe2a971"
WORKFLOO_SCENARIO = "6571181fd511b6e54fe2a968"
# Sandbox extensions that pick how a started run ends (the real provider decides that itself).
WORKFLOO_RESULT_FIELD = "sandboxResult"  # a form field: "ERROR" or "ABANDONED" (default SUCCESS)
WORKFLOO_WAIT_FIELD = "sandboxWaitFor"  # a form field: "FORM", "DOCUMENT", ... a human step to wait on
LOCAL_TARGET = "workfloo-sandbox"
LOCAL_BAD_KEY_TARGET = "workfloo-wrong-key"
PATH = "/api/v1/workfloo"


@dataclass(frozen=True, kw_only=True, slots=True)
class WorkflooSandboxSettings:
    api_key: str = WORKFLOO_API_KEY
    run_duration_s: float = 2.0
    """How long an execution runs (after its human step, if it waits on one)."""


@dataclass(frozen=True, slots=True)
class WorkflooDefinition:
    id: str
    has_link_connectors: bool
    allowed: bool = True
    """False: the sandbox's API key has no access to it (403)."""


SEEDED_DEFINITIONS = (
    WorkflooDefinition(WORKFLOO_DEFINITION_WITH_LINKS, has_link_connectors=True),
    WorkflooDefinition(WORKFLOO_DEFINITION_PLAIN, has_link_connectors=False),
    WorkflooDefinition(WORKFLOO_DEFINITION_FORBIDDEN, has_link_connectors=False, allowed=False),
)


def required(field: str) -> JsonObject:
    return {"typeError": "REQUIRED_FIELDS", "errors": {field: "required"}, "errorMessage": ""}


def not_found(field: str) -> JsonObject:
    return {"typeError": "ELEMENT_NOT_EXIST_ERROR", "errors": None, "errorMessage": f"{field} not found"}


def api_key_ok(header: str | None, expected: str) -> bool:
    """Pure: the raw key exactly; ``Bearer <key>`` or anything else is refused."""
    return header is not None and hmac.compare_digest(header.encode(), expected.encode())


def execute_error(
    body: JsonObject,
    definitions: dict[str, WorkflooDefinition],
    scenarios: frozenset[str],
    *,
    sandbox: bool,
) -> tuple[int, JsonObject | None] | None:
    """Pure: (status, body or None for an empty body) when the execution is refused, else None."""
    definition_id = body.get("idWorkflooDefinition")
    if not isinstance(definition_id, str) or not definition_id:
        return 400, required("idWorkflooDefinition")
    definition = definitions.get(definition_id)
    if definition is None:
        return 404, not_found("idWorkflooDefinition")
    if not definition.allowed:
        return 403, None
    if not sandbox:
        # (inference) Outside sandbox mode the test scenario plays no part, so it is not checked.
        return None
    scenario = body.get("scenarioId")
    if scenario is None or scenario == "":
        return (400, required("scenarioId")) if definition.has_link_connectors else None
    if not isinstance(scenario, str) or scenario not in scenarios:
        return 404, not_found("scenarioId")
    return None


RESULTS = frozenset({"SUCCESS", "ERROR", "ABANDONED"})


@dataclass(slots=True)
class Execution:
    id: str
    definition_id: str
    scenario_id: str | None
    sandbox: bool
    started_at: float = 0.0
    duration_s: float = 0.0
    result: str = "SUCCESS"
    waits_for: str | None = None
    """The human step it waits on; None once it was filled in (or when there is none)."""


def execution_plan(form: Any) -> tuple[str, str | None]:
    """Pure: (final status, the human step to wait on) from the sandbox fields of the form."""
    fields = form if isinstance(form, dict) else {}
    result, wait = fields.get(WORKFLOO_RESULT_FIELD), fields.get(WORKFLOO_WAIT_FIELD)
    return (
        result if result in RESULTS else "SUCCESS",
        wait.upper() if isinstance(wait, str) and wait else None,
    )


def execution_status(execution: Execution, now: float) -> JsonObject:
    """Pure: the status body. (inference) IN_PROGRESS is the sandbox's word for a running execution."""
    if execution.waits_for is not None:
        return {"id": execution.id, "status": "IN_PROGRESS", "currentNodeType": execution.waits_for}
    if now < execution.started_at + execution.duration_s:
        return {"id": execution.id, "status": "IN_PROGRESS", "currentNodeType": "LINK_PROCESSING"}
    return {"id": execution.id, "status": execution.result, "currentNodeType": "END"}


class WorkflooSandbox:
    def __init__(
        self, config: SandboxConfig, prod_prefix: str = "/workfloo", sandbox_prefix: str = "/workfloo-sandbox"
    ) -> None:
        self.config = config
        self.settings = config.of(KIND, WorkflooSandboxSettings)
        self.prod_prefix = prod_prefix
        self.sandbox_prefix = sandbox_prefix
        self.definitions = {d.id: d for d in SEEDED_DEFINITIONS}
        self.scenarios = frozenset({WORKFLOO_SCENARIO})
        self.executions: dict[str, Execution] = {}

    def reset(self) -> None:
        self.executions.clear()

    def routes(self) -> list[web.RouteDef]:
        reads = [
            route
            for prefix in (self.prod_prefix, self.sandbox_prefix)
            for route in (
                web.get(prefix + PATH + "/status/{id}", self.status),
                web.post(prefix + PATH + "/{id}/form", self.fill_in),
            )
        ]
        return [
            web.post(self.prod_prefix + PATH, self.execute_on_production_host),
            web.post(self.sandbox_prefix + PATH, self.execute_on_sandbox_host),
            *reads,
        ]

    def _execution(self, request: web.Request) -> Execution | web.Response:
        if not api_key_ok(request.headers.get("x-api-key"), self.settings.api_key):
            return empty_response(401)
        execution = self.executions.get(request.match_info["id"])
        return execution if execution is not None else json_response(not_found("id"), 404)

    async def status(self, request: web.Request) -> web.Response:
        found = self._execution(request)
        if isinstance(found, web.Response):
            return found
        return json_response(execution_status(found, self.config.clock()))

    async def fill_in(self, request: web.Request) -> web.Response:
        """The human step is done: the execution runs on from now."""
        found = self._execution(request)
        if isinstance(found, web.Response):
            return found
        if found.waits_for is not None:
            found.waits_for, found.started_at = None, self.config.clock()
        return json_response({"id": found.id})

    async def execute_on_production_host(self, request: web.Request) -> web.Response:
        return await self._execute(request, sandbox=request.query.get("sandbox", "").lower() == "true")

    async def execute_on_sandbox_host(self, request: web.Request) -> web.Response:
        return await self._execute(request, sandbox=True)

    async def _execute(self, request: web.Request, *, sandbox: bool) -> web.Response:
        if not api_key_ok(request.headers.get("x-api-key"), self.settings.api_key):
            return empty_response(401)
        body = await read_json_object(request)
        if body is None:
            # (inference) Kiban documents 400 for an invalid body but not its shape.
            return json_response(
                {"typeError": "INVALID_BODY", "errors": None, "errorMessage": "invalid JSON"}, 400
            )
        error = execute_error(body, self.definitions, self.scenarios, sandbox=sandbox)
        if error is not None:
            status, payload = error
            return empty_response(status) if payload is None else json_response(payload, status)
        scenario = body.get("scenarioId") if sandbox else None
        result, waits_for = execution_plan(body.get("form"))
        execution = Execution(secrets.token_hex(12), body["idWorkflooDefinition"], scenario or None, sandbox)
        execution.started_at, execution.duration_s = self.config.clock(), self.settings.run_duration_s
        execution.result, execution.waits_for = result, waits_for
        self.executions[execution.id] = execution
        return json_response({"id": execution.id})


def _local_targets(url: str) -> dict[str, dict[str, Any]]:
    target = {"provider": KIND, "base_url": f"{url}/workfloo-sandbox"}
    return {
        LOCAL_TARGET: {**target, "api_key": {"env": "SANDBOX_WORKFLOO_API_KEY"}},
        LOCAL_BAD_KEY_TARGET: {**target, "api_key": {"env": "SANDBOX_WORKFLOO_WRONG_KEY"}},
    }


def _examples(cid: Callable[[str], str]) -> list[Example]:
    execute = {"target": LOCAL_TARGET, "operation": "workfloo.execute"}
    data = {**execute, "definition_id": WORKFLOO_DEFINITION_WITH_LINKS, "scenario_id": WORKFLOO_SCENARIO}
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": cid("workfloo-queued"),
        "source": "urn:demo:loans",
    }
    envelope |= {"type": "workflow.command.run", "datacontenttype": "application/json", "data": data}
    unknown = {**execute, "definition_id": "0" * 24, "scenario_id": WORKFLOO_SCENARIO}
    wrong_key = {"target": LOCAL_BAD_KEY_TARGET, "operation": execute["operation"]}
    return [
        (b"loan-1", envelope),
        (b"loan-2", {"id": cid("workfloo-unknown-definition"), **unknown}),
        (
            b"loan-3",
            {"id": cid("workfloo-auth-error"), **wrong_key, "definition_id": WORKFLOO_DEFINITION_PLAIN},
        ),
    ]


SANDBOX = SandboxSpec(
    kind=KIND,
    fault_keys=(KIND,),
    fault_key=lambda path: KIND if path.split("/")[0] in ("workfloo", "workfloo-sandbox") else None,
    emulate=lambda config: Emulation((WorkflooSandbox(config),)),
    local=LocalTargets(
        _local_targets,
        {"SANDBOX_WORKFLOO_API_KEY": WORKFLOO_API_KEY, "SANDBOX_WORKFLOO_WRONG_KEY": "not-the-workfloo-key"},
        _examples,
    ),
)
