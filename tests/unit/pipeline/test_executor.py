"""The executor without a network: retries, the free 401 refresh, guards and budgets, over a FakeTransport."""

from __future__ import annotations

import random
from typing import Any

import pytest

from bridge.errors import RetryableCallError
from bridge.messages.outcomes import ErrorKind, Status
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor, TargetRuntime
from bridge.pipeline.guards import CircuitBreaker, TokenBucket
from bridge.providers.settings import parse_settings
from bridge.providers.workfloo import WorkflooExecute, WorkflooProvider
from bridge.testing import FakeTransport, json_response
from tests.fakes import FakeClock

OK = json_response(200, b'{"id": "exec-1"}')
UNAVAILABLE = json_response(503, b'{"errorMessage": "down"}')
TIMEOUT = RetryableCallError(ErrorKind.TIMEOUT, "no answer")


def runtime(**target: Any) -> TargetRuntime:
    raw = {"provider": "workfloo", "base_url": "https://wf.example", "api_key": {"env": "K"}, **target}
    settings = parse_settings({"targets": {"wf": raw}}, {"K": "key-123456"}).targets["wf"]
    provider = WorkflooProvider("wf", settings, None)  # type: ignore[arg-type]  # static key: no session use
    return TargetRuntime(
        name="wf",
        settings=settings,
        provider=provider,
        breaker=CircuitBreaker(settings.circuit),
        bucket=TokenBucket(settings.rate_limit),
        ssl=True,
    )


def command(**fields: Any) -> WorkflooExecute:
    return WorkflooExecute(
        **{"id": "c-1", "target": "wf", "operation": "workfloo.execute", "definition_id": "d1", **fields}
    )


class Sleeps:
    """Records requested sleeps and advances the fake clock instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        self.clock.now += delay


def executor(transport: FakeTransport, metrics: Metrics | None = None) -> tuple[Executor, Sleeps]:
    clock = FakeClock()
    sleeps = Sleeps(clock)
    made = Executor(
        transport, metrics or Metrics(), Redactor(), 256, rng=random.Random(7), sleep=sleeps, clock=clock
    )
    return made, sleeps


async def test_success_is_one_call_with_the_key_and_the_encoded_url() -> None:
    transport = FakeTransport.scripted([OK])
    decision = await executor(transport)[0].execute(runtime(), command())
    assert (decision.status, decision.reference, decision.attempts, decision.http_status) == (
        Status.QUEUED,
        "exec-1",
        1,
        200,
    )
    (call,) = transport.calls
    assert (call.method, str(call.url)) == ("POST", "https://wf.example/api/v1/workfloo")
    assert call.headers["x-api-key"] == "key-123456"


async def test_retries_a_503_then_succeeds_and_counts_the_retry() -> None:
    metrics = Metrics()
    transport = FakeTransport.scripted([UNAVAILABLE, UNAVAILABLE, OK])
    run, sleeps = executor(transport, metrics)
    decision = await run.execute(runtime(), command())
    assert (decision.status, decision.attempts) == (Status.QUEUED, 3)
    assert len(sleeps.delays) == 2
    assert (
        metrics.registry.get_sample_value(
            "bridge_retries_total", {"target": "wf", "reason": "provider_error"}
        )
        == 2
    )


async def test_gives_up_after_max_attempts_with_the_last_error() -> None:
    transport = FakeTransport.scripted([TIMEOUT] * 3)
    decision = await executor(transport)[0].execute(runtime(retry={"max_attempts": 3}), command())
    assert decision.status is Status.ERROR
    assert decision.error is not None
    assert (decision.error.kind, decision.error.retryable, decision.attempts) == (ErrorKind.TIMEOUT, True, 3)
    assert len(transport.calls) == 3


async def test_time_budget_ends_retries_before_the_attempts_do() -> None:
    transport = FakeTransport.scripted([json_response(503, b"", **{"Retry-After": "20"})] * 2)
    target = runtime(retry={"max_attempts": 10, "budget_s": 30, "max_retry_after_s": 60})
    decision = await executor(transport)[0].execute(target, command())
    assert decision.attempts == 2  # 20 s, then another 20 s would pass the 30 s budget
    assert decision.error is not None and decision.error.kind is ErrorKind.PROVIDER_ERROR


async def test_a_401_is_retried_once_outside_the_budget() -> None:
    transport = FakeTransport.scripted([json_response(401), OK])
    decision = await executor(transport)[0].execute(runtime(retry={"max_attempts": 1}), command())
    assert (decision.status, decision.attempts) == (Status.QUEUED, 2)


async def test_a_second_401_is_final() -> None:
    transport = FakeTransport.scripted([json_response(401), json_response(401)])
    decision = await executor(transport)[0].execute(runtime(), command())
    assert decision.error is not None
    assert (decision.status, decision.error.kind, decision.attempts) == (Status.ERROR, ErrorKind.AUTH, 2)


async def test_rejected_by_the_provider_is_not_retried() -> None:
    transport = FakeTransport.scripted([json_response(400, b'{"errorMessage": "bad form"}')])
    decision = await executor(transport)[0].execute(runtime(), command())
    assert decision.status is Status.REJECTED
    assert decision.error is not None and "bad form" in (decision.error.provider_body or "")


async def test_open_circuit_in_fail_fast_mode_calls_nothing() -> None:
    target = runtime(circuit={"mode": "fail_fast", "failure_threshold": 1}, retry={"max_attempts": 1})
    transport = FakeTransport.scripted([TIMEOUT])
    run = executor(transport)[0]
    first = await run.execute(target, command(id="c-1"))
    assert first.error is not None and first.error.kind is ErrorKind.TIMEOUT
    second = await run.execute(target, command(id="c-2"))
    assert second.error is not None and second.error.kind is ErrorKind.CIRCUIT_OPEN
    assert second.attempts == 0 and len(transport.calls) == 1


async def test_conflict_without_retry_policy_is_reported_at_once() -> None:
    transport = FakeTransport.scripted([json_response(409)])
    decision = await executor(transport)[0].execute(runtime(), command())
    assert decision.status is Status.CONFLICT
    assert decision.error is not None and decision.error.retryable


@pytest.mark.parametrize("kind", [ErrorKind.UNREACHABLE, ErrorKind.TIMEOUT])
async def test_transport_failures_keep_their_kind(kind: ErrorKind) -> None:
    transport = FakeTransport.scripted([RetryableCallError(kind, "x")])
    decision = await executor(transport)[0].execute(runtime(retry={"max_attempts": 1}), command())
    assert decision.error is not None and decision.error.kind is kind and decision.http_status is None
