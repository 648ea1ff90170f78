"""Execute one validated command against its target: rate limit, circuit breaker, auth, HTTP call,
classification and retries. Returns a :class:`CallResult`; never raises for provider trouble.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from ssl import SSLContext

import aiohttp

from bridge.commands import Command, operation_of
from bridge.errors import AuthError, CommandRejected, ProviderCallError, RetryableCallError
from bridge.guards import CircuitBreaker, TokenBucket
from bridge.metrics import Metrics, status_class
from bridge.outcomes import ErrorKind, OutcomeError, Status
from bridge.providers.base import HttpRequest, Provider, Verdict
from bridge.redact import Redactor
from bridge.retry import RetryState, retry_delay
from bridge.settings import TargetBase

MAX_RESPONSE_BYTES = 1_048_576
_CIRCUIT_FAILURES = frozenset({ErrorKind.PROVIDER_ERROR, ErrorKind.TIMEOUT, ErrorKind.UNREACHABLE})


@dataclass(frozen=True, slots=True)
class CallResult:
    status: Status
    reference: str | None = None
    http_status: int | None = None
    attempts: int = 0
    error: OutcomeError | None = None


@dataclass(slots=True)
class TargetRuntime:
    """A configured target with its provider adapter and its guards."""

    name: str
    settings: TargetBase
    provider: Provider
    breaker: CircuitBreaker
    bucket: TokenBucket
    ssl: SSLContext | bool
    timeout: aiohttp.ClientTimeout | None = None

    def __post_init__(self) -> None:
        if self.timeout is None:
            t = self.settings.timeouts
            self.timeout = aiohttp.ClientTimeout(total=t.total_s, sock_connect=t.connect_s)


@dataclass(frozen=True, slots=True)
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class Executor:
    def __init__(
        self,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        redactor: Redactor,
        max_error_body_bytes: int,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._session = session
        self._metrics = metrics
        self._redactor = redactor
        self._max_error_body = max_error_body_bytes
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock

    async def execute(self, runtime: TargetRuntime, command: Command) -> CallResult:
        try:
            request = runtime.provider.build_request(command)
        except CommandRejected as exc:
            return CallResult(
                Status.REJECTED, error=OutcomeError(kind=exc.kind, message=exc.message, retryable=False)
            )
        started = self._clock()
        calls = 0  # what the outcome reports
        budgeted = 0  # what the retry policy counts: the 401 refresh retry is free
        refreshed = False
        sent_auth: Mapping[str, str] | None = None
        while True:
            blocked = await self._pass_guards(runtime)
            if blocked is not None:
                return CallResult(Status.ERROR, attempts=calls, error=blocked)
            calls += 1
            budgeted += 1
            verdict, response, sent_auth = await self._attempt(
                runtime, command, request, refresh=refreshed, stale=sent_auth
            )
            self._observe_circuit(runtime, verdict)
            if verdict.refresh_auth and not refreshed:
                refreshed = True
                budgeted -= 1
                continue
            state = RetryState(attempts=budgeted, elapsed_s=self._clock() - started)
            delay = retry_delay(verdict, state, runtime.settings.retry, runtime.settings.conflict, self._rng)
            if delay is None:
                return self._result(verdict, response, calls)
            self._metrics.retries.labels(runtime.name, (verdict.error_kind or ErrorKind.INTERNAL).value).inc()
            await self._sleep(delay)

    async def read(self, runtime: TargetRuntime, request: HttpRequest) -> tuple[int, bytes] | None:
        """One read outside the retry policy (the ledger's status check); None when it failed."""
        try:
            auth = await runtime.provider.auth_headers()
            response = await self._send(runtime, request, auth)
        except (AuthError, ProviderCallError):
            return None
        return response.status, response.body

    async def _pass_guards(self, runtime: TargetRuntime) -> OutcomeError | None:
        wait = runtime.bucket.reserve()
        if wait > 0:
            await self._sleep(wait)
        breaker = runtime.breaker
        wait = breaker.wait_s()
        if wait == 0:
            return None
        if runtime.settings.circuit.mode == "fail_fast" or breaker.held >= runtime.settings.circuit.max_held:
            return OutcomeError(
                kind=ErrorKind.CIRCUIT_OPEN,
                retryable=True,
                message=f"circuit for target '{runtime.name}' is open; not calling it",
            )
        breaker.held += 1
        try:
            while wait > 0:
                await self._sleep(wait)
                wait = breaker.wait_s()
        finally:
            breaker.held -= 1
        return None

    def _observe_circuit(self, runtime: TargetRuntime, verdict: Verdict) -> None:
        if verdict.error_kind in _CIRCUIT_FAILURES:
            runtime.breaker.record_failure()
        elif verdict.error_kind is ErrorKind.RATE_LIMITED:
            runtime.breaker.release_probe()
        else:
            runtime.breaker.record_success()

    async def _attempt(
        self,
        runtime: TargetRuntime,
        command: Command,
        request: HttpRequest,
        *,
        refresh: bool,
        stale: Mapping[str, str] | None,
    ) -> tuple[Verdict, _Response | None, Mapping[str, str] | None]:
        try:
            auth = await runtime.provider.auth_headers(refresh=refresh, stale=stale)
        except AuthError as exc:
            verdict = Verdict(
                Status.ERROR, error_kind=ErrorKind.AUTH, message=exc.message, retryable=exc.retryable
            )
            return verdict, None, None
        operation = operation_of(command).value
        started = time.perf_counter()
        response: _Response | None = None
        try:
            response = await self._send(runtime, request, auth)
        except ProviderCallError as exc:
            verdict = Verdict(Status.ERROR, error_kind=exc.kind, message=exc.message, retryable=exc.retryable)
        else:
            verdict = runtime.provider.classify(command, response.status, response.headers, response.body)
        self._metrics.child(
            self._metrics.provider_request_duration,
            runtime.name,
            operation,
            status_class(response.status if response else None),
        ).observe(time.perf_counter() - started)
        return verdict, response, auth

    async def _send(self, runtime: TargetRuntime, request: HttpRequest, auth: Mapping[str, str]) -> _Response:
        timeouts = runtime.settings.timeouts
        url = runtime.settings.base_url + request.path
        try:
            async with self._session.request(
                request.method,
                url,
                params=dict(request.query) or None,
                data=request.body,
                headers={**request.headers, **auth},
                ssl=runtime.ssl,
                timeout=runtime.timeout,
                allow_redirects=False,
            ) as resp:
                body = await resp.content.read(MAX_RESPONSE_BYTES)
                return _Response(resp.status, dict(resp.headers), body)
        except TimeoutError as exc:
            raise RetryableCallError(ErrorKind.TIMEOUT, f"no response within {timeouts.total_s:g}s") from exc
        except aiohttp.ClientPayloadError as exc:
            raise RetryableCallError(ErrorKind.PROVIDER_ERROR, "response body was cut off") from exc
        except aiohttp.ClientError as exc:
            raise RetryableCallError(
                ErrorKind.UNREACHABLE, f"provider unreachable ({type(exc).__name__})"
            ) from exc

    def _result(self, verdict: Verdict, response: _Response | None, attempts: int) -> CallResult:
        http_status = response.status if response else None
        if verdict.is_success:
            return CallResult(verdict.status, verdict.reference, http_status, attempts)
        body = self._redactor.body_excerpt(response.body, self._max_error_body) if response else None
        retryable = verdict.status in (Status.ERROR, Status.CONFLICT) and (
            verdict.retryable or verdict.status is Status.CONFLICT
        )
        error = OutcomeError(
            kind=verdict.error_kind or ErrorKind.PROVIDER_ERROR,
            message=self._redactor.scrub(verdict.message) or "provider call failed",
            retryable=retryable,
            provider_body=body,
        )
        return CallResult(verdict.status, verdict.reference, http_status, attempts, error)
