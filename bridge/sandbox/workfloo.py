"""workfloo (Kiban): "Execute a workfloo", on a production-like and a sandbox host.

Routes::

    POST /workfloo/api/v1/workfloo           production host: sandbox mode only with ?sandbox=true
    POST /workfloo-sandbox/api/v1/workfloo   sandbox host: always sandbox mode, the query is ignored
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from aiohttp import web

from bridge.sandbox.config import (
    WORKFLOO_DEFINITION_FORBIDDEN,
    WORKFLOO_DEFINITION_PLAIN,
    WORKFLOO_DEFINITION_WITH_LINKS,
    WORKFLOO_SCENARIO,
    SandboxConfig,
)
from bridge.sandbox.state import JsonObject, empty_response, json_response, read_json_object

PATH = "/api/v1/workfloo"


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


@dataclass(frozen=True, slots=True)
class Execution:
    id: str
    definition_id: str
    scenario_id: str | None
    sandbox: bool


class WorkflooSandbox:
    def __init__(
        self, config: SandboxConfig, prod_prefix: str = "/workfloo", sandbox_prefix: str = "/workfloo-sandbox"
    ) -> None:
        self.config = config
        self.prod_prefix = prod_prefix
        self.sandbox_prefix = sandbox_prefix
        self.definitions = {d.id: d for d in SEEDED_DEFINITIONS}
        self.scenarios = frozenset({WORKFLOO_SCENARIO})
        self.executions: dict[str, Execution] = {}

    def reset(self) -> None:
        self.executions.clear()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(self.prod_prefix + PATH, self.execute_on_production_host),
            web.post(self.sandbox_prefix + PATH, self.execute_on_sandbox_host),
        ]

    async def execute_on_production_host(self, request: web.Request) -> web.Response:
        return await self._execute(request, sandbox=request.query.get("sandbox", "").lower() == "true")

    async def execute_on_sandbox_host(self, request: web.Request) -> web.Response:
        return await self._execute(request, sandbox=True)

    async def _execute(self, request: web.Request, *, sandbox: bool) -> web.Response:
        if not api_key_ok(request.headers.get("x-api-key"), self.config.workfloo_api_key):
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
        execution = Execution(secrets.token_hex(12), body["idWorkflooDefinition"], scenario or None, sandbox)
        self.executions[execution.id] = execution
        return json_response({"id": execution.id})
