"""Sandbox: Salesforce password grant and Zilliant job workflows, over real loopback HTTP."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid

import orjson
import pytest

from bridge.sandbox import SandboxConfig, start_sandbox
from bridge.sandbox.zilliant import (
    SALESFORCE_CLIENT_ID,
    SALESFORCE_CLIENT_SECRET,
    SALESFORCE_PASSWORD,
    SALESFORCE_USERNAME,
    ZILLIANT_FORWARDED_HOST,
    Job,
    ZilliantSandboxSettings,
    decode_oauth_header,
    encode_oauth_header,
    schedule_start,
)
from tests.fakes import FakeClock

CREDENTIALS = {
    "grant_type": "password",
    "username": SALESFORCE_USERNAME,
    "password": SALESFORCE_PASSWORD,
    "client_id": SALESFORCE_CLIENT_ID,
    "client_secret": SALESFORCE_CLIENT_SECRET,
}
JOB = {
    "descriptor": "PLATFORM_CUSTOM_WORKFLOW",
    "parameters": {"WORKFLOW_AUTOMATION_ID": "PublishListPrices"},
}


@pytest.fixture
def clock():
    return FakeClock(1_700_000_000.0)


@pytest.fixture
async def sandbox(clock):
    running = await start_sandbox(
        config=SandboxConfig(
            clock=clock, providers={"zilliant": ZilliantSandboxSettings(job_duration_s=10.0)}
        )
    )
    yield running
    await running.stop()


async def get_token(http, sandbox, **overrides):
    form = {**CREDENTIALS, **overrides}
    async with http.post(f"{sandbox.url}/salesforce/services/oauth2/token", data=form) as resp:
        return resp.status, await resp.json()


@pytest.fixture
async def headers(http, sandbox):
    _, token = await get_token(http, sandbox)
    return {"Authorization": encode_oauth_header(token), "X-Forwarded-Host": ZILLIANT_FORWARDED_HOST}


async def submit(http, sandbox, headers, body=JOB):
    url = f"{sandbox.url}/zilliant/v1/JobWorkflow/Authorized"
    async with http.post(url, data=orjson.dumps(body), headers=headers) as resp:
        return resp.status, await resp.json()


async def job_status(http, sandbox, headers, job_id):
    url = f"{sandbox.url}/zilliant/v1/JobWorkflow/Authorized/{job_id}/Status"
    async with http.get(url, headers=headers) as resp:
        return resp.status, await resp.json()


async def test_password_grant_returns_a_full_token_without_expiry(http, sandbox):
    status, token = await get_token(http, sandbox)
    assert status == 200
    assert set(token) == {"access_token", "instance_url", "id", "token_type", "issued_at", "signature"}
    assert token["token_type"] == "Bearer"
    assert token["issued_at"].isdigit() and len(token["issued_at"]) == 13
    mac = hmac.new(
        SALESFORCE_CLIENT_SECRET.encode(), (token["id"] + token["issued_at"]).encode(), hashlib.sha256
    )
    assert token["signature"] == base64.b64encode(mac.digest()).decode()


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"password": "wrong"}, "invalid_grant"),
        ({"client_secret": "wrong"}, "invalid_grant"),
        ({"grant_type": "client_credentials"}, "unsupported_grant_type"),
    ],
)
async def test_password_grant_refusals(http, sandbox, override, error):
    status, body = await get_token(http, sandbox, **override)
    assert status == 400
    assert body["error"] == error
    if error == "invalid_grant":
        assert body == {"error": "invalid_grant", "error_description": "authentication failure"}


async def test_job_is_accepted_with_202_and_moves_from_open_to_closed(http, sandbox, headers, clock):
    status, body = await submit(http, sandbox, headers)
    assert status == 202
    job_id = body["jobId"]
    assert uuid.UUID(job_id).version == 4
    status, state = await job_status(http, sandbox, headers, job_id)
    assert status == 200
    assert state["executionStatus"] == "OPEN"
    assert state["closeStatus"] is None and state["closeTimeStamp"] is None
    assert state["startTimeStamp"].endswith("Z")
    clock.now += 10.0
    _, state = await job_status(http, sandbox, headers, job_id)
    assert (state["executionStatus"], state["closeStatus"]) == ("CLOSED", "COMPLETED")
    assert state["closeTimeStamp"] is not None


async def test_unknown_job_is_404(http, sandbox, headers):
    status, _ = await job_status(http, sandbox, headers, str(uuid.uuid4()))
    assert status == 404


def _oauth(token: dict) -> str:
    return "OAuth " + base64.b64encode(orjson.dumps(token)).decode()


async def test_auth_refusals_are_401(http, sandbox, headers, clock):
    _, token = await get_token(http, sandbox)
    partial = {k: v for k, v in token.items() if k != "signature"}
    bad_headers = [
        {"X-Forwarded-Host": ZILLIANT_FORWARDED_HOST},
        {**headers, "X-Forwarded-Host": "elsewhere.zilliant.local"},
        {"Authorization": headers["Authorization"]},
        {**headers, "Authorization": "OAuth not-base64!"},
        {**headers, "Authorization": "Bearer " + token["access_token"]},
        {**headers, "Authorization": _oauth(partial)},
        {**headers, "Authorization": _oauth({**token, "access_token": "forged"})},
    ]
    for bad in bad_headers:
        assert (await submit(http, sandbox, bad))[0] == 401, bad
    assert (await submit(http, sandbox, headers))[0] == 202
    clock.now += 7200.0  # the sandbox-side Salesforce session timeout
    assert (await submit(http, sandbox, headers))[0] == 401
    assert (await job_status(http, sandbox, headers, "x"))[0] == 401


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[]",
        orjson.dumps({"descriptor": "X"}),
        orjson.dumps({"parameters": {"foo": "bar"}}),
        orjson.dumps({"parameters": {"WORKFLOW_AUTOMATION_ID": 7}}),
    ],
)
async def test_unprocessable_bodies_are_400(http, sandbox, headers, body):
    url = f"{sandbox.url}/zilliant/v1/JobWorkflow/Authorized"
    async with http.post(url, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert await resp.json() == {"message": "Unable to process the JSON body."}


async def test_same_scope_while_open_is_409_without_parallel_runs(http, sandbox, headers, clock):
    scoped = {**JOB, "scope": "scope2"}
    assert (await submit(http, sandbox, headers, scoped))[0] == 202
    assert (await submit(http, sandbox, headers, scoped))[0] == 409
    assert (await submit(http, sandbox, headers, {**JOB, "scope": "other"}))[0] == 202
    clock.now += 10.0
    assert (await submit(http, sandbox, headers, scoped))[0] == 202


async def test_unscoped_jobs_queue_serially_and_are_never_refused(http, sandbox, headers):
    ids = [(await submit(http, sandbox, headers))[1]["jobId"] for _ in range(3)]
    jobs = [sandbox.state.emulator("zilliant").jobs[i] for i in ids]
    assert jobs[1].start_at == jobs[0].end_at and jobs[2].start_at == jobs[1].end_at


async def test_parallel_runs_queue_the_same_scope_instead_of_refusing(http, clock):
    config = SandboxConfig(
        clock=clock,
        providers={"zilliant": ZilliantSandboxSettings(parallel_enabled=True, job_duration_s=5.0)},
    )
    async with await start_sandbox(config=config) as sandbox:
        _, token = await get_token(http, sandbox)
        headers = {"Authorization": encode_oauth_header(token), "X-Forwarded-Host": ZILLIANT_FORWARDED_HOST}
        scoped = {**JOB, "scope": "s"}
        first = (await submit(http, sandbox, headers, scoped))[1]["jobId"]
        status, second = await submit(http, sandbox, headers, scoped)
        assert status == 202
        jobs = sandbox.state.emulator("zilliant").jobs
        assert jobs[second["jobId"]].start_at == jobs[first].end_at


def _job(scope, end_at):
    return Job("j", scope, 0.0, 0.0, end_at, "COMPLETED", {})


@pytest.mark.parametrize(
    ("jobs", "scope", "parallel", "expected"),
    [
        ([], None, False, 100.0),
        ([_job(None, 150.0)], None, False, 150.0),
        ([_job(None, 90.0)], None, False, 100.0),  # closed jobs do not hold the queue
        ([_job("a", 150.0)], "a", False, None),
        ([_job("a", 150.0)], "b", False, 100.0),
        ([_job("a", 150.0)], "a", True, 150.0),
        ([_job(None, 150.0)], "a", False, 100.0),
    ],
)
def test_schedule_start(jobs, scope, parallel, expected):
    assert schedule_start(jobs, scope, 100.0, parallel_enabled=parallel) == expected


def test_decode_oauth_header():
    token = {f: "x" for f in ("access_token", "instance_url", "id", "token_type", "issued_at", "signature")}
    assert decode_oauth_header(encode_oauth_header(token)) == token
    assert decode_oauth_header(None) is None
    assert decode_oauth_header("OAuth " + base64.b64encode(b'"just a string"').decode()) is None
    assert decode_oauth_header(encode_oauth_header({**token, "id": None})) is None
