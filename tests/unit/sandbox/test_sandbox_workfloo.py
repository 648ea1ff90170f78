"""Sandbox: workfloo "Execute a workfloo" on the production-like and sandbox hosts."""

from __future__ import annotations

import re

import pytest

from bridge.sandbox.workfloo import (
    SEEDED_DEFINITIONS,
    WORKFLOO_API_KEY,
    WORKFLOO_DEFINITION_FORBIDDEN,
    WORKFLOO_DEFINITION_PLAIN,
    WORKFLOO_DEFINITION_WITH_LINKS,
    WORKFLOO_SCENARIO,
    api_key_ok,
    execute_error,
)

KEY = {"x-api-key": WORKFLOO_API_KEY}
PROD = "/workfloo/api/v1/workfloo"
SANDBOX = "/workfloo-sandbox/api/v1/workfloo"
SCENARIO_REQUIRED = {"typeError": "REQUIRED_FIELDS", "errors": {"scenarioId": "required"}, "errorMessage": ""}


async def execute(http, sandbox, path, body, headers=KEY, params=None):
    async with http.post(sandbox.url + path, json=body, headers=headers, params=params) as resp:
        raw = await resp.read()
        return resp.status, (await resp.json() if raw else raw)


async def test_production_host_executes_without_a_scenario(http, sandbox):
    status, body = await execute(
        http, sandbox, PROD, {"idWorkflooDefinition": WORKFLOO_DEFINITION_WITH_LINKS}
    )
    assert status == 200
    assert re.fullmatch(r"[0-9a-f]{24}", body["id"])
    assert sandbox.state.emulator("workfloo").executions[body["id"]].sandbox is False


@pytest.mark.parametrize(
    "headers",
    [{}, {"x-api-key": "wrong"}, {"x-api-key": "Bearer " + WORKFLOO_API_KEY}, {"Authorization": "x"}],
)
async def test_bad_api_key_is_401_with_an_empty_body(http, sandbox, headers):
    body = {"idWorkflooDefinition": WORKFLOO_DEFINITION_PLAIN}
    assert await execute(http, sandbox, PROD, body, headers) == (401, b"")


async def test_missing_definition_is_400_required_fields(http, sandbox):
    expected = {
        "typeError": "REQUIRED_FIELDS",
        "errors": {"idWorkflooDefinition": "required"},
        "errorMessage": "",
    }
    assert await execute(http, sandbox, PROD, {"scenarioId": WORKFLOO_SCENARIO}) == (400, expected)


async def test_unknown_definition_is_404_and_forbidden_one_is_403(http, sandbox):
    status, body = await execute(http, sandbox, PROD, {"idWorkflooDefinition": "0" * 24})
    assert (status, body) == (
        404,
        {
            "typeError": "ELEMENT_NOT_EXIST_ERROR",
            "errors": None,
            "errorMessage": "idWorkflooDefinition not found",
        },
    )
    assert await execute(http, sandbox, PROD, {"idWorkflooDefinition": WORKFLOO_DEFINITION_FORBIDDEN}) == (
        403,
        b"",
    )


@pytest.mark.parametrize(
    ("path", "params"),
    [(SANDBOX, None), (PROD, {"sandbox": "true"}), (SANDBOX, {"sandbox": "false"})],
)
async def test_sandbox_mode_requires_a_scenario_for_link_definitions(http, sandbox, path, params):
    links = {"idWorkflooDefinition": WORKFLOO_DEFINITION_WITH_LINKS}
    assert await execute(http, sandbox, path, links, params=params) == (400, SCENARIO_REQUIRED)
    status, body = await execute(
        http, sandbox, path, {**links, "scenarioId": WORKFLOO_SCENARIO}, params=params
    )
    assert status == 200 and sandbox.state.emulator("workfloo").executions[body["id"]].sandbox is True
    status, body = await execute(http, sandbox, path, {**links, "scenarioId": "f" * 24}, params=params)
    assert (status, body) == (
        404,
        {"typeError": "ELEMENT_NOT_EXIST_ERROR", "errors": None, "errorMessage": "scenarioId not found"},
    )
    plain = {"idWorkflooDefinition": WORKFLOO_DEFINITION_PLAIN}
    assert (await execute(http, sandbox, path, plain, params=params))[0] == 200


async def test_body_that_is_not_json_is_400(http, sandbox):
    async with http.post(sandbox.url + PROD, data=b"{oops", headers=KEY) as resp:
        assert resp.status == 400


def test_execute_error_table():
    defs = {d.id: d for d in SEEDED_DEFINITIONS}
    scenarios = frozenset({WORKFLOO_SCENARIO})
    links = {"idWorkflooDefinition": WORKFLOO_DEFINITION_WITH_LINKS}
    assert execute_error({}, defs, scenarios, sandbox=False)[0] == 400
    assert execute_error({"idWorkflooDefinition": 5}, defs, scenarios, sandbox=False)[0] == 400
    assert execute_error(links, defs, scenarios, sandbox=False) is None
    assert execute_error(links, defs, scenarios, sandbox=True)[0] == 400
    assert execute_error({**links, "scenarioId": WORKFLOO_SCENARIO}, defs, scenarios, sandbox=True) is None
    forbidden = {"idWorkflooDefinition": WORKFLOO_DEFINITION_FORBIDDEN}
    assert execute_error(forbidden, defs, scenarios, sandbox=True) == (403, None)


def test_api_key_must_be_exact():
    assert api_key_ok("k", "k")
    assert not api_key_ok(None, "k") and not api_key_ok("Bearer k", "k") and not api_key_ok("k ", "k")
