"""Token caching with single-flight refresh.

A thousand concurrent calls that find no valid token cause one token request: the first caller
starts the fetch, the rest await the same future. Tokens are refreshed ``skew_s`` before expiry.
Failures of the token endpoint are remembered for a short, growing backoff so that a broken
endpoint is not hammered.

Example::

    cache = TokenCache(fetch=my_fetch, skew_s=60)
    token = await cache.get()
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bridge.errors import AuthError


@dataclass(frozen=True, slots=True)
class Token:
    """An access credential and when it stops being valid."""

    value: str
    expires_at: float | None  # monotonic seconds; None: valid until refused


Clock = Callable[[], float]


class TokenCache:
    """Caches one token per target; see the module docstring for the refresh rules."""

    def __init__(
        self,
        fetch: Callable[[], Awaitable[Token]],
        *,
        skew_s: float = 60.0,
        failure_backoff_s: float = 1.0,
        max_failure_backoff_s: float = 30.0,
        clock: Clock = time.monotonic,
        on_refresh: Callable[[bool], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self._skew_s = skew_s
        self._failure_backoff_s = failure_backoff_s
        self._max_failure_backoff_s = max_failure_backoff_s
        self._clock = clock
        self._on_refresh = on_refresh
        self._token: Token | None = None
        self._refresh_at: float | None = None
        self._inflight: asyncio.Future[Token] | None = None
        self._failures = 0
        self._last_error: AuthError | None = None
        self._retry_at = 0.0

    def _fresh(self, token: Token | None) -> bool:
        if token is None:
            return False
        return self._refresh_at is None or self._clock() < self._refresh_at

    async def get(self, *, refresh: bool = False, stale: str | None = None) -> str:
        """A valid token. ``refresh`` discards the cached one unless it already changed from ``stale``."""
        if refresh and self._token is not None and (stale is None or self._token.value == stale):
            self._token = None
        if self._fresh(self._token):
            assert self._token is not None
            return self._token.value
        if self._inflight is None:
            if self._last_error is not None and self._clock() < self._retry_at:
                raise AuthError(self._last_error.message, retryable=self._last_error.retryable)
            self._inflight = asyncio.ensure_future(self._refresh())
        return (await asyncio.shield(self._inflight)).value

    async def _refresh(self) -> Token:
        try:
            token = await self._fetch()
        except AuthError as exc:
            self._failures += 1
            self._last_error = exc
            delay = min(self._max_failure_backoff_s, self._failure_backoff_s * 2 ** (self._failures - 1))
            self._retry_at = self._clock() + delay
            if self._on_refresh:
                self._on_refresh(False)
            raise
        finally:
            self._inflight = None
        self._failures = 0
        self._last_error = None
        self._token = token
        if token.expires_at is None:
            self._refresh_at = None
        else:  # a short-lived token is refreshed at half its life rather than never being fresh
            lifetime = token.expires_at - self._clock()
            self._refresh_at = token.expires_at - min(self._skew_s, max(lifetime, 0.0) / 2)
        if self._on_refresh:
            self._on_refresh(True)
        return token
