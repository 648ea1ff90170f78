"""Token fetching over a form POST and OAuth 2.0 token responses, for the adapters that need tokens.

Failures become :class:`bridge.errors.AuthError` whose message names the provider and the HTTP
status only: credentials, tokens and token response bodies never appear in a message or a log.

:class:`OAuthProvider` is the shell of an adapter that fetches tokens: it holds the token endpoint and
the :class:`~bridge.providers.tokens.TokenCache`, answers ``auth_headers`` (a refused call's stale
token causes one refresh) and asks its subclass only for what differs: the token URL, the form,
how to read the token response and how to present the token.

Example::

    endpoint = TokenEndpoint("Zuora", target.effective_token_url, target.timeouts)
    body = await post_token_form(session, endpoint, {"grant_type": "client_credentials", ...})
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from bridge.config.targets import TargetBase, TimeoutSettings
from bridge.errors import AuthError
from bridge.messages.commands import Command
from bridge.observability import tracing
from bridge.providers.base import HttpRequest, header_safe, json_or_none
from bridge.providers.tokens import Clock, Token, TokenCache
from bridge.providers.verdicts import Verdict, header

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


T = TypeVar("T", bound=TargetBase)


class OAuthProvider(Generic[T]):
    """Shell of a provider whose calls carry a token from a token endpoint (a form POST).

    Subclasses set ``kind``, ``label`` (the provider's name in messages) and ``scheme`` (the word
    before the token in ``Authorization``), and define ``build_request``, ``classify``,
    ``token_url``, ``token_form`` and ``parse_token``; ``token_headers`` and ``skew_s`` have
    defaults. ``ssl_context`` is the target's TLS context, loaded once by the caller for the target's
    calls and its token fetches alike.
    """

    kind: str
    label: str
    scheme: str = "Bearer"

    def __init__(
        self,
        name: str,
        target: T,
        session: aiohttp.ClientSession,
        *,
        on_token_refresh: Callable[[bool], None] | None = None,
        ssl_context: ssl.SSLContext | bool = True,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self._target = target
        self._session = session
        self._clock = clock
        self._endpoint = TokenEndpoint(self.label, self.token_url(target), target.timeouts, ssl_context)
        self._tokens = TokenCache(
            self._fetch_token, skew_s=self.skew_s(target), clock=clock, on_refresh=on_token_refresh
        )

    def build_request(self, command: Command) -> HttpRequest:
        raise NotImplementedError

    def classify(self, command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        raise NotImplementedError

    def token_url(self, target: T) -> str:
        raise NotImplementedError

    def token_form(self, target: T) -> dict[str, str]:
        """The form fields of a token request (the credentials: never logged)."""
        raise NotImplementedError

    def parse_token(self, body: bytes, started: float) -> Token:
        """The token in a 200 answer's ``body``; ``started``: when the request was sent (monotonic)."""
        raise NotImplementedError

    def skew_s(self, target: T) -> float:
        """How long before its expiry a token is replaced."""
        return 60.0

    def token_headers(self, token: str) -> dict[str, str]:
        return {"Authorization": f"{self.scheme} {token}"}

    async def auth_headers(
        self, *, refresh: bool = False, stale: Mapping[str, str] | None = None
    ) -> Mapping[str, str]:
        """``stale``: the headers a refused call carried, so concurrent 401s cause one refresh."""
        token = await self._tokens.get(refresh=refresh, stale=stale_credential(stale, self.scheme))
        return self.token_headers(token)

    async def aclose(self) -> None:
        return None

    async def _fetch_token(self) -> Token:
        started = self._clock()
        body = await post_token_form(self._session, self._endpoint, self.token_form(self._target))
        return self.parse_token(body, started)
