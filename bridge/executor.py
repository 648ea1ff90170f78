"""Execute one validated command against its target: rate limit, circuit breaker, auth, HTTP call,
classification and retries. Returns a :class:`~bridge.decide.Decision`; never raises for provider
trouble. What each response means is decided in :mod:`bridge.decide`; this module only sequences.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from ssl import SSLContext

import aiohttp

from bridge import decide, tracing
from bridge.commands import Command, operation_of
from bridge.decide import CircuitSignal, Decision, Verdict
from bridge.errors import AuthError, CommandRejected, ProviderCallError
from bridge.guards import CircuitBreaker, TokenBucket
from bridge.http import Call, Response, Transport, wire_url
from bridge.metrics import Metrics
from bridge.outcomes import ErrorKind
from bridge.providers.base import HttpRequest, Provider
from bridge.redact import Redactor
from bridge.retry import RetryState, retry_delay
from bridge.settings import TargetBase


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


class Executor:
    def __init__(
        self,
        transport: Transport,
        metrics: Metrics,
        redactor: Redactor,
        max_error_body_bytes: int,
        *,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._transport = transport
        self._metrics = metrics
        self._redactor = redactor
        self._max_error_body = max_error_body_bytes
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock

    async def execute(self, runtime: TargetRuntime, command: Command) -> Decision:
        try:
            request = runtime.provider.build_request(command)
        except CommandRejected as exc:
            return decide.rejected(exc.kind, exc.message)
        started = self._clock()
        calls = 0  # what the outcome reports
        budgeted = 0  # what the retry policy counts: the 401 refresh retry is free
        refreshed = False
        sent_auth: Mapping[str, str] | None = None
        while True:
            if not await self._pass_guards(runtime):
                return decide.circuit_open(runtime.name, calls)
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
                return decide.final(
                    verdict,
                    http_status=response.status if response else None,
                    body=response.body if response else None,
                    attempts=calls,
                    scrubber=self._redactor,
                    max_body_bytes=self._max_error_body,
                )
            self._metrics.retry(runtime.name, (verdict.error_kind or ErrorKind.INTERNAL).value)
            await self._sleep(delay)

    async def read(self, runtime: TargetRuntime, request: HttpRequest) -> tuple[int, bytes] | None:
        """One read outside the retry policy (the ledger's status check); None when it failed."""
        response = await self.status_read(runtime, request)
        return None if response is None else (response.status, response.body)

    async def status_read(
        self, runtime: TargetRuntime, request: HttpRequest, *, refresh: bool = False
    ) -> Response | None:
        """One status read for tracking, outside the retry policy; None when no response came."""
        try:
            auth = await runtime.provider.auth_headers(refresh=refresh)
            return await self._transport(_call(runtime, request, auth))
        except (AuthError, ProviderCallError):
            return None

    async def _pass_guards(self, runtime: TargetRuntime) -> bool:
        """Wait for the rate limit and, in hold mode, for the circuit; False when the circuit refuses."""
        wait = runtime.bucket.reserve()
        if wait > 0:
            await self._sleep(wait)
        breaker = runtime.breaker
        wait = breaker.wait_s()
        if wait == 0:
            return True
        if runtime.settings.circuit.mode == "fail_fast" or breaker.held >= runtime.settings.circuit.max_held:
            return False
        breaker.held += 1
        try:
            while wait > 0:
                await self._sleep(wait)
                wait = breaker.wait_s()
        finally:
            breaker.held -= 1
        return True

    def _observe_circuit(self, runtime: TargetRuntime, verdict: Verdict) -> None:
        signal = decide.circuit_signal(verdict)
        if signal is CircuitSignal.FAILURE:
            runtime.breaker.record_failure()
        elif signal is CircuitSignal.NEUTRAL:
            runtime.breaker.release_probe()
        else:
            runtime.breaker.record_success()

    @tracing.traced_attempt
    async def _attempt(
        self,
        runtime: TargetRuntime,
        command: Command,
        request: HttpRequest,
        *,
        refresh: bool,
        stale: Mapping[str, str] | None,
    ) -> tuple[Verdict, Response | None, Mapping[str, str] | None]:
        try:
            auth = await runtime.provider.auth_headers(refresh=refresh, stale=stale)
        except AuthError as exc:
            return decide.failure_verdict(exc), None, None
        operation = operation_of(command).value
        started = time.perf_counter()
        response: Response | None = None
        try:
            response = await self._transport(_call(runtime, request, auth))
        except ProviderCallError as exc:
            verdict = decide.failure_verdict(exc)
        else:
            verdict = runtime.provider.classify(command, response.status, response.headers, response.body)
        status = response.status if response else None
        self._metrics.provider_call(runtime.name, operation, status, time.perf_counter() - started)
        return verdict, response, auth


def _call(runtime: TargetRuntime, request: HttpRequest, auth: Mapping[str, str]) -> Call:
    assert runtime.timeout is not None  # set in __post_init__
    return Call(
        method=request.method,
        url=wire_url(runtime.settings.base_url, request.path),
        headers={**request.headers, **auth},
        body=request.body,
        query=request.query,
        ssl=runtime.ssl,
        timeout=runtime.timeout,
    )
