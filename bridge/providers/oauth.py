"""Token fetching over a form POST, shared by the Zilliant and Zuora adapters, plus the small
JSON helpers the token parsers and the response classifiers both need.

Failures become :class:`bridge.errors.AuthError` whose message names the provider and the HTTP
status only: credentials, tokens and token response bodies never appear in a message or a log.

Example::

    endpoint = TokenEndpoint("Zuora", target.effective_token_url, target.timeouts)
    body = await post_token_form(session, endpoint, {"grant_type": "client_credentials", ...})
    fields = json_or_none(body)
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bridge.errors import AuthError
from bridge.providers.base import header
from bridge.settings import TimeoutSettings

_REFUSED = frozenset({400, 401, 403})
_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,8192}")


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
        message = f"{endpoint.label} token endpoint unreachable ({type(exc).__name__})"
        raise AuthError(message, retryable=True) from exc
    if status != 200:
        raise token_failure(endpoint.label, status)
    return body


def json_or_none(body: bytes) -> Any:
    """The decoded JSON value, or None when the body is empty or not JSON."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def reference_of(value: Any) -> str | None:
    """A provider id (string or integer) as a short, printable reference; None for anything else."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and _REFERENCE.fullmatch(value.strip()):
        return value.strip()
    return None


def header_safe(value: str) -> bool:
    """True when ``value`` can travel in an HTTP header unchanged (printable ASCII, no spaces)."""
    return _HEADER_SAFE.fullmatch(value) is not None


def stale_credential(headers: Mapping[str, str] | None, scheme: str) -> str | None:
    """The credential after ``<scheme> `` in the Authorization header a refused request carried."""
    value = header(headers, "Authorization") if headers is not None else None
    prefix = f"{scheme} "
    return value[len(prefix) :] if value is not None and value.startswith(prefix) else None


def clip(text: str, limit: int = 200) -> str:
    """Shorten provider text for a one-line human message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
