"""The HTTP edge: one provider call over aiohttp, and the one mapping from transport errors to kinds.

The executor talks to a :class:`Transport`; tests give it :class:`bridge.testing.FakeTransport`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from ssl import SSLContext
from typing import TYPE_CHECKING, Protocol

import aiohttp
from yarl import URL

from bridge.errors import AuthError, RetryableCallError
from bridge.messages.outcomes import ErrorKind

if TYPE_CHECKING:
    from bridge.config.targets import TimeoutSettings

MAX_RESPONSE_BYTES = 1_048_576


class FormEndpoint(Protocol):
    """Where :func:`post_form` posts (:class:`bridge.providers.oauth.TokenEndpoint`); ``label`` names the
    provider in error messages."""

    @property
    def label(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def timeouts(self) -> TimeoutSettings: ...

    @property
    def ssl(self) -> SSLContext | bool: ...


@dataclass(frozen=True, slots=True)
class Call:
    """Everything one HTTP call needs; ``url`` is the configured base URL plus the encoded path."""

    method: str
    url: URL
    headers: Mapping[str, str]
    body: bytes | None
    query: Mapping[str, str]
    ssl: SSLContext | bool
    timeout: aiohttp.ClientTimeout


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Transport(Protocol):
    async def __call__(self, call: Call) -> Response:
        """Send ``call``; raise :class:`RetryableCallError` when no usable response arrives."""


class AiohttpTransport:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self._session = session

    async def __call__(self, call: Call) -> Response:
        try:
            async with self._session.request(
                call.method,
                call.url,
                params=dict(call.query) or None,
                data=call.body,
                headers=call.headers,
                ssl=call.ssl,
                timeout=call.timeout,
                allow_redirects=False,
            ) as resp:
                body = await resp.content.read(MAX_RESPONSE_BYTES)
                return Response(resp.status, dict(resp.headers), body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise transport_failure(exc, call.timeout.total) from exc


async def post_form(
    session: aiohttp.ClientSession, endpoint: FormEndpoint, form: Mapping[str, str]
) -> tuple[int, bytes]:
    """POST ``form`` url-encoded to a token endpoint: (status, body); AuthError when no answer came."""
    timeout = aiohttp.ClientTimeout(total=endpoint.timeouts.total_s, sock_connect=endpoint.timeouts.connect_s)
    try:
        async with session.post(
            endpoint.url,
            data=dict(form),
            headers={"Accept": "application/json"},
            timeout=timeout,
            ssl=endpoint.ssl,
            allow_redirects=False,  # never replay credentials to another host
            raise_for_status=False,
        ) as response:
            return response.status, await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        failure = transport_failure(exc, endpoint.timeouts.total_s, f"{endpoint.label} token endpoint")
        raise AuthError(failure.message, retryable=True) from exc


def wire_url(base_url: str, path: str) -> URL:
    """The URL to send: ``path`` exactly as the builder encoded it (a plain ``str`` or ``URL(...)``
    would be re-normalised by yarl, decoding ``%3B`` back to ``;``); the configured base as yarl reads it."""
    return URL(_normalised(base_url) + path, encoded=True)


@functools.lru_cache(maxsize=256)  # a handful of configured bases, parsed once instead of per call
def _normalised(base_url: str) -> str:
    return str(URL(base_url))


def transport_failure(
    exc: aiohttp.ClientError | TimeoutError, timeout_s: float | None, who: str = "provider"
) -> RetryableCallError:
    """What a call that got no usable response means, for provider calls and token fetches alike."""
    # no connection was made (refused, no route, DNS, TLS handshake, connect timeout): nothing was sent
    sent = not isinstance(exc, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError)
    if isinstance(exc, TimeoutError):
        return RetryableCallError(
            ErrorKind.TIMEOUT, f"{who} unreachable in time: no answer within {timeout_s or 0:g}s", sent=sent
        )
    if isinstance(exc, aiohttp.ClientPayloadError):
        return RetryableCallError(ErrorKind.PROVIDER_ERROR, f"{who} cut its response off")
    return RetryableCallError(ErrorKind.UNREACHABLE, f"{who} unreachable ({type(exc).__name__})", sent=sent)
