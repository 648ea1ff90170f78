"""Sandbox runs that move through their states over time, read with the bridge's own status
builders and classifiers over real loopback HTTP (the sandbox clock is moved by hand)."""

from __future__ import annotations

import orjson
import pytest

from bridge.providers import eightbyeight, workfloo, zilliant, zuora
from bridge.providers.base import HttpRequest
from bridge.providers.readings import ReadFailure, ReadProblem, RunReading, RunState
from bridge.sandbox import SandboxConfig, start_sandbox
from bridge.sandbox.eightbyeight import (
    EIGHTBYEIGHT_ACCOUNT,
    EIGHTBYEIGHT_API_KEY,
    EIGHTBYEIGHT_DEFINITION,
    EightByEightSandboxSettings,
)
from bridge.sandbox.workfloo import WORKFLOO_API_KEY, WORKFLOO_DEFINITION_PLAIN, WorkflooSandboxSettings
from bridge.sandbox.zilliant import Job
from bridge.sandbox.zuora_runs import (
    ZUORA_CLIENT_ID,
    ZUORA_CLIENT_SECRET,
    ZUORA_DEFINITION_NO_PARAMS,
    RunTimeline,
    ZuoraSandboxSettings,
    run_status,
)
from tests.fakes import FakeClock

WORKFLOO = {"x-api-key": WORKFLOO_API_KEY}
EIGHT = {"Authorization": "Bearer " + EIGHTBYEIGHT_API_KEY}


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000.0)


@pytest.fixture
async def sandbox(clock):
    config = SandboxConfig(
        clock=clock,
        providers={
            "zuora": ZuoraSandboxSettings(run_duration_s=10),
            "workfloo": WorkflooSandboxSettings(run_duration_s=10),
            "8x8": EightByEightSandboxSettings(run_duration_s=10),
        },
    )
    running = await start_sandbox(config=config)
    yield running
    await running.stop()


async def read(http, sandbox, prefix: str, request: HttpRequest, headers) -> tuple[int, dict, bytes]:
    url = f"{sandbox.url}{prefix}{request.path}"
    async with http.request(request.method, url, params=dict(request.query), headers=headers) as resp:
        return resp.status, dict(resp.headers), await resp.read()


async def zuora_auth(http, sandbox):
    form = {
        "grant_type": "client_credentials",
        "client_id": ZUORA_CLIENT_ID,
        "client_secret": ZUORA_CLIENT_SECRET,
    }
    async with http.post(f"{sandbox.url}/zuora/oauth/token", data=form) as resp:
        return {"Authorization": "Bearer " + (await resp.json())["access_token"]}


async def zuora_run(http, sandbox, auth, params) -> str:
    url = f"{sandbox.url}/zuora/workflows/{ZUORA_DEFINITION_NO_PARAMS}/run"
    async with http.post(url, json=params, headers=auth) as resp:
        assert resp.status == 200
        return str((await resp.json())["id"])


def test_run_timeline_is_pure():
    run = RunTimeline(created_at=100.0, duration_s=10.0)
    assert [run_status(run, t)[0] for t in (100.0, 101.5, 109.9, 110.0)] == [
        "Queued",
        "Processing",
        "Processing",
        "Finished",
    ]
    run.stop_at = 105.0
    assert run_status(run, 105.1)[0] == "Stopping"
    assert run_status(run, 106.0)[:2] == ("Stopped", run_status(run, 106.0)[1])
    assert run_status(run, 106.0)[2] == 105.5


@pytest.mark.parametrize(
    ("params", "final"), [({}, RunState.COMPLETED), ({"SANDBOX_RESULT": "error"}, RunState.FAILED)]
)
async def test_zuora_run_queued_processing_finished(http, sandbox, clock, params, final):
    auth = await zuora_auth(http, sandbox)
    run_id = await zuora_run(http, sandbox, auth, params)
    states = []
    for _ in range(3):
        status, headers, body = await read(
            http, sandbox, "/zuora", zuora.build_status_request({"run_id": run_id}), auth
        )
        reading = zuora.classify_status(status, headers, body)
        assert isinstance(reading, RunReading)
        states.append((reading.state, reading.raw))
        clock.now += 5
    assert states == [(RunState.RUNNING, "Queued"), (RunState.RUNNING, "Processing"), (final, "Finished")]


async def test_zuora_stop_then_stopped_and_stop_after_the_end_is_refused(http, sandbox, clock):
    auth = await zuora_auth(http, sandbox)
    run_id = await zuora_run(http, sandbox, auth, {})
    stop = zuora.build_request(
        zuora.ZuoraStopRun(id="s", target="z", operation="zuora.stop_run", run_id=int(run_id))
    )
    status, _, body = await read(http, sandbox, "/zuora", stop, auth)
    assert status == 200 and b'"Stopping"' in body
    clock.now += 1
    status, headers, body = await read(
        http, sandbox, "/zuora", zuora.build_status_request({"run_id": run_id}), auth
    )
    assert zuora.classify_status(status, headers, body) == RunReading(RunState.STOPPED, "Stopped")
    status, _, _ = await read(http, sandbox, "/zuora", stop, auth)
    assert status == 400
    status, _, _ = await read(http, sandbox, "/zuora", zuora.build_status_request({"run_id": "999999"}), auth)
    assert status == 404


