"""Token fetching over a form POST, shared by the Zilliant and Zuora adapters.

Failures become :class:`bridge.errors.AuthError` whose message names the provider and the HTTP
status only: credentials, tokens and token response bodies never appear in a message or a log.

Example::

    endpoint = TokenEndpoint("Zuora", target.effective_token_url, target.timeouts)
    body = await post_token_form(session, endpoint, {"grant_type": "client_credentials", ...})
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from bridge import tracing
from bridge.decide import header
from bridge.errors import AuthError
from bridge.http import transport_failure
from bridge.policies import TimeoutSettings

_REFUSED = frozenset({400, 401, 403})


@dataclass(frozen=True, slots=True)
class TokenEndpoint:
    """Where to ask for a token. ``label`` names the provider in error messages."""

    label: str
    url: str
    timeouts: TimeoutSettings
    ssl: ssl.SSLContext | bool = True


def ssl_context_for(ca_file: Path | None) -> ssl.SSLContext | bool:
    """The system trust store plus the target's extra CA bundle, or ``True`` for the defaults."""
    if ca_file is None:
        return True
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=str(ca_file))
    return context


def token_failure(label: str, status: int) -> AuthError:
    """The AuthError for a non-200 answer: refusals are final, 429 and 5xx may pass."""
    if status in _REFUSED:
        return AuthError(f"{label} token endpoint refused the credentials ({status})", retryable=False)
    retryable = status == 429 or status >= 500
    return AuthError(f"{label} token endpoint failed ({status})", retryable=retryable)


@tracing.traced_token_fetch
async def post_token_form(
    session: aiohttp.ClientSession, endpoint: TokenEndpoint, form: Mapping[str, str]
) -> bytes:
    """POST ``form`` url-encoded and return the raw body of a 200 answer; raise AuthError otherwise."""
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
            status = response.status
            body = await response.read()
    except (aiohttp.ClientError, TimeoutError) as exc:
        failure = transport_failure(exc, endpoint.timeouts.total_s, f"{endpoint.label} token endpoint")
        raise AuthError(failure.message, retryable=True) from exc
    if status != 200:
        raise token_failure(endpoint.label, status)
    return body


def stale_credential(headers: Mapping[str, str] | None, scheme: str) -> str | None:
    """The credential after ``<scheme> `` in the Authorization header a refused request carried."""
    value = header(headers, "Authorization") if headers is not None else None
    prefix = f"{scheme} "
    return value[len(prefix) :] if value is not None and value.startswith(prefix) else None
