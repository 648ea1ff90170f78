"""Token fetching over a form POST and OAuth 2.0 token responses, for the adapters that need tokens.

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
from typing import TYPE_CHECKING, Any

from bridge.config.targets import TimeoutSettings
from bridge.errors import AuthError
from bridge.observability import tracing
from bridge.providers.base import header_safe, json_or_none
from bridge.providers.tokens import Token
from bridge.providers.verdicts import header

if TYPE_CHECKING:
    import aiohttp

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
    # The HTTP edge loads only when a token is fetched: the provider modules, which the catalog
    # imports to parse commands, stay free of aiohttp (tests/unit/test_layout.py).
    from bridge.http import post_form

    status, body = await post_form(session, endpoint, form)
    if status != 200:
        raise token_failure(endpoint.label, status)
    return body


def bearer_token(body: bytes, started: float, label: str, default_lifetime_s: float) -> Token:
    """An OAuth 2.0 token response's ``access_token``, expiring ``expires_in`` seconds after ``started``
    (``default_lifetime_s`` when the response has none)."""
    fields = json_or_none(body)
    access: Any = fields.get("access_token") if isinstance(fields, dict) else None
    if not isinstance(access, str) or not header_safe(access):
        raise AuthError(f"{label} token endpoint returned no usable access_token", retryable=True)
    expires_in: Any = fields.get("expires_in") if isinstance(fields, dict) else None
    valid = isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in > 0
    return Token(access, started + (float(expires_in) if valid else default_lifetime_s))


def stale_credential(headers: Mapping[str, str] | None, scheme: str) -> str | None:
    """The credential after ``<scheme> `` in the Authorization header a refused request carried."""
    value = header(headers, "Authorization") if headers is not None else None
    prefix = f"{scheme} "
    return value[len(prefix) :] if value is not None and value.startswith(prefix) else None
