"""The provider port and the pure pieces every provider shares.

A provider turns a validated command into an :class:`HttpRequest` (pure), supplies auth headers
(may call a token endpoint), and turns the HTTP response into a :class:`Verdict` (pure). Retries,
timeouts, metrics and outcome publishing live once, in :mod:`bridge.pipeline.executor`.
"""

from __future__ import annotations

import base64
import re
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar
from urllib.parse import quote

import orjson
from pydantic import SecretStr

from bridge.messages.commands import Command
from bridge.providers.verdicts import Verdict

if TYPE_CHECKING:
    import aiohttp

_REFERENCE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
_HEADER_SAFE = re.compile(r"[\x21-\x7e]{1,8192}")


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """A provider call, without credentials. ``path`` is already URL-encoded and starts with '/'.

    ``route`` is the path template (``/workflows/{workflow_id}/run``): what traces show instead of
    the path with the command's ids in it."""

    method: str
    path: str
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None
    query: Mapping[str, str] = field(default_factory=dict)
    route: str = ""


class Provider(Protocol):
    """One configured target of one provider kind."""

    kind: str

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

    kind: str

    def __init__(
        self,
        name: str,
        target: TargetT,
        session: aiohttp.ClientSession,
        *,
        on_token_refresh: Callable[[bool], None] | None = None,
        ssl_context: ssl.SSLContext | bool = True,
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


class _BasicTarget(Protocol):
    @property
    def username(self) -> SecretStr: ...
    @property
    def password(self) -> SecretStr: ...


BasicT = TypeVar("BasicT", bound=_BasicTarget)


class BasicAuthProvider(StaticKeyProvider[Any], Generic[BasicT]):
    """Shell of a provider authenticated by HTTP basic auth (RFC 7617) from the target's ``username``
    and ``password``: a refresh sends the same credentials."""

    def key_headers(self, key: str) -> Mapping[str, str]:
        return {"Authorization": f"Basic {key}"}

    async def auth_headers(
        self, *, refresh: bool = False, stale: Mapping[str, str] | None = None
    ) -> Mapping[str, str]:
        pair = f"{self._target.username.get_secret_value()}:{self._target.password.get_secret_value()}"
        return self.key_headers(base64.b64encode(pair.encode()).decode("ascii"))


def segment(value: str) -> str:
    """URL-encode one path segment: '/' and everything else reserved is escaped."""
    return quote(value, safe="")


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


def clip(text: str, limit: int = 200) -> str:
    """Shorten provider text for a one-line human message."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