async def test_workfloo_waits_on_a_form_until_it_is_filled_in(http, sandbox, clock):
    body = {"idWorkflooDefinition": WORKFLOO_DEFINITION_PLAIN, "form": {"sandboxWaitFor": "FORM"}}
    async with http.post(f"{sandbox.url}/workfloo/api/v1/workfloo", json=body, headers=WORKFLOO) as resp:
        execution = (await resp.json())["id"]
    request = workfloo.build_status_request({"execution_id": execution})
    clock.now += 3600
    reading = workfloo.classify_status(*await read(http, sandbox, "/workfloo", request, WORKFLOO))
    assert reading == RunReading(RunState.WAITING, "IN_PROGRESS", waiting_for="form")
    async with http.post(
        f"{sandbox.url}/workfloo/api/v1/workfloo/{execution}/form", json={}, headers=WORKFLOO
    ) as resp:
        assert resp.status == 200
    reading = workfloo.classify_status(*await read(http, sandbox, "/workfloo", request, WORKFLOO))
    assert isinstance(reading, RunReading) and reading.state is RunState.RUNNING
    clock.now += 10
    reading = workfloo.classify_status(*await read(http, sandbox, "/workfloo", request, WORKFLOO))
    assert isinstance(reading, RunReading) and reading.state is RunState.COMPLETED


@pytest.mark.parametrize(("result", "state"), [("ERROR", RunState.FAILED), ("ABANDONED", RunState.STOPPED)])
async def test_workfloo_failures(http, sandbox, clock, result, state):
    body = {"idWorkflooDefinition": WORKFLOO_DEFINITION_PLAIN, "form": {"sandboxResult": result}}
    async with http.post(f"{sandbox.url}/workfloo/api/v1/workfloo", json=body, headers=WORKFLOO) as resp:
        execution = (await resp.json())["id"]
    clock.now += 10
    request = workfloo.build_status_request({"execution_id": execution})
    reading = workfloo.classify_status(*await read(http, sandbox, "/workfloo", request, WORKFLOO))
    assert isinstance(reading, RunReading) and (reading.state, reading.raw) == (state, result)


@pytest.mark.parametrize(
    ("payload", "state"), [({}, RunState.COMPLETED), ({"sandboxFault": True}, RunState.FAILED)]
)
async def test_eightbyeight_instances_end_on_their_own(http, sandbox, clock, payload, state):
    base = f"{sandbox.url}/8x8/api/v1/accounts/{EIGHTBYEIGHT_ACCOUNT}/definitions/{EIGHTBYEIGHT_DEFINITION}"
    base += "/workflows"
    async with http.post(base, json=payload, headers=EIGHT) as resp:
        instance = (await resp.json())["workflowId"]
    ref = {
        "account_id": EIGHTBYEIGHT_ACCOUNT,
        "definition_id": EIGHTBYEIGHT_DEFINITION,
        "instance_id": instance,
    }
    request = eightbyeight.build_instance_read(ref)
    reading = eightbyeight.classify_status(
        *await read(http, sandbox, "/8x8", request, EIGHT), action="resume"
    )
    assert isinstance(reading, RunReading) and reading.state is RunState.RUNNING
    clock.now += 10
    reading = eightbyeight.classify_status(
        *await read(http, sandbox, "/8x8", request, EIGHT), action="resume"
    )
    assert isinstance(reading, RunReading) and reading.state is state


def test_zilliant_job_closes_with_the_asked_status():
    job = Job("j-1", None, 100.0, 100.0, 102.0, "CANCELED", {})
    running = zilliant.classify_status(200, {}, orjson.dumps(job.status(101.0)))
    assert isinstance(running, RunReading) and running.state is RunState.RUNNING
    closed = zilliant.classify_status(200, {}, orjson.dumps(job.status(102.0)))
    assert isinstance(closed, RunReading) and (closed.state, closed.raw) == (RunState.FAILED, "CANCELED")


async def test_status_reads_can_be_faulted_alone(http, sandbox):
    spec = {"fail_next": {"count": 1, "status": 503}, "methods": ["GET"]}
    async with http.put(f"{sandbox.url}/_sandbox/faults/workfloo", json=spec) as resp:
        assert resp.status == 200
    body = {"idWorkflooDefinition": WORKFLOO_DEFINITION_PLAIN}
    async with http.post(f"{sandbox.url}/workfloo/api/v1/workfloo", json=body, headers=WORKFLOO) as resp:
        assert resp.status == 200  # the POST is not faulted
        execution = (await resp.json())["id"]
    request = workfloo.build_status_request({"execution_id": execution})
    first = workfloo.classify_status(*await read(http, sandbox, "/workfloo", request, WORKFLOO))
    assert first == ReadFailure(ReadProblem.PROVIDER_ERROR)
    second = workfloo.classify_status(*await read(http, sandbox, "/workfloo", request, WORKFLOO))
    assert isinstance(second, RunReading)


@pytest.mark.parametrize(
    ("given", "finished_after_s"), [(3, 3.0), (2.5, 2.5), (0, 10.0), ("3", 10.0), (True, 10.0)]
)
async def test_a_zuora_run_parameter_sets_that_runs_duration(http, sandbox, clock, given, finished_after_s):
    auth = await zuora_auth(http, sandbox)
    run_id = await zuora_run(http, sandbox, auth, {"SANDBOX_DURATION_S": given})
    timeline = sandbox.state.emulator("zuora").timelines[int(run_id)]
    assert run_status(timeline, clock.now + 1e9)[2] == pytest.approx(clock.now + finished_after_s)
    clock.now += finished_after_s - 0.01
    request = zuora.build_status_request({"run_id": run_id})
    assert orjson.loads((await read(http, sandbox, "/zuora", request, auth))[2])["status"] == "Processing"
    clock.now += 0.02
    assert orjson.loads((await read(http, sandbox, "/zuora", request, auth))[2])["status"] == "Finished"
