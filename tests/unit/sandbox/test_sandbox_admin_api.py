"""The sandbox's ``/_sandbox`` admin API as a test author uses it: set, read and clear faults, read
the request log, revoke tokens. Everything over real loopback HTTP.
"""

from __future__ import annotations

from typing import Any

import aiohttp
import pytest

from bridge.sandbox import RunningSandbox, SandboxConfig, start_sandbox
from bridge.sandbox.faults import PROVIDERS
from bridge.sandbox.workfloo import WORKFLOO_API_KEY, WORKFLOO_DEFINITION_PLAIN
from bridge.sandbox.zuora_runs import ZUORA_CLIENT_ID, ZUORA_CLIENT_SECRET, ZUORA_TASK_SUCCESS

WORKFLOO = "/workfloo/api/v1/workfloo"
WORKFLOO_HEADERS = {"x-api-key": WORKFLOO_API_KEY}
WORKFLOO_BODY = {"idWorkflooDefinition": WORKFLOO_DEFINITION_PLAIN}
ZUORA_FORM = {
    "grant_type": "client_credentials",
    "client_id": ZUORA_CLIENT_ID,
    "client_secret": ZUORA_CLIENT_SECRET,
}


async def call(http: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kwargs) as response:
        body = await response.read()
        return response.status, (await response.json(content_type=None)) if body else None


async def admin(
    http: aiohttp.ClientSession, sandbox: RunningSandbox, method: str, path: str, **kwargs: Any
) -> tuple[int, Any]:
    return await call(http, method, f"{sandbox.url}/_sandbox{path}", **kwargs)


async def workfloo(http: aiohttp.ClientSession, sandbox: RunningSandbox) -> int:
    status, _ = await call(http, "POST", sandbox.url + WORKFLOO, json=WORKFLOO_BODY, headers=WORKFLOO_HEADERS)
    return status


async def zuora_token(http: aiohttp.ClientSession, sandbox: RunningSandbox) -> str:
    status, body = await call(http, "POST", f"{sandbox.url}/zuora/oauth/token", data=ZUORA_FORM)
    assert status == 200
    return str(body["access_token"])


async def zuora_rerun(http: aiohttp.ClientSession, sandbox: RunningSandbox, token: str) -> int:
    url = f"{sandbox.url}/zuora/workflows/tasks/{ZUORA_TASK_SUCCESS}/rerun"
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": f"key-{token[:8]}"}
    status, _ = await call(http, "POST", url, headers=headers)
    return status


# -- faults --------------------------------------------------------------------------------------------


async def test_a_fault_entry_is_echoed_with_its_counters(http, sandbox):
    status, body = await admin(
        http, sandbox, "PUT", "/faults/workfloo", json={"fail_next": {"count": 2, "status": 502}}
    )
    assert status == 200
    assert body == {"workfloo": {"fail_next": {"count": 2, "status": 502}, "remaining": {"fail_next": 2}}}


async def test_counters_go_down_with_each_faulted_request_then_requests_pass(http, sandbox):
    await admin(http, sandbox, "PUT", "/faults/workfloo", json={"fail_next": {"count": 2, "status": 502}})

    statuses = [await workfloo(http, sandbox) for _ in range(3)]

    assert statuses == [502, 502, 200]
    _, faults = await admin(http, sandbox, "GET", "/faults")
    assert faults["workfloo"]["remaining"] == {"fail_next": 0}


async def test_a_fault_applies_only_to_its_provider(http, sandbox):
    await admin(http, sandbox, "PUT", "/faults/zuora", json={"error_rate": 1.0})
    assert await workfloo(http, sandbox) == 200


async def test_putting_a_fault_replaces_the_previous_entry(http, sandbox):
    await admin(http, sandbox, "PUT", "/faults/workfloo", json={"error_rate": 1.0})
    await admin(http, sandbox, "PUT", "/faults/workfloo", json={"latency_ms": 1})

    _, faults = await admin(http, sandbox, "GET", "/faults")
    assert faults == {"workfloo": {"latency_ms": 1.0, "remaining": {}}}
    assert await workfloo(http, sandbox) == 200


async def test_an_empty_body_sets_an_entry_without_faults(http, sandbox):
    status, body = await admin(http, sandbox, "PUT", "/faults/zuora")
    assert status == 200 and body == {"zuora": {"remaining": {}}}


async def test_deleting_one_entry_keeps_the_others(http, sandbox):
    await admin(http, sandbox, "PUT", "/faults/workfloo", json={"error_rate": 1.0})
    await admin(http, sandbox, "PUT", "/faults/zuora", json={"error_rate": 1.0})

    status, left = await admin(http, sandbox, "DELETE", "/faults/workfloo")

    assert status == 200 and list(left) == ["zuora"]
    assert await workfloo(http, sandbox) == 200


