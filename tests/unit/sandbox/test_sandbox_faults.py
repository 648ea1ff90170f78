"""Sandbox: fault injection, the request log and reset, plus the pure fault decisions."""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from pydantic import ValidationError

from bridge.sandbox import SandboxConfig, start_sandbox
from bridge.sandbox.catalog import provider_of
from bridge.sandbox.eightbyeight import EIGHTBYEIGHT_API_KEY, EIGHTBYEIGHT_DEFINITION, EIGHTBYEIGHT_RUNNABLE
from bridge.sandbox.faults import (
    FaultKind,
    FaultSpec,
    choose_fault,
    reset_seconds,
    sample_latency_s,
)
from bridge.sandbox.workfloo import WORKFLOO_API_KEY, WORKFLOO_DEFINITION_PLAIN

WORKFLOO = "/workfloo/api/v1/workfloo"
WORKFLOO_HEADERS = {"x-api-key": WORKFLOO_API_KEY}
WORKFLOO_BODY = {"idWorkflooDefinition": WORKFLOO_DEFINITION_PLAIN}
EIGHT_URL = (
    f"/8x8/api/v1/accounts/acme/definitions/{EIGHTBYEIGHT_DEFINITION}/workflows/{EIGHTBYEIGHT_RUNNABLE}"
)


@pytest.fixture
async def sandbox():
    running = await start_sandbox(config=SandboxConfig(seed=7))
    yield running
    await running.stop()


async def set_fault(http, sandbox, provider, **spec):
    async with http.put(f"{sandbox.url}/_sandbox/faults/{provider}", json=spec) as resp:
        return resp.status, await resp.json()


async def workfloo(http, sandbox, **kwargs):
    async with http.post(
        sandbox.url + WORKFLOO, json=WORKFLOO_BODY, headers=WORKFLOO_HEADERS, **kwargs
    ) as resp:
        await resp.read()
        return resp.status, resp.headers


async def test_latency_is_served_without_blocking_the_loop(http, sandbox):
    assert (await set_fault(http, sandbox, "workfloo", latency_ms=300))[0] == 200
    started = time.monotonic()
    results = await asyncio.gather(*(workfloo(http, sandbox) for _ in range(5)))
    elapsed = time.monotonic() - started
    assert [status for status, _ in results] == [200] * 5
    assert 0.3 <= elapsed < 1.0


async def test_error_rate_and_fail_next(http, sandbox):
    await set_fault(http, sandbox, "workfloo", error_rate=1.0, error_status=502)
    assert (await workfloo(http, sandbox))[0] == 502
    await set_fault(http, sandbox, "workfloo", fail_next={"count": 2, "status": 500})
    assert [(await workfloo(http, sandbox))[0] for _ in range(3)] == [500, 500, 200]
    async with http.get(f"{sandbox.url}/_sandbox/faults") as resp:
        assert (await resp.json())["workfloo"]["remaining"] == {"fail_next": 0}


async def test_fail_next_may_send_retry_after_without_ratelimit_headers(http, sandbox):
    await set_fault(http, sandbox, "workfloo", fail_next={"count": 1, "status": 503, "retry_after": "30"})
    status, headers = await workfloo(http, sandbox)
    assert (status, headers["Retry-After"], "ratelimit-reset" in headers) == (503, "30", False)
    assert "Retry-After" not in (await workfloo(http, sandbox))[1]


async def test_rate_limit_next_sends_retry_after_and_ratelimit_headers(http, sandbox):
    await set_fault(http, sandbox, "workfloo", rate_limit_next={"count": 1, "retry_after": "2"})
    status, headers = await workfloo(http, sandbox)
    assert (status, headers["Retry-After"], headers["ratelimit-reset"]) == (429, "2", "2")
    assert headers["ratelimit-remaining"] == "0" and headers["ratelimit-limit"]
    date = "Wed, 21 Oct 2099 07:28:00 GMT"
    await set_fault(http, sandbox, "workfloo", rate_limit_next={"count": 1, "retry_after": date})
    status, headers = await workfloo(http, sandbox)
    assert (status, headers["Retry-After"]) == (429, date)
    assert (await workfloo(http, sandbox))[0] == 200


