"""Zilliant: request builder and classifier tables, and Salesforce token auth over real HTTP."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from bridge.errors import AuthError, CommandRejected
from bridge.messages.outcomes import ErrorKind, Status
from bridge.providers.catalog import CATALOG
from bridge.providers.zilliant import (
    ZilliantProvider,
    ZilliantQueueJob,
    ZilliantTarget,
    build_request,
    classify,
    job_id,
)
from bridge.providers.zuora import ZuoraRerunTask
from tests.fakes import FakeClock

SECRETS = {
    "username": "api@corp.test",
    "password": "pw-SECRET-1",
    "client_id": "cid-SECRET-2",
    "client_secret": "cs-SECRET-3",
}
JOB = "5b6a2c3d-91f0-4a6e-9f7b-1a2b3c4d5e6f"


def command(**fields: Any) -> ZilliantQueueJob:
    base = {
        "id": "cmd-1",
        "target": "pricing",
        "operation": "zilliant.queue_job",
        "automation_id": "PublishListPrices",
    }
    return ZilliantQueueJob.model_validate({**base, **fields})


def target(token_url: str, **fields: Any) -> ZilliantTarget:
    secrets = {key: SecretStr(value) for key, value in SECRETS.items()}
    return ZilliantTarget.model_validate(
        {
            "provider": "zilliant",
            "base_url": "http://127.0.0.1:1",
            "allow_http": True,
            "token_url": token_url,
            "forwarded_host": "mycompany-dev.zilliant.com",
            **secrets,
            **fields,
        }
    )


# --- request builder ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {},
            {
                "descriptor": "PLATFORM_CUSTOM_WORKFLOW",
                "parameters": {"WORKFLOW_AUTOMATION_ID": "PublishListPrices"},
            },
        ),
        (
            {"scope": "scope2", "parameters": {"foo": "bar"}},
            {
                "descriptor": "PLATFORM_CUSTOM_WORKFLOW",
                "scope": "scope2",
                "parameters": {"WORKFLOW_AUTOMATION_ID": "PublishListPrices", "foo": "bar"},
            },
        ),
        (
            {"descriptor": "OTHER", "parameters": {"n": 1, "nested": {"a": [1, 2]}}},
            {
                "descriptor": "OTHER",
                "parameters": {
                    "WORKFLOW_AUTOMATION_ID": "PublishListPrices",
                    "n": 1,
                    "nested": {"a": [1, 2]},
                },
            },
        ),
    ],
)
def test_build_request_body(fields: dict[str, Any], expected: dict[str, Any]) -> None:
    request = build_request(command(**fields))
    assert (request.method, request.path, dict(request.query)) == ("POST", "/v1/JobWorkflow/Authorized", {})
    assert request.body is not None
    assert orjson.loads(request.body) == expected
    assert request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in request.headers


def test_build_request_refuses_other_operations() -> None:
    other = ZuoraRerunTask(id="c", target="t", operation="zuora.rerun_task", task_id="1")
    with pytest.raises(CommandRejected) as exc:
        build_request(other)
    assert exc.value.kind is ErrorKind.TARGET_MISMATCH


# --- classifier ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (orjson.dumps({"jobId": JOB}), JOB),
        (orjson.dumps(JOB), JOB),
        (JOB.encode(), JOB),
        (f"  {JOB}\n".encode(), JOB),
        (b"", None),
        (b"null", None),
        (b"{}", None),
        (b'{"jobId": {"x": 1}}', None),
        (b"<html>queued</html>", None),
    ],
)
def test_job_id_shapes(body: bytes, expected: str | None) -> None:
    assert job_id(body) == expected


@pytest.mark.parametrize(
    ("status", "body", "want_status", "kind", "retryable", "refresh", "text"),
    [
        (202, orjson.dumps({"jobId": JOB}), Status.QUEUED, None, False, False, ""),
        (409, b"", Status.CONFLICT, ErrorKind.CONFLICT, False, False, "scope busy"),
        (400, b"", Status.REJECTED, ErrorKind.PROVIDER_REJECTED, False, False, "JSON body"),
        (
            400,
            b'{"message": "bad parameters"}',
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            False,
            "bad parameters",
        ),
        (400, b"\xff\xfe not json", Status.REJECTED, ErrorKind.PROVIDER_REJECTED, False, False, "(400)"),
        (401, b"", Status.ERROR, ErrorKind.AUTH, False, True, "401"),
        (403, b"", Status.ERROR, ErrorKind.AUTH, False, False, "403"),
        (429, b"", Status.ERROR, ErrorKind.RATE_LIMITED, True, False, "429"),
        (500, b"Service failed", Status.ERROR, ErrorKind.PROVIDER_ERROR, True, False, "500"),
        (503, b"", Status.ERROR, ErrorKind.PROVIDER_ERROR, True, False, "503"),
        (418, b"", Status.ERROR, ErrorKind.PROVIDER_ERROR, False, False, "unexpected"),
    ],
)
def test_classify(status, body, want_status, kind, retryable, refresh, text) -> None:
    verdict = classify(command(scope="s1"), status, {}, body)
    assert verdict.status is want_status
    assert verdict.error_kind is kind
    assert verdict.retryable is retryable
    assert verdict.refresh_auth is refresh
    assert text in verdict.message
    assert verdict.reference == (JOB if status == 202 else None)


# --- auth over real HTTP ------------------------------------------------------------------------


class SalesforceStub:
    """A token endpoint that records each form and answers with a numbered token response."""

    def __init__(self) -> None:
        self.forms: list[dict[str, str]] = []
        self.status = 200
        self.url = ""

    def body(self, n: int) -> bytes:
        # Odd spacing and key order on purpose: the header must carry these exact bytes.
        return (
            b'{"access_token":"00D!AQ-'
            + str(n).encode()
            + b'",  "instance_url":"https://x.my.salesforce.com",'
            b'"id":"https://login.salesforce.com/id/00D/005","token_type":"Bearer",'
            b'"issued_at":"1700000000000","signature":"c2lnbmF0dXJl"}'
        )

    async def handle(self, request: web.Request) -> web.Response:
        self.forms.append({key: str(value) for key, value in (await request.post()).items()})
        if self.status != 200:
            return web.Response(status=self.status, body=b'{"error":"invalid_grant","echo":"cs-SECRET-3"}')
        return web.Response(body=self.body(len(self.forms)), content_type="application/json")


@pytest.fixture
async def stub() -> AsyncIterator[SalesforceStub]:
    state = SalesforceStub()
    app = web.Application()
    app.router.add_post("/services/oauth2/token", state.handle)
    async with TestServer(app) as server:
        state.url = str(server.make_url("/services/oauth2/token"))
        yield state


async def test_registry_builds_zilliant(session) -> None:
    provider = CATALOG.build("pricing", target("http://127.0.0.1:1/token"), session)
    assert isinstance(provider, ZilliantProvider)
    assert provider.kind == "zilliant"
    assert CATALOG.operations_of("zilliant") == {"zilliant.queue_job"}


async def test_auth_header_is_base64_of_entire_token_response(stub, session) -> None:
    provider = ZilliantProvider("pricing", target(stub.url), session)
    headers = await provider.auth_headers()
    assert headers["Authorization"] == "OAuth " + base64.b64encode(stub.body(1)).decode()
    assert headers["X-Forwarded-Host"] == "mycompany-dev.zilliant.com"
    assert stub.forms == [{"grant_type": "password", **SECRETS}]


async def test_token_cached_for_ttl_then_refetched(stub, session) -> None:
    clock = FakeClock(100.0)
    provider = ZilliantProvider("pricing", target(stub.url, token_ttl_s=600), session, clock=clock)
    first = await provider.auth_headers()
    clock.now += 539  # skew is min(60, ttl / 4) = 60
    assert await provider.auth_headers() == first
    clock.now += 2
    assert await provider.auth_headers() != first
    assert len(stub.forms) == 2


async def test_refresh_forces_new_token_once_per_stale_header(stub, session) -> None:
    refreshes: list[bool] = []
    provider = ZilliantProvider("pricing", target(stub.url), session, on_token_refresh=refreshes.append)
    old = await provider.auth_headers()
    new = await provider.auth_headers(refresh=True, stale=old)
    assert new != old
    assert await provider.auth_headers(refresh=True, stale=old) == new
    assert len(stub.forms) == 2
    assert refreshes == [True, True]


async def test_refused_credentials_are_final_and_secret_free(stub, session) -> None:
    stub.status = 400  # Salesforce answers invalid_grant with 400
    provider = ZilliantProvider("pricing", target(stub.url), session)
    with pytest.raises(AuthError) as exc:
        await provider.auth_headers()
    assert exc.value.retryable is False
    assert exc.value.message == "Zilliant token endpoint refused the credentials (400)"
    assert not any(secret in str(exc.value) for secret in SECRETS.values())
