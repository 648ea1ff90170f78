"""Execute one validated command against its target: rate limit, circuit breaker, auth, HTTP call,
classification and retries. Returns a :class:`~bridge.pipeline.decide.Decision`; never raises for provider
trouble. What each response means is decided in :mod:`bridge.pipeline.decide`; this module only sequences.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from ssl import SSLContext
from typing import Protocol

import aiohttp

from bridge.config.targets import TargetBase
from bridge.errors import AuthError, CommandRejected, ProviderCallError
from bridge.http import Call, Response, Transport, wire_url
from bridge.kafka.fence import confirm_owner
from bridge.messages.commands import Command
from bridge.messages.outcomes import ErrorKind
from bridge.observability import tracing
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline import decide
from bridge.pipeline.bulkheads import TargetLoad
from bridge.pipeline.calls import CallProgress, CallsInFlight
from bridge.pipeline.decide import CircuitSignal, Decision
from bridge.pipeline.guards import PROBE_OUT_S, CircuitBreaker, CircuitState, TokenBucket
from bridge.pipeline.retry import RetryState, asked_wait, retry_delay
from bridge.providers.base import HttpRequest, Provider
from bridge.providers.verdicts import Verdict, failure_verdict

Attempt = tuple[Verdict, Response | None, Mapping[str, str] | None]  # and the auth headers it sent


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
    load: TargetLoad | None = None  # the target's bulkhead; None: no per-target budget

    @property
    def base_url(self) -> str:
        return self.settings.base_url

    def __post_init__(self) -> None:
        if self.timeout is None:
            t = self.settings.timeouts
            self.timeout = aiohttp.ClientTimeout(total=t.total_s, sock_connect=t.connect_s)


class Dispatch(Protocol):
    """The ledger's record that a command's call may have reached its target (bridge/ledger/dispatch.py)."""

    async def sending(self) -> None:
        """Before each attempt: recorded and acknowledged (``dispatched``), unless it already is."""

    async def refused(self) -> None:
        """Between attempts, while none so far may have had an effect: the record is withdrawn, so
        that a command abandoned now (a crash, a revocation) is not in doubt."""


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
        calls: CallsInFlight | None = None,
    ) -> None:
        self.calls = calls if calls is not None else CallsInFlight()
        """The commands in execution now, and their attempt (the admin endpoint shows them)."""
        self._transport = transport
        self._metrics = metrics
        self._redactor = redactor
        self._max_error_body = max_error_body_bytes
        self._rng = rng or random.Random()
        self._sleep = sleep
        self._clock = clock

    async def execute(
        self,
        runtime: TargetRuntime,
        command: Command,
        *,
        deadline: float | None = None,
        dispatch: Dispatch | None = None,
    ) -> Decision:
        """``deadline``: the monotonic time by which the command must be answered (its expiry), if any.
        ``dispatch``: the ledger's record of the calls (in doubt only after one that may have applied).

        Whatever the circuit, the call slots or ``Retry-After`` say, the answer comes within the retry
        budget and the deadline: a wait that would end later is not started.
        """
        call = self.calls.begin(command.id)
        try:
            return await self._execute(runtime, command, deadline, call, dispatch)
        finally:
            self.calls.end(command.id, call)

    async def _execute(
        self,
        runtime: TargetRuntime,
        command: Command,
        deadline: float | None,
        call: CallProgress,
        dispatch: Dispatch | None,
    ) -> Decision:
        try:
            request = runtime.provider.build_request(command)
        except CommandRejected as exc:
            return decide.rejected(exc.kind, exc.message)
        started = self._clock()
        until = min(started + runtime.settings.retry.budget_s, deadline if deadline is not None else math.inf)
        calls = 0  # what the outcome reports
        budgeted = 0  # what the retry policy counts: the 401 refresh retry is free
        refreshed = False
        sent_auth: Mapping[str, str] | None = None
        effect = False  # whether an attempt so far may have had an effect
        while True:
            refusal = await self._pass_guards(runtime, until)
            if refusal is not None:
                return decide.refused(refusal, runtime.name, calls)
            calls += 1
            budgeted += 1
            call.attempt, call.next_attempt_at = calls, None
            if dispatch is not None:
                await dispatch.sending()
            await confirm_owner()  # after ``dispatched`` was acknowledged: the next owner sees it
            verdict, response, sent_auth = await self._counted(
                runtime, self._attempt(runtime, command, request, refresh=refreshed, stale=sent_auth)
            )
            effect = effect or verdict.maybe_applied
            if verdict.refresh_auth and not refreshed:
                refreshed = True
                budgeted -= 1
                continue
            state = RetryState(attempts=budgeted, elapsed_s=self._clock() - started)
            retry = runtime.settings.retry
            delay = retry_delay(verdict, state, retry, runtime.settings.conflict, self._rng)
            call.next_attempt_at = None if delay is None else time.time() + delay
            if delay is not None and dispatch is not None and not effect:
                await dispatch.refused()
            if delay is None or not await self._wait(runtime, delay, until):
                wait = delay if delay is not None else asked_wait(verdict, budgeted, retry)
                answer = decide.final(
                    verdict,
                    http_status=response.status if response else None,
                    body=response.body if response else None,
                    attempts=calls,
                    scrubber=self._redactor,
                    max_body_bytes=self._max_error_body,
                )
                return decide.deferred(answer, wait)
            self._metrics.retry(runtime.name, (verdict.error_kind or ErrorKind.INTERNAL).value)

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

    async def _pass_guards(self, runtime: TargetRuntime, until: float) -> ErrorKind | None:
        """Wait for the rate limit, the circuit (hold mode) and a call slot; why not, when refused."""
        wait = runtime.bucket.reserve()
        if wait > 0:
            await self._sleep(wait)
        load = runtime.load
        if load is not None and load.unanswered(self._clock()):
            runtime.breaker.trip()  # calls pile up and none is answered: do not wait for their timeouts
        if not await self._circuit_lets_through(runtime, until):
            return ErrorKind.CIRCUIT_OPEN
        if load is not None and not await self._call_slot(runtime, load, until):
            runtime.breaker.release_probe()
            return ErrorKind.TARGET_BUSY
        return None

    async def _call_slot(self, runtime: TargetRuntime, load: TargetLoad, until: float) -> bool:
        """Wait for a call slot; a target whose calls in flight all go unanswered meanwhile is tripped."""
        begun = self._clock()
        if load.slots.watchdog is None:  # while commands wait: a target whose calls all hang is tripped
            load.slots.watchdog = partial(_trip_if_unanswered, runtime, load, self._clock)
        try:
            return await load.acquire_call(until - self._clock())
        finally:
            waited = self._clock() - begun
            if waited > 0.001:  # a free slot costs nothing: only the waits are counted
                self._metrics.call_slot_wait(runtime.name, waited)

    async def _circuit_lets_through(self, runtime: TargetRuntime, until: float) -> bool:
        breaker = runtime.breaker
        wait = breaker.wait_s()
        if wait == 0:
            return True
        if runtime.settings.circuit.mode == "fail_fast" or breaker.held >= runtime.settings.circuit.max_held:
            return False
        breaker.held += 1
        self._metrics.held(runtime.name, breaker.held)
        try:
            while wait > 0:
                if wait <= PROBE_OUT_S and breaker.state is CircuitState.HALF_OPEN:  # its probe is out
                    if not await self._news(runtime, until):
                        return False
                elif not await self._wait(runtime, wait, until):
                    return False
                wait = breaker.wait_s()
        finally:
            breaker.held -= 1
            self._metrics.held(runtime.name, breaker.held)
        return True

    async def _wait(self, runtime: TargetRuntime, seconds: float, until: float) -> bool:
        """Sleep ``seconds`` unless that ends after ``until``; cut short when the target's bulkhead fills.

        True when the wait ran to its end and the command may go on."""
        if self._clock() + seconds > until:
            return False
        pressure = runtime.load.pressure if runtime.load is not None else None
        if pressure is None:
            await self._sleep(seconds)
            return True
        if pressure.is_set():
            return False
        nap = asyncio.ensure_future(self._sleep(seconds))
        woken = asyncio.ensure_future(pressure.wait())
        try:
            await asyncio.wait((nap, woken), return_when=asyncio.FIRST_COMPLETED)
        finally:
            nap.cancel()
            woken.cancel()
        return not pressure.is_set()

    async def _news(self, runtime: TargetRuntime, until: float) -> bool:
        """Wait for the circuit's next news (its probe's answer) until ``until``; False when the
        deadline or the bulkhead's pressure comes first."""
        remaining = until - self._clock()
        pressure = runtime.load.pressure if runtime.load is not None else None
        if remaining <= 0 or (pressure is not None and pressure.is_set()):
            return False
        news = runtime.breaker.news()
        nap = asyncio.ensure_future(self._sleep(remaining))
        woken = [nap, news] + ([asyncio.ensure_future(pressure.wait())] if pressure is not None else [])
        try:
            await asyncio.wait(woken, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in woken:
                if waiter is not news:  # shared by every held command: never cancelled here
                    waiter.cancel()
        return news.done() and not (pressure is not None and pressure.is_set())

    async def _counted(self, runtime: TargetRuntime, attempt: Awaitable[Attempt]) -> Attempt:
        """One attempt in a call slot of the target; a slow one counts as a failure for the circuit."""
        load, begun = runtime.load, self._clock()
        token = load.call_started(begun) if load is not None else 0
        answered = False
        try:
            verdict, response, sent = await attempt
            answered = response is not None
        finally:
            if load is not None:
                load.call_ended(token, self._clock(), answered=answered)
        slow = self._clock() - begun > runtime.settings.circuit.slow_call_s
        self._observe_circuit(runtime, verdict, slow=slow)
        return verdict, response, sent

    def _observe_circuit(self, runtime: TargetRuntime, verdict: Verdict, *, slow: bool) -> None:
        signal = CircuitSignal.FAILURE if slow else decide.circuit_signal(verdict)
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
    ) -> Attempt:
        try:
            auth = await runtime.provider.auth_headers(refresh=refresh, stale=stale)
        except AuthError as exc:
            return failure_verdict(exc), None, None
        operation = command.operation
        started = time.perf_counter()
        response: Response | None = None
        try:
            response = await self._transport(_call(runtime, request, auth))
        except ProviderCallError as exc:
            verdict = failure_verdict(exc)
        else:
            verdict = runtime.provider.classify(command, response.status, response.headers, response.body)
        status = response.status if response else None
        self._metrics.provider_call(runtime.name, operation, status, time.perf_counter() - started)
        return verdict, response, auth


def _trip_if_unanswered(runtime: TargetRuntime, load: TargetLoad, clock: Callable[[], float]) -> None:
    if load.unanswered(clock()):
        runtime.breaker.trip()


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