async def test_timeout_next_delays_the_answer(http, sandbox):
    await set_fault(http, sandbox, "workfloo", timeout_next={"count": 1, "delay_s": 0.5})
    with pytest.raises(asyncio.TimeoutError):
        await workfloo(http, sandbox, timeout=aiohttp.ClientTimeout(total=0.1))
    assert (await workfloo(http, sandbox))[0] == 200


async def test_drop_next_closes_the_connection_and_logs_no_status(http, sandbox):
    await set_fault(http, sandbox, "workfloo", drop_next={"count": 1})
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await workfloo(http, sandbox)
    assert (await workfloo(http, sandbox))[0] == 200
    async with http.get(f"{sandbox.url}/_sandbox/requests", params={"provider": "workfloo"}) as resp:
        assert [entry["status"] for entry in await resp.json()] == [None, 200]


async def test_star_applies_everywhere_and_a_provider_entry_wins(http, sandbox):
    await set_fault(http, sandbox, "*", error_rate=1.0)
    assert (await workfloo(http, sandbox))[0] == 503
    eight = {"Authorization": "Bearer " + EIGHTBYEIGHT_API_KEY}
    async with http.get(sandbox.url + EIGHT_URL, headers=eight) as resp:
        assert resp.status == 503
    await set_fault(http, sandbox, "workfloo")
    assert (await workfloo(http, sandbox))[0] == 200
    async with http.delete(f"{sandbox.url}/_sandbox/faults") as resp:
        assert await resp.json() == {}
    async with http.get(sandbox.url + EIGHT_URL, headers=eight) as resp:
        assert resp.status == 200


async def test_admin_refuses_unknown_providers_and_bad_specs(http, sandbox):
    assert (await set_fault(http, sandbox, "stripe", error_rate=1.0))[0] == 404
    assert (await set_fault(http, sandbox, "zuora", error_rate=2.0))[0] == 400
    assert (await set_fault(http, sandbox, "zuora", bogus=1))[0] == 400


async def test_request_log_records_requests_and_can_be_cleared(http, sandbox):
    await workfloo(http, sandbox, params={"sandbox": "true"})
    async with http.post(f"{sandbox.url}/zuora/oauth/token", data={"grant_type": "x"}) as resp:
        assert resp.status == 400
    async with http.get(f"{sandbox.url}/_sandbox/requests") as resp:
        entries = await resp.json()
    assert [e["provider"] for e in entries] == ["workfloo", "zuora-token"]
    first = entries[0]
    assert (first["method"], first["path"], first["query"]) == ("POST", WORKFLOO, {"sandbox": "true"})
    assert first["headers"]["x-api-key"] == WORKFLOO_API_KEY
    assert (first["body"], first["status"]) == (WORKFLOO_BODY, 200)  # no LINK connectors: no scenario needed
    assert entries[1]["body"] == {"grant_type": "x"}
    async with http.delete(f"{sandbox.url}/_sandbox/requests"):
        pass
    async with http.get(f"{sandbox.url}/_sandbox/requests") as resp:
        assert await resp.json() == []


async def test_reset_restores_seed_state_and_clears_faults_and_log(http, sandbox):
    eight = {"Authorization": "Bearer " + EIGHTBYEIGHT_API_KEY}
    async with http.patch(sandbox.url + EIGHT_URL, json={"status": "terminate"}, headers=eight) as resp:
        assert resp.status == 200
    await set_fault(http, sandbox, "8x8", fail_next={"count": 5})
    async with http.post(f"{sandbox.url}/_sandbox/reset") as resp:
        assert resp.status == 200
    async with http.get(sandbox.url + EIGHT_URL, headers=eight) as resp:
        assert (await resp.json())["status"] == "Runnable"
    async with http.get(f"{sandbox.url}/_sandbox/faults") as resp:
        assert await resp.json() == {}
    assert [e.path for e in sandbox.state.log.entries()] == [EIGHT_URL]