async def test_deleting_an_entry_that_is_not_there_is_fine(http, sandbox):
    assert await admin(http, sandbox, "DELETE", "/faults/8x8") == (200, {})


async def test_clearing_all_faults(http, sandbox):
    await admin(http, sandbox, "PUT", "/faults/*", json={"error_rate": 1.0})
    assert await workfloo(http, sandbox) == 503

    assert await admin(http, sandbox, "DELETE", "/faults") == (200, {})
    assert await workfloo(http, sandbox) == 200


async def test_an_unknown_provider_is_404_listing_the_known_ones(http, sandbox):
    status, body = await admin(http, sandbox, "PUT", "/faults/stripe", json={})
    assert status == 404
    assert body == {"error": "unknown provider 'stripe'", "providers": [*PROVIDERS, "*"]}


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"error_rate": 1.5}, "error_rate"),
        ({"error_status": 200}, "error_status"),
        ({"latency_distribution": "normal"}, "latency_distribution"),
        ({"fail_next": {"count": -1}}, "fail_next"),
        ({"rate_limit_next": {"count": 1, "retry_after": "soon"}}, "rate_limit_next"),
        ({"explode": True}, "explode"),
    ],
)
async def test_an_invalid_fault_is_400_naming_the_field(http, sandbox, spec: dict[str, Any], field: str):
    status, body = await admin(http, sandbox, "PUT", "/faults/zuora", json=spec)
    assert status == 400 and body["error"] == "invalid fault"
    assert field in [str(detail["loc"][0]) for detail in body["details"]]
    assert (await admin(http, sandbox, "GET", "/faults"))[1] == {}


async def test_a_body_that_is_not_json_is_400(http, sandbox):
    status, body = await admin(http, sandbox, "PUT", "/faults/zuora", data=b"error_rate=1")
    assert status == 400 and body["error"] == "invalid fault"


# -- the request log -----------------------------------------------------------------------------------


async def test_the_log_can_be_filtered_by_provider(http, sandbox):
    await workfloo(http, sandbox)
    await zuora_token(http, sandbox)

    _, zuora_only = await admin(http, sandbox, "GET", "/requests", params={"provider": "zuora-token"})
    _, everything = await admin(http, sandbox, "GET", "/requests")

    assert [e["provider"] for e in zuora_only] == ["zuora-token"]
    assert [e["provider"] for e in everything] == ["workfloo", "zuora-token"]


async def test_admin_calls_are_not_logged(http, sandbox):
    await admin(http, sandbox, "GET", "/faults")
    await admin(http, sandbox, "PUT", "/faults/zuora", json={})
    assert await admin(http, sandbox, "GET", "/requests") == (200, [])


async def test_a_faulted_request_is_logged_with_the_status_it_got(http, sandbox):
    await admin(http, sandbox, "PUT", "/faults/workfloo", json={"fail_next": {"count": 1, "status": 500}})
    await workfloo(http, sandbox)

    _, [entry] = await admin(http, sandbox, "GET", "/requests")
    assert entry["status"] == 500 and entry["body"] == WORKFLOO_BODY


async def test_the_raw_path_keeps_percent_encoding(http, sandbox):
    url = f"{sandbox.url}/zuora/workflows/tasks/a%3Bb/rerun"
    await call(http, "POST", aiohttp.client.URL(url, encoded=True))

    _, [entry] = await admin(http, sandbox, "GET", "/requests")
    assert entry["raw_path"] == "/zuora/workflows/tasks/a%3Bb/rerun"
    assert entry["path"] == "/zuora/workflows/tasks/a;b/rerun"


async def test_the_log_keeps_only_the_most_recent_requests(http):
    async with await start_sandbox(config=SandboxConfig(request_log_limit=2)) as small:
        for _ in range(3):
            await zuora_token(http, small)
        await workfloo(http, small)
        _, entries = await admin(http, small, "GET", "/requests")
    assert [e["provider"] for e in entries] == ["zuora-token", "workfloo"]


# -- tokens and reset ----------------------------------------------------------------------------------


async def test_revoking_tokens_makes_issued_tokens_fail(http, sandbox):
    token = await zuora_token(http, sandbox)
    assert await zuora_rerun(http, sandbox, token) == 200

    status, _ = await admin(http, sandbox, "DELETE", "/tokens")

    assert status == 200
    assert await zuora_rerun(http, sandbox, token) == 401
    assert await zuora_rerun(http, sandbox, await zuora_token(http, sandbox)) == 200


async def test_reset_also_revokes_tokens(http, sandbox):
    token = await zuora_token(http, sandbox)
    await admin(http, sandbox, "POST", "/reset")
    assert await zuora_rerun(http, sandbox, token) == 401


async def test_stop_is_idempotent():
    running = await start_sandbox()
    await running.stop()
    await running.stop()
