"""Zuora: request builder and classifier tables, and client-credentials auth over real HTTP."""

from __future__ import annotations

import asyncio
import hashlib
import re
import socket
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
from bridge.providers.workfloo import WorkflooExecute
from bridge.providers.zuora import (
    ZuoraProvider,
    ZuoraRerunTask,
    ZuoraRunWorkflow,
    ZuoraTarget,
    build_request,
    classify,
    idempotency_key,
)
from tests.fakes import FakeClock

CLIENT_ID = "8c7e4a1b-0000-4000-8000-SECRETID0001"
CLIENT_SECRET = "zuora-SECRET-value=="


def run(**fields: Any) -> ZuoraRunWorkflow:
    base = {"id": "cmd-1", "target": "billing", "operation": "zuora.run_workflow", "workflow_id": 396}
    return ZuoraRunWorkflow.model_validate({**base, **fields})


def rerun(**fields: Any) -> ZuoraRerunTask:
    base = {"id": "cmd-2", "target": "billing", "operation": "zuora.rerun_task", "task_id": "2770"}
    return ZuoraRerunTask.model_validate({**base, **fields})


def target(base_url: str, **fields: Any) -> ZuoraTarget:
    return ZuoraTarget.model_validate(
        {
            "provider": "zuora",
            "base_url": base_url,
            "allow_http": True,
            "client_id": SecretStr(CLIENT_ID),
            "client_secret": SecretStr(CLIENT_SECRET),
            **fields,
        }
    )


# --- request builder ----------------------------------------------------------------------------


def test_run_request() -> None:
    request = build_request(run(parameters={"accountId": "4028905f", "n": 2}))
    assert (request.method, request.path) == ("POST", "/workflows/396/run")
    assert request.body is not None
    assert orjson.loads(request.body) == {"accountId": "4028905f", "n": 2}
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["Idempotency-Key"] == idempotency_key(run())
    assert not {"Zuora-Track-Id", "Zuora-Entity-Ids", "Zuora-Org-Ids", "Authorization"} & set(request.headers)


def test_run_with_no_parameters_sends_empty_object() -> None:
    assert build_request(run()).body == b"{}"


@pytest.mark.parametrize(
    ("task_id", "path"),
    [
        ("2770", "/workflows/tasks/2770/rerun"),
        ("a:b@c", "/workflows/tasks/a%3Ab%40c/rerun"),
        ("x;y=z&w+v", "/workflows/tasks/x%3By%3Dz%26w%2Bv/rerun"),
        ("it's(1)*", "/workflows/tasks/it%27s%281%29%2A/rerun"),
        ("a.b_c~d-e", "/workflows/tasks/a.b_c~d-e/rerun"),
    ],
)
def test_rerun_path_is_encoded(task_id: str, path: str) -> None:
    request = build_request(rerun(task_id=task_id))
    assert (request.method, request.path, request.body) == ("POST", path, None)
    assert "Content-Type" not in request.headers
    assert request.headers["Idempotency-Key"] == idempotency_key(rerun(task_id=task_id))


@pytest.mark.parametrize("make", [run, rerun])
@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, {}),
        ({"track_id": "batch 42/7"}, {"Zuora-Track-Id": "batch 42/7"}),
        ({"entity_id": "ent-1"}, {"Zuora-Entity-Ids": "ent-1"}),
        ({"org_ids": ["o1", "o2", "o3"]}, {"Zuora-Org-Ids": "o1,o2,o3"}),
        ({"org_ids": []}, {}),
        (
            {"track_id": "t", "entity_id": "e", "org_ids": ["o"]},
            {"Zuora-Track-Id": "t", "Zuora-Entity-Ids": "e", "Zuora-Org-Ids": "o"},
        ),
    ],
)
def test_routing_headers_only_when_set(make, options: dict[str, Any], expected: dict[str, str]) -> None:
    headers = build_request(make(zuora=options)).headers
    assert {k: v for k, v in headers.items() if k.startswith("Zuora-")} == expected


@pytest.mark.parametrize("command_id", ["cmd-1", "x" * 200, "~!@#$%^&*()_+{}|:\"<>?`-=[]\\;',./"])
def test_idempotency_key_is_deterministic_and_header_safe(command_id: str) -> None:
    key = idempotency_key(run(id=command_id))
    assert key == idempotency_key(run(id=command_id, parameters={"other": "body"}))
    assert re.fullmatch(r"wfb-[0-9a-f]{48}", key)
    assert len(key) <= 255
    assert key != idempotency_key(rerun(id=command_id)), "operation is part of the key"
    assert key != idempotency_key(run(id=command_id[:-1] + "y"))


def test_idempotency_key_is_stable_across_processes() -> None:
    # A pinned value: a restart (new process, new hash seed) must produce the same key.
    assert idempotency_key(run()) == "wfb-" + hashlib.sha256(b"zuora.run_workflow:cmd-1").hexdigest()[:48]


