"""Token requests (Salesforce for Zilliant, Zuora): the form POST, its failures and what they say.

Requests go over real loopback HTTP to the sandbox, whose fault injection supplies the failures;
one small local server stands in for a token endpoint that redirects.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from bridge.config.targets import TimeoutSettings
from bridge.errors import AuthError
from bridge.messages.outcomes import ErrorKind
from bridge.providers.oauth import (
    TokenEndpoint,
    post_token_form,
    ssl_context_for,
    stale_credential,
    token_failure,
)
from bridge.sandbox import RunningSandbox
from bridge.sandbox.zuora_runs import ZUORA_CLIENT_ID, ZUORA_CLIENT_SECRET
from tests.certs import make_ca

FAST = TimeoutSettings(connect_s=1, total_s=2)
ZUORA_FORM = {
    "grant_type": "client_credentials",
    "client_id": ZUORA_CLIENT_ID,
    "client_secret": ZUORA_CLIENT_SECRET,
}


def zuora(sandbox: RunningSandbox, timeouts: TimeoutSettings = FAST) -> TokenEndpoint:
    return TokenEndpoint("Zuora", f"{sandbox.url}/zuora/oauth/token", timeouts)


async def fault(session: aiohttp.ClientSession, sandbox: RunningSandbox, **spec: object) -> None:
    async with session.put(f"{sandbox.url}/_sandbox/faults/zuora-token", json=spec) as response:
        assert response.status == 200, await response.text()


async def refused(session: aiohttp.ClientSession, endpoint: TokenEndpoint, form: dict[str, str]) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await post_token_form(session, endpoint, form)
    return caught.value


# -- answers -------------------------------------------------------------------------------------------


async def test_a_good_form_returns_the_raw_token_body(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
):
    body = await post_token_form(session, zuora(sandbox), ZUORA_FORM)
    token = orjson.loads(body)
    assert token["token_type"].lower() == "bearer" and token["access_token"]


async def test_the_form_is_sent_url_encoded_asking_for_json(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
):
    await post_token_form(session, zuora(sandbox), ZUORA_FORM)
    async with session.get(f"{sandbox.url}/_sandbox/requests") as response:
        [request] = await response.json()
    assert (request["method"], request["path"]) == ("POST", "/zuora/oauth/token")
    assert request["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert request["headers"]["accept"] == "application/json"
    assert request["body"] == ZUORA_FORM


async def test_wrong_credentials_are_a_final_auth_error(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
):
    error = await refused(session, zuora(sandbox), {**ZUORA_FORM, "client_secret": "wrong-secret-value"})
    assert error.kind is ErrorKind.AUTH and error.retryable is False
    assert str(
        error
    ) == "Zuora token endpoint refused the credentials (401)" or "refused the credentials" in str(error)


async def test_an_auth_error_never_carries_credentials_or_the_body(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
):
    error = await refused(session, zuora(sandbox), {**ZUORA_FORM, "client_secret": "wrong-secret-value"})
    text = f"{error} {error!r} {error.args}"
    assert "wrong-secret-value" not in text and ZUORA_CLIENT_ID not in text


async def test_a_salesforce_refusal_names_salesforce(sandbox: RunningSandbox, session: aiohttp.ClientSession):
    endpoint = TokenEndpoint("Salesforce", f"{sandbox.url}/salesforce/services/oauth2/token", FAST)
    error = await refused(session, endpoint, {"grant_type": "password", "username": "nobody"})
    assert str(error) == "Salesforce token endpoint refused the credentials (400)" and not error.retryable


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (404, False)])
async def test_other_failures_say_whether_a_retry_may_help(
    sandbox: RunningSandbox, session: aiohttp.ClientSession, status: int, retryable: bool
):
    await fault(session, sandbox, fail_next={"count": 1, "status": status})
    error = await refused(session, zuora(sandbox), ZUORA_FORM)
    assert str(error) == f"Zuora token endpoint failed ({status})" and error.retryable is retryable


async def test_the_next_request_after_a_fault_succeeds(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
):
    await fault(session, sandbox, fail_next={"count": 1, "status": 503})
    await refused(session, zuora(sandbox), ZUORA_FORM)
    assert b"access_token" in await post_token_form(session, zuora(sandbox), ZUORA_FORM)


async def test_a_dropped_connection_is_a_retryable_auth_error(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
):
    await fault(session, sandbox, drop_next={"count": 1})
    error = await refused(session, zuora(sandbox), ZUORA_FORM)
    assert error.retryable and str(error).startswith("Zuora token endpoint unreachable")


async def test_a_slow_endpoint_times_out_with_the_configured_limit(
    sandbox: RunningSandbox, session: aiohttp.ClientSession
):
    await fault(session, sandbox, timeout_next={"count": 1, "delay_s": 5})
    error = await refused(session, zuora(sandbox, TimeoutSettings(connect_s=1, total_s=0.3)), ZUORA_FORM)
    assert error.retryable and str(error) == "Zuora token endpoint unreachable in time: no answer within 0.3s"


async def test_nothing_listening_is_a_retryable_auth_error(
    session: aiohttp.ClientSession, unused_tcp_port: int
):
    endpoint = TokenEndpoint("Zuora", f"http://127.0.0.1:{unused_tcp_port}/oauth/token", FAST)
    error = await refused(session, endpoint, ZUORA_FORM)
    assert error.retryable and "Zuora token endpoint unreachable (" in str(error)


# -- redirects are not followed ------------------------------------------------------------------------


@pytest.fixture
async def redirecting() -> AsyncIterator[tuple[str, list[str]]]:
    """A token endpoint that redirects to a second path on the same server, which records visits."""
    visits: list[str] = []

    async def moved(_: web.Request) -> web.Response:
        raise web.HTTPTemporaryRedirect("/elsewhere")

    async def elsewhere(request: web.Request) -> web.Response:
        visits.append(request.path)
        return web.json_response({"access_token": "stolen"})

    app = web.Application()
    app.router.add_post("/token", moved)
    app.router.add_post("/elsewhere", elsewhere)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield f"http://127.0.0.1:{port}/token", visits
    await runner.cleanup()


async def test_a_redirect_is_refused_and_credentials_are_not_replayed(
    redirecting, session: aiohttp.ClientSession
):
    url, visits = redirecting
    error = await refused(session, TokenEndpoint("Zuora", url, FAST), ZUORA_FORM)
    assert str(error) == "Zuora token endpoint failed (307)" and not error.retryable
    assert visits == []


# -- pure helpers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403])
def test_refusals_are_final(status: int):
    error = token_failure("Zuora", status)
    assert (str(error), error.retryable) == (
        f"Zuora token endpoint refused the credentials ({status})",
        False,
    )


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(429, True), (500, True), (502, True), (599, True), (404, False), (302, False), (418, False)],
)
def test_other_statuses_are_failures_retryable_only_when_passing(status: int, retryable: bool):
    error = token_failure("Salesforce", status)
    assert (str(error), error.retryable) == (f"Salesforce token endpoint failed ({status})", retryable)


def test_the_stale_credential_is_read_from_the_refused_request():
    assert stale_credential({"Authorization": "Bearer tok-1"}, "Bearer") == "tok-1"
    assert stale_credential({"authorization": "OAuth b64=="}, "OAuth") == "b64=="


def test_no_stale_credential_without_the_scheme_or_the_header():
    assert stale_credential({"Authorization": "Basic abc"}, "Bearer") is None
    assert stale_credential({"X-Other": "Bearer tok"}, "Bearer") is None
    assert stale_credential(None, "Bearer") is None


def test_without_a_ca_file_the_system_trust_store_is_used():
    assert ssl_context_for(None) is True


def test_a_ca_file_adds_to_the_verification(tmp_path: Path):
    context = ssl_context_for(make_ca(tmp_path))
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
    assert any(cert.get("subject") for cert in context.get_ca_certs())


def test_an_unreadable_ca_file_fails_loudly(tmp_path: Path):
    with pytest.raises(OSError):
        ssl_context_for(tmp_path / "missing.pem")
