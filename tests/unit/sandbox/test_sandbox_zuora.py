"""Sandbox: Zuora OAuth, Run, Rerun, headers and the idempotency store, over real loopback HTTP."""

from __future__ import annotations

import asyncio
import re

import pytest

from bridge.sandbox import SandboxConfig, start_sandbox
from bridge.sandbox.config import DAY_S
from bridge.sandbox.state import IdempotencyVerdict, KeyUse, StoredResponse, idempotency_verdict
from bridge.sandbox.zuora_runs import (
    ZUORA_CLIENT_ID,
    ZUORA_CLIENT_SECRET,
    Definition,
    ZuoraSandboxSettings,
    run_error,
    track_id_ok,
)
from tests.fakes import FakeClock

ZUORA_TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC$")
OTHER_TENANT = ("other-zuora-client", "other-zuora-secret")


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000.0)


@pytest.fixture
async def sandbox(clock):
    running = await start_sandbox(
        config=SandboxConfig(
            clock=clock, providers={"zuora": ZuoraSandboxSettings(extra_clients=(OTHER_TENANT,))}
        )
    )
    yield running
    await running.stop()


async def token(
    http, sandbox, client_id=ZUORA_CLIENT_ID, secret=ZUORA_CLIENT_SECRET, grant="client_credentials"
):
    form = {"grant_type": grant, "client_id": client_id, "client_secret": secret}
    async with http.post(f"{sandbox.url}/zuora/oauth/token", data=form) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def auth(http, sandbox):
    return {"Authorization": "Bearer " + (await token(http, sandbox))[1]["access_token"]}


async def post(http, url, headers, json=None):
    async with http.post(url, json=json, headers=headers) as resp:
        return resp.status, await resp.json(), resp.headers


async def run(http, sandbox, workflow_id, headers, json=None):
    return await post(http, f"{sandbox.url}/zuora/workflows/{workflow_id}/run", headers, json)


def error_of(body):
    return body["errors"][0]


async def test_client_credentials_token(http, sandbox):
    status, body = await token(http, sandbox)
    assert status == 200
    assert set(body) == {"access_token", "expires_in", "jti", "scope", "token_type"}
    assert (body["expires_in"], body["token_type"]) == (3599, "bearer")
    assert (await token(http, sandbox, secret="nope")) == (401, {"error": "invalid_client"})
    assert (await token(http, sandbox, client_id="nobody"))[0] == 401
    assert (await token(http, sandbox, grant="password"))[0] == 400


async def test_run_creates_a_queued_instance(http, sandbox, auth):
    status, body, headers = await run(http, sandbox, 396, auth, {"accountId": "A-1"})
    assert status == 200
    assert body["id"] == 401 and body["name"] == "WF-396-00000004"
    assert (body["originalWorkflowId"], body["status"], body["type"]) == (396, "Queued", "Workflow::Instance")
    assert ZUORA_TIME.match(body["createdAt"]) and ZUORA_TIME.match(body["updatedAt"])
    assert headers["Zuora-Request-Id"]
    status, body, _ = await run(http, sandbox, 398, auth)
    assert (status, body["name"]) == (200, "WF-398-00000001")


async def test_run_refusals(http, sandbox, auth):
    status, body, _ = await run(http, sandbox, 397, auth, {})
    assert status == 400
    assert body == {
        "errors": [{"code": "invalid", "status": 400, "title": "Callout not enabled for the workflow"}]
    }
    status, body, _ = await run(http, sandbox, 396, auth, {"paymentId": "p"})
    assert (status, body["parameters"], error_of(body)["status"]) == (406, {"paymentId": "p"}, 406)
    title = "The provided workflow_id references a workflow instance"
    status, body, _ = await run(http, sandbox, 400, auth)
    assert (status, body) == (409, {"errors": [{"code": "invalid", "status": 409, "title": title}]})
    created = (await run(http, sandbox, 398, auth))[1]["id"]
    assert (await run(http, sandbox, created, auth))[0] == 409
    not_found = {"errors": [{"code": "not_found", "status": 404, "title": "Workflow not found"}]}
    for unknown in (999, "abc"):
        status, body, _ = await run(http, sandbox, unknown, auth)
        assert (status, body) == (404, not_found)
    status, body, _ = await run(http, sandbox, 398, auth, {"format": "json"})
    assert status == 400 and "format" in error_of(body)["title"]


async def test_bearer_token_is_required_and_expires(http, sandbox, auth, clock):
    assert (await run(http, sandbox, 398, {}))[0] == 401
    assert (await run(http, sandbox, 398, {"Authorization": "Bearer forged"}))[0] == 401
    assert (await run(http, sandbox, 398, auth))[0] == 200
    clock.now += 3599
    assert (await run(http, sandbox, 398, auth))[0] == 401
    url = f"{sandbox.url}/zuora/workflows/tasks/2770/rerun"
    assert (await post(http, url, auth))[0] == 401


async def test_track_id_is_echoed_and_validated(http, sandbox, auth):
    _, _, headers = await run(http, sandbox, 398, {**auth, "Zuora-Track-Id": "trace-1"})
    assert headers["Zuora-Track-Id"] == "trace-1"
    for bad in ("x" * 65, "a:b", "a;b", 'a"b', "a'b"):
        status, _, headers = await run(http, sandbox, 398, {**auth, "Zuora-Track-Id": bad})
        assert status == 400 and "Zuora-Track-Id" not in headers and headers["Zuora-Request-Id"]


async def test_rerun_returns_a_new_queued_task(http, sandbox, auth):
    for task_id in ("2770", "2771"):
        status, task, _ = await post(http, f"{sandbox.url}/zuora/workflows/tasks/{task_id}/rerun", auth)
        assert status == 200
        assert task["original_task_id"] == int(task_id) and task["id"] > 2771
        assert task["status"] == "Queued" and task["error"] is None
    status, body, _ = await post(http, f"{sandbox.url}/zuora/workflows/tasks/9999/rerun", auth)
    assert status == 404 and error_of(body)["code"] == "not_found"


