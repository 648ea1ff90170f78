"""Shared building blocks of the sandbox: issued tokens, the request log, the idempotency store
(used by Zuora, generic here so its decision stays pure and testable) and JSON helpers.

Provider modules own their own state objects; this module holds only what several of them use, and
imports none of them (the composition lives in :mod:`bridge.sandbox.server`).
"""

from __future__ import annotations

import secrets
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import orjson
from aiohttp import web

from bridge.sandbox.config import Clock

JsonObject = dict[str, Any]


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A bearer token the sandbox handed out; ``tenant`` is the client that asked for it."""

    value: str
    tenant: str
    expires_at: float


class TokenStore:
    """Tokens issued by one token endpoint, valid until they expire or are revoked."""

    def __init__(self, clock: Clock, prefix: str = "") -> None:
        self._clock = clock
        self._prefix = prefix
        self._tokens: dict[str, IssuedToken] = {}

    def issue(self, tenant: str, ttl_s: float) -> IssuedToken:
        token = IssuedToken(self._prefix + secrets.token_urlsafe(24), tenant, self._clock() + ttl_s)
        self._tokens[token.value] = token
        return token

    def lookup(self, value: str) -> IssuedToken | None:
        """The token if it was issued here and is still valid, else None (expired ones are dropped)."""
        token = self._tokens.get(value)
        if token is None:
            return None
        if self._clock() >= token.expires_at:
            del self._tokens[value]
            return None
        return token

    def revoke_all(self) -> None:
        self._tokens.clear()


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    provider: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    status: int | None
    """None when the sandbox dropped the connection without answering."""
    concurrent: int = 1
    """Requests to this provider in progress when this one arrived, itself included."""
    raw_path: str = ""
    """The path exactly as it arrived on the wire, percent-encoding and all (``path`` is decoded)."""
    arrived_at: float = 0.0
    """Unix time (the real clock) when the request arrived."""

    def to_json(self) -> JsonObject:
        return {
            "provider": self.provider,
            "method": self.method,
            "path": self.path,
            "raw_path": self.raw_path,
            "query": self.query,
            "headers": self.headers,
            "concurrent": self.concurrent,
            "arrived_at": self.arrived_at,
            "body": self.body,
            "status": self.status,
        }


class RequestLog:
    """The most recent ``limit`` provider requests, oldest first."""

    def __init__(self, limit: int) -> None:
        self._entries: deque[RecordedRequest] = deque(maxlen=limit)
        self.in_progress: dict[str, int] = {}

    def add(self, entry: RecordedRequest) -> None:
        self._entries.append(entry)

    def entries(self, provider: str | None = None) -> list[RecordedRequest]:
        return [e for e in self._entries if provider is None or e.provider == provider]

    def clear(self) -> None:
        self._entries.clear()


class IdempotencyVerdict(StrEnum):
    PROCEED = "proceed"  # first use of the key (or the old use expired): run and store the result
    REPLAY = "replay"  # answer with the stored status, headers and body
    IN_FLIGHT = "in_flight"  # the first request with this key has not finished: 409
    MISMATCH = "mismatch"  # the key was used with another URL or method: 422


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @classmethod
    def of(cls, response: web.StreamResponse) -> StoredResponse:
        body = response.body if isinstance(response, web.Response) else None
        kept = tuple((k, v) for k, v in response.headers.items() if k.lower() not in _UNSTORED_HEADERS)
        return cls(response.status, kept, body if isinstance(body, bytes) else b"")

    def to_response(self) -> web.Response:
        return web.Response(status=self.status, body=self.body, headers=list(self.headers))


_UNSTORED_HEADERS = frozenset({"content-length", "date", "server", "transfer-encoding"})


@dataclass(slots=True)
class KeyUse:
    method: str
    url: str
    created_at: float
    response: StoredResponse | None = None
    """None while the first request with the key is still running."""


def idempotency_verdict(
    use: KeyUse | None, method: str, url: str, now: float, ttl_s: float
) -> IdempotencyVerdict:
    """Pure: what a request with an already-seen (or unseen) key gets."""
    if use is None or now >= use.created_at + ttl_s:
        return IdempotencyVerdict.PROCEED
    if (use.method, use.url) != (method, url):
        return IdempotencyVerdict.MISMATCH
    if use.response is None:
        return IdempotencyVerdict.IN_FLIGHT
    return IdempotencyVerdict.REPLAY


class IdempotencyStore:
    """Results of keyed requests per (tenant, key), replayed for ``ttl_s`` after first use."""

    MAX_KEY = 255

    def __init__(self, clock: Clock, ttl_s: float) -> None:
        self._clock = clock
        self._ttl_s = ttl_s
        self._uses: dict[tuple[str, str], KeyUse] = {}
        self._prune_at = 1024

    def begin(
        self, tenant: str, key: str, method: str, url: str
    ) -> tuple[IdempotencyVerdict, StoredResponse | None]:
        """The verdict for a request; on PROCEED the key is recorded as in flight."""
        now = self._clock()
        use = self._uses.get((tenant, key))
        verdict = idempotency_verdict(use, method, url, now, self._ttl_s)
        if verdict is IdempotencyVerdict.PROCEED:
            self._prune(now)
            self._uses[(tenant, key)] = KeyUse(method, url, now)
        return verdict, (use.response if use and verdict is IdempotencyVerdict.REPLAY else None)

    def complete(self, tenant: str, key: str, response: web.StreamResponse) -> None:
        use = self._uses.get((tenant, key))
        if use is not None:
            use.response = StoredResponse.of(response)

    def abandon(self, tenant: str, key: str) -> None:
        """Forget an in-flight key whose request never finished (the handler was cancelled)."""
        self._uses.pop((tenant, key), None)

    def clear(self) -> None:
        self._uses.clear()

    def _prune(self, now: float) -> None:
        if len(self._uses) < self._prune_at:
            return
        expired = [k for k, u in self._uses.items() if now >= u.created_at + self._ttl_s]
        for k in expired:
            del self._uses[k]
        self._prune_at = max(1024, 2 * len(self._uses))


def json_response(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        body=orjson.dumps(body), status=status, content_type="application/json", headers=headers
    )


def empty_response(status: int) -> web.Response:
    """A response with no body at all (workfloo's 401/403, 8x8's successful PATCH)."""
    return web.Response(status=status)


def parse_json(raw: bytes) -> Any:
    """The decoded JSON value, or raises ValueError (orjson.JSONDecodeError is one)."""
    return orjson.loads(raw)


async def read_json_object(request: web.Request, *, empty_ok: bool = False) -> JsonObject | None:
    """The body as a JSON object; None when it is not one. An empty body is ``{}`` if ``empty_ok``."""
    raw = await request.read()
    if not raw.strip():
        return {} if empty_ok else None
    try:
        value = parse_json(raw)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def bearer(request: web.Request, scheme: str = "Bearer") -> str | None:
    """The credential after ``<scheme> `` in Authorization (scheme case-insensitive), else None."""
    value = request.headers.get("Authorization", "")
    name, _, credential = value.partition(" ")
    if name.lower() != scheme.lower() or not credential.strip():
        return None
    return credential.strip()


def utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, UTC)


def iso_millis(epoch_s: float) -> str:
    """``2024-05-01T12:00:00.123Z``."""
    return utc(epoch_s).isoformat(timespec="milliseconds").replace("+00:00", "Z")