def test_other_operations_are_refused() -> None:
    other = WorkflooExecute(id="c", target="t", operation="workfloo.execute", definition_id="abc")
    with pytest.raises(CommandRejected) as exc:
        build_request(other)
    assert exc.value.kind is ErrorKind.TARGET_MISMATCH


# --- classifier ---------------------------------------------------------------------------------

INSTANCE = orjson.dumps({"id": 400, "name": "WF-396-00000003", "status": "Queued"})
TASK = orjson.dumps({"id": 2771, "status": "Success", "instance": True})


def errors(*titles: str) -> bytes:
    return orjson.dumps({"errors": [{"code": "invalid", "status": 0, "title": t} for t in titles]})


@pytest.mark.parametrize(
    ("make", "status", "body", "want", "kind", "retryable", "text"),
    [
        (run, 200, INSTANCE, Status.QUEUED, None, False, ""),
        (rerun, 200, TASK, Status.APPLIED, None, False, ""),
        (
            run,
            400,
            errors("Callout not enabled"),
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            "Callout not enabled",
        ),
        (
            run,
            406,
            errors("accountId is required"),
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            "missing required workflow parameters (406): accountId is required",
        ),
        (
            run,
            409,
            errors("Workflow 400 is an instance"),
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            "instance, not a definition",
        ),
        (
            run,
            409,
            errors("Another request with the same Idempotency-Key is being processed"),
            Status.CONFLICT,
            ErrorKind.CONFLICT,
            True,
            "still in progress",
        ),
        (
            rerun,
            409,
            b'{"message": "IDEMPOTENCY conflict"}',
            Status.CONFLICT,
            ErrorKind.CONFLICT,
            True,
            "Idempotency-Key",
        ),
        (rerun, 409, b"", Status.REJECTED, ErrorKind.PROVIDER_REJECTED, False, "refused the rerun"),
        (
            run,
            422,
            b'{"reasons": [{"code": 1, "message": "key reused"}]}',
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            "another URL or method (422): key reused",
        ),
        (
            rerun,
            404,
            b'{"message": "Task not found"}',
            Status.REJECTED,
            ErrorKind.PROVIDER_REJECTED,
            False,
            "Task not found",
        ),
        (run, 400, b"<html>bad gateway</html>", Status.REJECTED, ErrorKind.PROVIDER_REJECTED, False, "(400)"),
        (run, 401, b'{"message": "Authentication error"}', Status.ERROR, ErrorKind.AUTH, False, "401"),
        (run, 403, b"", Status.ERROR, ErrorKind.AUTH, False, "403"),
        (run, 429, b"", Status.ERROR, ErrorKind.RATE_LIMITED, True, "429"),
        (rerun, 502, b"", Status.ERROR, ErrorKind.PROVIDER_ERROR, True, "502"),
        (run, 418, b"", Status.ERROR, ErrorKind.PROVIDER_ERROR, False, "unexpected"),
    ],
)
def test_classify(make, status, body, want, kind, retryable, text) -> None:
    verdict = classify(make(), status, {"Retry-After": "7"}, body)
    assert verdict.status is want
    assert verdict.error_kind is kind
    assert verdict.retryable is retryable
    assert text in verdict.message
    assert verdict.refresh_auth is (status == 401)
    if status == 429:
        assert verdict.retry_after_s == 7.0


@pytest.mark.parametrize(
    ("make", "body", "reference"),
    [
        (run, INSTANCE, "400"),
        (rerun, TASK, "2771"),
        (run, b'{"id": "WF-1"}', "WF-1"),
        (run, b"", None),
        (run, b"[1]", None),
        (run, b'{"id": true}', None),
        (run, b'{"id": [1]}', None),
    ],
)
def test_success_reference(make, body: bytes, reference: str | None) -> None:
    assert classify(make(), 200, {}, body).reference == reference


def test_request_id_is_quoted_in_rejections() -> None:
    verdict = classify(run(), 406, {"zuora-request-id": "req-123"}, errors("x"))
    assert "[Zuora-Request-Id req-123]" in verdict.message


# --- auth over real HTTP ------------------------------------------------------------------------


class OAuthStub:
    """POST /oauth/token: counts requests, records what it was sent, answers as configured."""

    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], dict[str, str]]] = []
        self.status = 200
        self.expires_in: Any = 3599
        self.delay_s = 0.0
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        form = {key: str(value) for key, value in (await request.post()).items()}
        self.requests.append((form, dict(request.headers)))
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.status != 200:
            return web.Response(status=self.status, text=f'{{"echo": "{CLIENT_SECRET}"}}')
        body: dict[str, Any] = {"access_token": f"tok-{len(self.requests)}", "token_type": "bearer"}
        if self.expires_in is not None:
            body["expires_in"] = self.expires_in
        return web.json_response(body)


@pytest.fixture
async def stub() -> AsyncIterator[OAuthStub]:
    state = OAuthStub()
    app = web.Application()
    app.router.add_post("/oauth/token", state.handle)
    async with TestServer(app) as server:
        state.base_url = str(server.make_url("")).rstrip("/")
        yield state


