"""The provider port and the pure pieces every provider shares.

A provider turns a validated command into an :class:`HttpRequest` (pure), supplies auth headers
(may call a token endpoint), and turns the HTTP response into a :class:`Verdict` (pure). Retries,
timeouts, metrics and outcome publishing live once, in :mod:`bridge.executor`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Generic, Protocol, TypeVar
from urllib.parse import quote

import aiohttp
from pydantic import SecretStr
from yarl import URL

from bridge.commands import Command
from bridge.outcomes import ErrorKind, ProviderKind, Status


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A provider call, without credentials. ``path`` is already URL-encoded and starts with '/'."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    query: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What an HTTP response means for the command."""

    status: Status
    reference: str | None = None
    error_kind: ErrorKind | None = None
    message: str = ""
    retryable: bool = False
    refresh_auth: bool = False
    retry_after_s: float | None = None

    @property
    def is_success(self) -> bool:
        return self.status in (Status.QUEUED, Status.APPLIED)


class Provider(Protocol):
    """One configured target of one provider kind."""

    kind: ProviderKind

    def build_request(self, command: Command) -> HttpRequest:
        """Pure. Raises :class:`bridge.errors.CommandRejected` when the command cannot be sent."""

    async def auth_headers(
        self, *, refresh: bool = False, stale: Mapping[str, str] | None = None
    ) -> Mapping[str, str]:
        """Headers that authenticate a call; ``refresh`` forces a new token after a 401.

        ``stale`` are the headers the refused call carried: when another caller has already
        replaced that token, no second refresh happens. Raises :class:`bridge.errors.AuthError`
        when credentials are refused."""

    def classify(self, command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        """Pure. Maps an HTTP response to a verdict."""

    async def aclose(self) -> None:
        """Release resources (the shared HTTP session is closed by its owner, not here)."""


class _KeyedTarget(Protocol):
    @property
    def api_key(self) -> SecretStr: ...


TargetT = TypeVar("TargetT", bound=_KeyedTarget)


class StaticKeyProvider(Generic[TargetT]):
    """Shell of a provider authenticated by a fixed API key: a refresh returns the same key.

    Subclasses set ``kind`` and define ``build_request``, ``classify`` and ``key_headers``.
    """

    kind: ProviderKind

    def __init__(
        self,
        name: str,
        target: TargetT,
        session: aiohttp.ClientSession,
        *,
        on_token_refresh: Callable[[bool], None] | None = None,
    ) -> None:
        self.name = name
        self._target = target

    def key_headers(self, key: str) -> Mapping[str, str]:
        raise NotImplementedError

    async def auth_headers(
        self, *, refresh: bool = False, stale: Mapping[str, str] | None = None
    ) -> Mapping[str, str]:
        return self.key_headers(self._target.api_key.get_secret_value())

    async def aclose(self) -> None:
        return None


def segment(value: str) -> str:
    """URL-encode one path segment: '/' and everything else reserved is escaped."""
    return quote(value, safe="")


def wire_url(base_url: str, path: str) -> URL:
    """The URL to send: ``path`` exactly as the builder encoded it (a plain ``str`` or ``URL(...)``
    would be re-normalised by yarl, decoding ``%3B`` back to ``;``); the configured base as yarl reads it."""
    return URL(str(URL(base_url)) + path, encoded=True)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a Retry-After header in either delta-seconds or HTTP-date form."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup over a plain mapping."""
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def classify_common(status: int, headers: Mapping[str, str]) -> Verdict | None:
    """The part of every provider's classification that HTTP semantics decide.

    Returns None for statuses the provider module must decide itself (2xx, 409, most 4xx).
    """
    if status == 401:
        return Verdict(
            Status.ERROR, error_kind=ErrorKind.AUTH, message="credentials refused (401)", refresh_auth=True
        )
    if status == 403:
        return Verdict(Status.ERROR, error_kind=ErrorKind.AUTH, message="access forbidden (403)")
    if status == 429:
        return Verdict(
            Status.ERROR,
            error_kind=ErrorKind.RATE_LIMITED,
            message="rate limited (429)",
            retryable=True,
            retry_after_s=parse_retry_after(header(headers, "Retry-After")),
        )
    if status >= 500:
        retry_after = parse_retry_after(header(headers, "Retry-After")) if status == 503 else None
        return Verdict(
            Status.ERROR,
            error_kind=ErrorKind.PROVIDER_ERROR,
            message=f"provider failed ({status})",
            retryable=True,
            retry_after_s=retry_after,
        )
    if status in (400, 404, 406, 422):
        return Verdict(
            Status.REJECTED,
            error_kind=ErrorKind.PROVIDER_REJECTED,
            message=f"provider rejected the command ({status})",
        )
    return None


def unexpected(status: int) -> Verdict:
    """A status the contract does not mention: final, reported as an error."""
    return Verdict(
        Status.ERROR, error_kind=ErrorKind.PROVIDER_ERROR, message=f"unexpected provider status {status}"
    )


ClientSession = aiohttp.ClientSession