def test_public_api():
    import bridge.sandbox as sandbox_package

    assert set(sandbox_package.__all__) == {
        "RunningSandbox",
        "SandboxConfig",
        "SandboxState",
        "build_app",
        "start_sandbox",
    }
    assert isinstance(sandbox_package.build_app(), web.Application)


def test_choose_fault_precedence():
    spec = FaultSpec.model_validate(
        {
            "error_rate": 0.5,
            "fail_next": {"count": 1, "status": 502},
            "rate_limit_next": {"count": 1, "retry_after": "3"},
            "timeout_next": {"count": 1, "delay_s": 4},
            "drop_next": {"count": 1},
        }
    )
    counts = spec.counts()
    kinds = []
    for _ in range(4):
        action = choose_fault(spec, counts, 0.25, roll=0.9)
        counts[action.consumed] -= 1
        kinds.append((action.kind, action.status, action.delay_s))
    assert kinds == [
        (FaultKind.DROP, None, 0.25),
        (FaultKind.FORWARD, None, 4.25),
        (FaultKind.RATE_LIMIT, 429, 0.25),
        (FaultKind.ERROR, 502, 0.25),
    ]
    assert choose_fault(spec, counts, 0.0, roll=0.9).kind is FaultKind.FORWARD
    assert choose_fault(spec, counts, 0.0, roll=0.1).status == 503


def test_latency_distributions():
    rng = random.Random(1)
    fixed = FaultSpec(latency_ms=100)
    assert sample_latency_s(fixed, rng) == 0.1
    uniform = [
        sample_latency_s(FaultSpec(latency_ms=100, latency_distribution="uniform"), rng) for _ in range(2000)
    ]
    assert min(uniform) >= 0.0 and max(uniform) <= 0.2
    expo = [
        sample_latency_s(FaultSpec(latency_ms=100, latency_distribution="exponential"), rng)
        for _ in range(5000)
    ]
    assert statistics.mean(expo) == pytest.approx(0.1, rel=0.1)
    assert sample_latency_s(FaultSpec(), rng) == 0.0


def test_same_seed_gives_the_same_faults():
    spec = FaultSpec(error_rate=0.5, latency_ms=10, latency_distribution="exponential")

    def draws(seed):
        rng = random.Random(seed)
        return [choose_fault(spec, {}, sample_latency_s(spec, rng), rng.random()) for _ in range(50)]

    assert draws(3) == draws(3)


def test_retry_after_validation_and_reset_seconds():
    with pytest.raises(ValidationError):
        FaultSpec.model_validate({"rate_limit_next": {"count": 1, "retry_after": "soon"}})
    now = datetime(2099, 10, 21, 7, 27, 30, tzinfo=UTC)
    assert reset_seconds("Wed, 21 Oct 2099 07:28:00 GMT", now) == 30
    assert reset_seconds("7", now) == 7


@pytest.mark.parametrize(
    ("path", "provider"),
    [
        ("/salesforce/services/oauth2/token", "salesforce"),
        ("/zilliant/v1/JobWorkflow/Authorized", "zilliant"),
        ("/zuora/oauth/token", "zuora-token"),
        ("/zuora/workflows/396/run", "zuora"),
        ("/workfloo/api/v1/workfloo", "workfloo"),
        ("/workfloo-sandbox/api/v1/workfloo", "workfloo"),
        ("/8x8/api/v1/accounts/a", "8x8"),
        ("/_sandbox/faults", None),
        ("/elsewhere", None),
    ],
)
def test_provider_of(path, provider):
    assert provider_of(path) == provider