async def test_registry_builds_zuora(session) -> None:
    provider = CATALOG.build("billing", target("http://127.0.0.1:1"), session)
    assert isinstance(provider, ZuoraProvider)
    assert provider.kind == "zuora"
    assert CATALOG.operations_of("zuora") == {
        "zuora.run_workflow",
        "zuora.rerun_task",
        "zuora.stop_run",
    }


async def test_client_credentials_form_without_authorization(stub, session) -> None:
    provider = ZuoraProvider("billing", target(stub.base_url), session)
    assert await provider.auth_headers() == {"Authorization": "Bearer tok-1"}
    form, headers = stub.requests[0]
    assert form == {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "grant_type": "client_credentials",
    }
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert "Authorization" not in headers


async def test_token_cached_until_near_expiry(stub, session) -> None:
    clock = FakeClock(100.0)
    provider = ZuoraProvider("billing", target(stub.base_url), session, clock=clock)
    await provider.auth_headers()
    clock.now += 3599 - 60 - 1  # TokenCache refreshes 60 s early
    assert await provider.auth_headers() == {"Authorization": "Bearer tok-1"}
    clock.now += 2
    assert await provider.auth_headers() == {"Authorization": "Bearer tok-2"}
    assert len(stub.requests) == 2


async def test_missing_expires_in_falls_back_to_one_hour(stub, session) -> None:
    stub.expires_in = None
    clock = FakeClock(100.0)
    provider = ZuoraProvider("billing", target(stub.base_url), session, clock=clock)
    await provider.auth_headers()
    clock.now += 3500
    assert await provider.auth_headers() == {"Authorization": "Bearer tok-1"}


async def test_refresh_fetches_a_new_token(stub, session) -> None:
    provider = ZuoraProvider("billing", target(stub.base_url), session)
    await provider.auth_headers()
    assert await provider.auth_headers(refresh=True) == {"Authorization": "Bearer tok-2"}
    assert len(stub.requests) == 2


async def test_thousand_concurrent_callers_make_one_token_request(stub, session) -> None:
    stub.delay_s = 0.05
    provider = ZuoraProvider("billing", target(stub.base_url), session)
    results = await asyncio.gather(*(provider.auth_headers() for _ in range(1000)))
    assert {r["Authorization"] for r in results} == {"Bearer tok-1"}
    assert len(stub.requests) == 1


@pytest.mark.parametrize("status", [400, 401, 403])
async def test_refused_credentials_are_final_and_secret_free(stub, session, status: int) -> None:
    stub.status = status
    provider = ZuoraProvider("billing", target(stub.base_url), session)
    with pytest.raises(AuthError) as exc:
        await provider.auth_headers()
    assert exc.value.retryable is False
    assert exc.value.kind is ErrorKind.AUTH
    assert str(exc.value) == f"Zuora token endpoint refused the credentials ({status})"
    assert CLIENT_SECRET not in repr(exc.value) and CLIENT_ID not in repr(exc.value)


@pytest.mark.parametrize("status", [429, 500, 503])
async def test_overloaded_token_endpoint_is_retryable_and_backed_off(stub, session, status: int) -> None:
    stub.status = status
    provider = ZuoraProvider("billing", target(stub.base_url), session)
    for _ in range(5):
        with pytest.raises(AuthError) as exc:
            await provider.auth_headers()
        assert exc.value.retryable is True
    assert len(stub.requests) == 1, "the cache backs off instead of hammering the endpoint"


async def test_garbage_token_response_is_an_auth_error(stub, session) -> None:
    stub.expires_in = "soon"
    provider = ZuoraProvider("billing", target(stub.base_url), session)
    assert await provider.auth_headers() == {"Authorization": "Bearer tok-1"}  # bad expires_in: default

    async def html(_: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/oauth/token", html)
    async with TestServer(app) as server:
        broken = ZuoraProvider("billing", target(str(server.make_url("")).rstrip("/")), session)
        with pytest.raises(AuthError) as exc:
            await broken.auth_headers()
    assert exc.value.retryable is True
    assert "maintenance" not in str(exc.value)


async def test_timeout_is_retryable(stub, session) -> None:
    stub.delay_s = 0.5
    timeouts = {"connect_s": 1.0, "total_s": 0.1}
    provider = ZuoraProvider("billing", target(stub.base_url, timeouts=timeouts), session)
    with pytest.raises(AuthError) as exc:
        await provider.auth_headers()
    assert exc.value.retryable is True
    assert "unreachable" in str(exc.value)


async def test_connection_refused_is_retryable(session) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    provider = ZuoraProvider("billing", target(f"http://127.0.0.1:{port}"), session)
    with pytest.raises(AuthError) as exc:
        await provider.auth_headers()
    assert exc.value.retryable is True
    assert "ClientConnectorError" in str(exc.value)


async def test_token_url_override(stub, session) -> None:
    provider = ZuoraProvider(
        "billing", target("http://127.0.0.1:1", token_url=f"{stub.base_url}/oauth/token"), session
    )
    assert await provider.auth_headers() == {"Authorization": "Bearer tok-1"}
