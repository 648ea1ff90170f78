"""Fault injection: the admin-facing model, the pure choice of which fault applies, and middlewares.

A fault entry is set per provider (or ``*`` for all) through the admin API; the most specific entry
applies. Per request, one action is chosen in this precedence: ``drop_next``, ``timeout_next``,
``rate_limit_next``, ``fail_next``, then the random ``error_rate``. Latency applies to every
request. Failures answer before the provider runs (they emulate the infrastructure in front of it,
so Zuora's idempotency store never records them); latency and ``timeout_next`` delays are served
by :func:`delay_middleware`, *inside* the provider's processing window, so a Zuora idempotency key
is in flight while the delay runs.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any, Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bridge.sandbox.catalog import fault_keys, provider_of
from bridge.sandbox.state import json_response

PROVIDERS = fault_keys()
ALL = "*"
DELAY_KEY = web.RequestKey("sandbox_fault_delay_s", float)
COUNTERS = ("drop_next", "timeout_next", "rate_limit_next", "fail_next")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _delta_or_date(value: str | None) -> str | None:
    if value is not None and not value.isdigit():
        parsedate_to_datetime(value)  # raises ValueError on anything else
    return value


class FailNext(_Model):
    count: int = Field(ge=0)
    status: int = Field(default=500, ge=400, le=599)
    retry_after: str | None = None
    """Sent as ``Retry-After`` with the error when set (e.g. a 503 during maintenance)."""

    _retry_after = field_validator("retry_after")(_delta_or_date)


class RateLimitNext(_Model):
    count: int = Field(ge=0)
    retry_after: str = "1"
    """Delta-seconds (``"2"``) or an HTTP-date, sent verbatim as ``Retry-After``."""

    _retry_after = field_validator("retry_after")(_delta_or_date)


class TimeoutNext(_Model):
    count: int = Field(ge=0)
    delay_s: float = Field(default=30.0, ge=0)


class DropNext(_Model):
    count: int = Field(ge=0)


class FaultSpec(_Model):
    """The body of ``PUT /_sandbox/faults/{provider}``; it replaces the provider's previous entry."""

    latency_ms: float = Field(default=0.0, ge=0)
    latency_distribution: Literal["fixed", "uniform", "exponential"] = "fixed"
    error_rate: float = Field(default=0.0, ge=0, le=1)
    error_status: int = Field(default=503, ge=400, le=599)
    fail_next: FailNext | None = None
    rate_limit_next: RateLimitNext | None = None
    timeout_next: TimeoutNext | None = None
    drop_next: DropNext | None = None
    methods: list[Literal["GET", "POST", "PUT", "PATCH"]] | None = None
    """Only requests with these methods are faulted (``["GET"]``: status reads only); None: all."""

    def counts(self) -> dict[str, int]:
        return {name: getattr(self, name).count for name in COUNTERS if getattr(self, name) is not None}


class FaultKind(StrEnum):
    FORWARD = "forward"  # let the provider answer (possibly after a delay)
    ERROR = "error"  # answer with an injected error status
    RATE_LIMIT = "rate_limit"  # answer 429 with Retry-After and ratelimit-* headers
    DROP = "drop"  # close the connection without an answer


@dataclass(frozen=True, slots=True)
class FaultAction:
    kind: FaultKind = FaultKind.FORWARD
    delay_s: float = 0.0
    status: int | None = None
    retry_after: str | None = None
    consumed: str | None = None
    """The ``*_next`` counter this action used up, if any."""


def sample_latency_s(spec: FaultSpec, rng: random.Random) -> float:
    mean_s = spec.latency_ms / 1000.0
    if mean_s <= 0:
        return 0.0
    if spec.latency_distribution == "uniform":
        return rng.uniform(0.0, 2.0 * mean_s)
    if spec.latency_distribution == "exponential":
        return rng.expovariate(1.0 / mean_s)
    return mean_s