async def test_same_key_replays_status_and_body_including_failures(http, sandbox, auth):
    keyed = {**auth, "Idempotency-Key": "run-1"}
    first = await run(http, sandbox, 396, keyed, {"accountId": "A"})
    second = await run(http, sandbox, 396, keyed, {"accountId": "A"})
    assert first[:2] == second[:2] and first[0] == 200
    assert len(sandbox.state.emulator("zuora").instances) == 2  # the seeded one and exactly one new run
    failing = {**auth, "Idempotency-Key": "run-2"}
    assert (await run(http, sandbox, 396, failing, {}))[0] == 406
    # Same key, different body: the stored result is replayed (a documented-nowhere rule we chose).
    assert (await run(http, sandbox, 396, failing, {"accountId": "A"}))[0] == 406


async def test_same_key_on_another_url_is_422_and_long_key_is_400(http, sandbox, auth):
    keyed = {**auth, "Idempotency-Key": "k"}
    assert (await run(http, sandbox, 398, keyed))[0] == 200
    status, body, _ = await run(http, sandbox, 396, keyed, {"accountId": "A"})
    assert status == 422 and "Idempotency-Key" in error_of(body)["title"]
    assert (await run(http, sandbox, 398, {**auth, "Idempotency-Key": "k" * 256}))[0] == 400
    assert (await run(http, sandbox, 398, {**auth, "Idempotency-Key": "k" * 255}))[0] == 200


async def test_same_key_in_flight_is_409(http, sandbox, auth):
    async with http.put(f"{sandbox.url}/_sandbox/faults/zuora", json={"latency_ms": 400}) as resp:
        assert resp.status == 200
    keyed = {**auth, "Idempotency-Key": "slow"}
    first = asyncio.create_task(run(http, sandbox, 398, keyed))
    await asyncio.sleep(0.15)
    status, body, _ = await run(http, sandbox, 398, keyed)
    assert status == 409
    assert "Idempotency" in error_of(body)["title"] and error_of(body)["code"] == "conflict"
    assert (await first)[0] == 200
    assert (await run(http, sandbox, 398, keyed))[:2] == (await first)[:2]


async def test_keys_are_per_tenant_and_expire_after_a_day(http, sandbox, auth, clock):
    keyed = {**auth, "Idempotency-Key": "shared"}
    first = (await run(http, sandbox, 398, keyed))[1]["id"]
    other = "Bearer " + (await token(http, sandbox, *OTHER_TENANT))[1]["access_token"]
    assert (await run(http, sandbox, 398, {"Authorization": other, "Idempotency-Key": "shared"}))[1][
        "id"
    ] != first
    clock.now += DAY_S
    fresh = {
        "Authorization": "Bearer " + (await token(http, sandbox))[1]["access_token"],
        "Idempotency-Key": "shared",
    }
    assert (await run(http, sandbox, 398, fresh))[1]["id"] not in (first, first + 1)


def test_idempotency_verdict_table():
    done = KeyUse("POST", "/run", 0.0, StoredResponse(200, (), b"{}"))
    running = KeyUse("POST", "/run", 0.0)
    assert idempotency_verdict(None, "POST", "/run", 1.0, 10.0) is IdempotencyVerdict.PROCEED
    assert idempotency_verdict(done, "POST", "/run", 1.0, 10.0) is IdempotencyVerdict.REPLAY
    assert idempotency_verdict(running, "POST", "/run", 1.0, 10.0) is IdempotencyVerdict.IN_FLIGHT
    assert idempotency_verdict(done, "POST", "/other", 1.0, 10.0) is IdempotencyVerdict.MISMATCH
    assert idempotency_verdict(done, "PATCH", "/run", 1.0, 10.0) is IdempotencyVerdict.MISMATCH
    assert idempotency_verdict(done, "PATCH", "/other", 10.0, 10.0) is IdempotencyVerdict.PROCEED


def test_track_id_rule():
    assert track_id_ok("a" * 64) and not track_id_ok("a" * 65)
    assert not track_id_ok("é") and not track_id_ok("a\nb")


def test_run_error_precedence():
    required = Definition(1, True, ("accountId",))
    assert run_error(required, {"accountId": "x"}) is None
    assert run_error(Definition(2, False, ("accountId",)), {})[0] == 400
    assert run_error(required, {"id": 1})[0] == 400
    assert run_error(required, {})[0] == 406


async def test_revoked_tokens_are_refused(http, sandbox, auth):
    async with http.delete(f"{sandbox.url}/_sandbox/tokens") as resp:
        assert resp.status == 200
    assert (await run(http, sandbox, 398, auth))[0] == 401


async def test_injected_faults_still_carry_zuora_headers(http, sandbox, auth):
    async with http.put(f"{sandbox.url}/_sandbox/faults/zuora", json={"fail_next": {"count": 1}}):
        pass
    status, _, headers = await run(http, sandbox, 398, {**auth, "Zuora-Track-Id": "t-1"})
    assert (status, headers["Zuora-Track-Id"]) == (500, "t-1") and headers["Zuora-Request-Id"]
    # An injected failure is not the provider's answer, so it is not stored under a key either.
    async with http.put(f"{sandbox.url}/_sandbox/faults/zuora", json={"fail_next": {"count": 1}}):
        pass
    keyed = {**auth, "Idempotency-Key": "after-fault"}
    assert (await run(http, sandbox, 398, keyed))[0] == 500
    assert (await run(http, sandbox, 398, keyed))[0] == 200
