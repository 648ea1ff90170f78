"""Sandbox: 8x8 Automation instances, their state machine and the 8x8 error schema."""

from __future__ import annotations

import re
import uuid

import pytest

from bridge.sandbox.eightbyeight import (
    EIGHTBYEIGHT_ACCOUNT,
    EIGHTBYEIGHT_API_KEY,
    EIGHTBYEIGHT_COMPLETE,
    EIGHTBYEIGHT_DEFINITION,
    EIGHTBYEIGHT_RUNNABLE,
    EIGHTBYEIGHT_SUSPENDED,
    EIGHTBYEIGHT_TERMINATED,
    InstanceStatus,
    Refusal,
    StatusCommand,
    error_timestamp,
    transition,
)

AUTH = {"Authorization": "Bearer " + EIGHTBYEIGHT_API_KEY}
BASE = f"/8x8/api/v1/accounts/{EIGHTBYEIGHT_ACCOUNT}/definitions/{EIGHTBYEIGHT_DEFINITION}/workflows"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{2}Z$")
SEEDS = {
    "Runnable": EIGHTBYEIGHT_RUNNABLE,
    "Suspended": EIGHTBYEIGHT_SUSPENDED,
    "Complete": EIGHTBYEIGHT_COMPLETE,
    "Terminated": EIGHTBYEIGHT_TERMINATED,
}
# (from, command) -> status after, or None for a 400 refusal that leaves the instance alone.
TABLE = {
    ("Runnable", "suspend"): "Suspended",
    ("Runnable", "resume"): None,
    ("Runnable", "terminate"): "Terminated",
    ("Suspended", "suspend"): None,
    ("Suspended", "resume"): "Runnable",
    ("Suspended", "terminate"): "Terminated",
    **{
        (state, cmd): None
        for state in ("Complete", "Terminated")
        for cmd in ("suspend", "resume", "terminate")
    },
}


async def call(http, method, url, headers=AUTH, json=None):
    async with http.request(method, url, headers=headers, json=json) as resp:
        raw = await resp.read()
        return resp.status, (await resp.json() if raw else raw), resp.headers


def assert_error(body, code, message=None):
    assert set(body) == {"code", "message", "errorId", "timestamp"}
    assert body["code"] == code
    assert uuid.UUID(body["errorId"])
    assert TIMESTAMP.match(body["timestamp"])
    if message is not None:
        assert body["message"] == message


@pytest.mark.parametrize(("start", "command"), list(TABLE))
async def test_state_machine(http, sandbox, start, command):
    url = f"{sandbox.url}{BASE}/{SEEDS[start]}"
    status, body, _ = await call(http, "PATCH", url, json={"status": command})
    expected = TABLE[(start, command)]
    if expected is None:
        assert status == 400
        assert_error(body, 1000)
    else:
        assert (status, body) == (200, b"")
    status, instance, _ = await call(http, "GET", url)
    assert (status, instance["status"]) == (200, expected or start)


async def test_start_read_and_steer_a_new_instance(http, sandbox):
    status, body, headers = await call(http, "POST", sandbox.url + BASE, json={"namespace": "Test"})
    assert status == 201
    location = headers["Location"]
    assert location == f"{BASE}/{body['workflowId']}"
    status, instance, _ = await call(http, "GET", sandbox.url + location)
    assert status == 200
    assert set(instance) == {
        "workflowId",
        "data",
        "definitionId",
        "version",
        "status",
        "startedAt",
        "completedAt",
    }
    assert (instance["status"], instance["completedAt"], instance["version"]) == ("Runnable", None, 1)
    assert instance["data"]["accountId"] == EIGHTBYEIGHT_ACCOUNT and instance["data"]["namespace"] == "Test"
    assert (await call(http, "PATCH", sandbox.url + location, json={"status": "suspend"}))[0] == 200
    assert (await call(http, "GET", sandbox.url + location))[1]["status"] == "Suspended"


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"x-api-key": EIGHTBYEIGHT_API_KEY},
        {"Authorization": EIGHTBYEIGHT_API_KEY},
    ],
)
async def test_bad_credentials_are_401_code_1200(http, sandbox, headers):
    status, body, _ = await call(
        http, "PATCH", f"{sandbox.url}{BASE}/{EIGHTBYEIGHT_RUNNABLE}", headers, {"status": "x"}
    )
    assert status == 401
    assert_error(body, 1200)


async def test_path_errors(http, sandbox):
    def url(account=EIGHTBYEIGHT_ACCOUNT, definition=EIGHTBYEIGHT_DEFINITION, workflow=EIGHTBYEIGHT_RUNNABLE):
        return f"{sandbox.url}/8x8/api/v1/accounts/{account}/definitions/{definition}/workflows/{workflow}"

    suspend = {"status": "suspend"}
    status, body, _ = await call(http, "PATCH", url(account="nobody"), json=suspend)
    assert status == 404 and body["code"] == 1300
    status, body, _ = await call(http, "PATCH", url(definition="not-a-uuid"), json=suspend)
    assert status == 400
    assert_error(body, 1000, "Invalid definition id.")
    other = str(uuid.uuid4())
    status, body, _ = await call(http, "PATCH", url(definition=other), json=suspend)
    assert status == 404
    assert_error(body, 1300, f"Definition {other} not found.")
    status, body, _ = await call(http, "PATCH", url(workflow="f" * 24), json=suspend)
    assert status == 404
    assert_error(body, 1300, f"Workflow {'f' * 24} not found.")
    assert (await call(http, "GET", url(workflow="f" * 24)))[0] == 404
    status, body, _ = await call(http, "POST", sandbox.url + BASE.replace(EIGHTBYEIGHT_DEFINITION, other))
    assert status == 404


async def test_start_refuses_a_bad_version_or_body(http, sandbox):
    async with http.post(sandbox.url + BASE, params={"version": "0"}, headers=AUTH) as resp:
        assert resp.status == 400
        assert_error(await resp.json(), 1000)
    async with http.post(sandbox.url + BASE, data=b"{oops", headers=AUTH) as resp:
        assert resp.status == 400


@pytest.mark.parametrize("body", [{"status": "pause"}, {"status": None}, {}, ["suspend"], None])
async def test_bad_status_value_is_400_code_1000(http, sandbox, body):
    status, error, _ = await call(http, "PATCH", f"{sandbox.url}{BASE}/{EIGHTBYEIGHT_RUNNABLE}", json=body)
    assert status == 400
    assert_error(error, 1000)


@pytest.mark.parametrize(("start", "command"), list(TABLE))
def test_transition_table(start, command):
    outcome = transition(InstanceStatus(start), StatusCommand(command))
    expected = TABLE[(start, command)]
    if expected is None:
        assert isinstance(outcome, Refusal) and outcome.message
    else:
        assert outcome is InstanceStatus(expected)


def test_error_timestamp_has_hundredths():
    assert error_timestamp(1626139717.661) == "2021-07-13T01:28:37.66Z"