def choose_fault(spec: FaultSpec, remaining: dict[str, int], latency_s: float, roll: float) -> FaultAction:
    """Pure: the action for one request given the counters left and a uniform roll in [0, 1)."""
    if remaining.get("drop_next", 0) > 0:
        return FaultAction(FaultKind.DROP, latency_s, consumed="drop_next")
    if spec.timeout_next and remaining.get("timeout_next", 0) > 0:
        return FaultAction(delay_s=latency_s + spec.timeout_next.delay_s, consumed="timeout_next")
    if spec.rate_limit_next and remaining.get("rate_limit_next", 0) > 0:
        retry_after = spec.rate_limit_next.retry_after
        return FaultAction(FaultKind.RATE_LIMIT, latency_s, 429, retry_after, "rate_limit_next")
    if spec.fail_next and remaining.get("fail_next", 0) > 0:
        fail = spec.fail_next
        return FaultAction(FaultKind.ERROR, latency_s, fail.status, fail.retry_after, "fail_next")
    if roll < spec.error_rate:
        return FaultAction(FaultKind.ERROR, latency_s, spec.error_status)
    return FaultAction(delay_s=latency_s)


def reset_seconds(retry_after: str, now: datetime) -> int:
    """Seconds until a Retry-After value (delta-seconds or HTTP-date) elapses, for ratelimit-reset."""
    if retry_after.isdigit():
        return int(retry_after)
    when = parsedate_to_datetime(retry_after)
    return max(0, math.ceil((when - now).total_seconds()))


@dataclass(slots=True)
class FaultEntry:
    spec: FaultSpec
    remaining: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {**self.spec.model_dump(exclude_defaults=True), "remaining": dict(self.remaining)}


class FaultBook:
    """The fault entries currently set, by provider name or ``*``."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._entries: dict[str, FaultEntry] = {}

    def put(self, provider: str, spec: FaultSpec) -> FaultEntry:
        entry = FaultEntry(spec, spec.counts())
        self._entries[provider] = entry
        return entry

    def remove(self, provider: str) -> None:
        self._entries.pop(provider, None)

    def clear(self) -> None:
        self._entries.clear()

    def snapshot(self) -> dict[str, Any]:
        return {name: entry.to_json() for name, entry in self._entries.items()}

    def take(self, provider: str, method: str = "GET") -> FaultAction:
        """Choose the action for one request to ``provider`` and use up its counter."""
        entry = self._entries.get(provider) or self._entries.get(ALL)
        if entry is None or (entry.spec.methods is not None and method not in entry.spec.methods):
            return FaultAction()
        latency_s = sample_latency_s(entry.spec, self._rng)
        action = choose_fault(entry.spec, entry.remaining, latency_s, self._rng.random())
        if action.consumed:
            entry.remaining[action.consumed] -= 1
        return action


def fault_response(action: FaultAction, now: datetime) -> web.Response:
    status = action.status or 503
    body = {"error": "sandbox_fault", "message": f"injected {action.kind.value}", "status": status}
    if action.retry_after is None:
        return json_response(body, status)
    headers = {"Retry-After": action.retry_after}
    if action.kind is FaultKind.RATE_LIMIT:
        headers["ratelimit-limit"] = "2500, 2500;w=60"
        headers["ratelimit-remaining"] = "0"
        headers["ratelimit-reset"] = str(reset_seconds(action.retry_after, now))
    return json_response(body, status, headers)


def fault_middleware(book: FaultBook) -> Middleware:
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        provider = provider_of(request.path)
        if provider is None:
            return await handler(request)
        action = book.take(provider, request.method)
        if action.kind is FaultKind.FORWARD:
            request[DELAY_KEY] = action.delay_s
            return await handler(request)
        await asyncio.sleep(action.delay_s)
        if action.kind is FaultKind.DROP:
            if request.transport is not None:
                request.transport.close()
            # Nothing reaches the client: writing this response fails quietly on the closed socket.
            return web.Response(status=499)
        return fault_response(action, datetime.now(UTC))

    return middleware


@web.middleware
async def delay_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Serve the latency chosen by :func:`fault_middleware` right before the provider runs."""
    delay_s = request.get(DELAY_KEY, 0.0)
    if delay_s > 0:
        await asyncio.sleep(delay_s)
    return await handler(request)
