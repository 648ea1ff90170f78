"""The outcome decision, table-driven: every HTTP status a provider may answer, for every provider,
through the provider's own classifier and ``decide.final`` (what the outcome event will carry)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest

from bridge.errors import AuthError, RetryableCallError
from bridge.messages.commands import Command
from bridge.messages.outcomes import ErrorKind, SourceRecord, Status
from bridge.observability.redact import Redactor
from bridge.pipeline import decide
from bridge.pipeline.decide import CircuitSignal
from bridge.providers import eightbyeight, verdicts, workfloo, zilliant, zuora
from bridge.providers.catalog import CATALOG
from bridge.providers.eightbyeight import EightByEightUpdateInstance
from bridge.providers.verdicts import Verdict
from bridge.providers.workfloo import WorkflooExecute
from bridge.providers.zilliant import ZilliantQueueJob
from bridge.providers.zuora import ZuoraRerunTask, ZuoraRunWorkflow

Classifier = Callable[[Command, int, Mapping[str, str], bytes], Verdict]

COMMANDS: dict[str, tuple[Command, Classifier]] = {
    "zilliant": (
        ZilliantQueueJob(id="c", target="t", operation="zilliant.queue_job", automation_id="A"),
        zilliant.classify,
    ),
    "zuora.run": (
        ZuoraRunWorkflow(id="c", target="t", operation="zuora.run_workflow", workflow_id=1),
        zuora.classify,
    ),
    "zuora.rerun": (
        ZuoraRerunTask(id="c", target="t", operation="zuora.rerun_task", task_id="7"),
        zuora.classify,
    ),
    "workfloo": (
        WorkflooExecute(id="c", target="t", operation="workfloo.execute", definition_id="d"),
        workfloo.classify,
    ),
    "8x8": (
        EightByEightUpdateInstance(
            id="c",
            target="t",
            operation="8x8.update_instance",
            action="suspend",
            definition_id="d",
            instance_id="i",
        ),
        eightbyeight.classify,
    ),
}

SUCCESS_BODY = b'{"id": "ref-1", "jobId": "ref-1"}'
Q, A, C, R, E = Status.QUEUED, Status.APPLIED, Status.CONFLICT, Status.REJECTED, Status.ERROR
PR, AU, CF, RL, PE = (
    ErrorKind.PROVIDER_REJECTED,
    ErrorKind.AUTH,
    ErrorKind.CONFLICT,
    ErrorKind.RATE_LIMITED,
    ErrorKind.PROVIDER_ERROR,
)
# (provider, http status, body) -> (status, error kind, retryable)
TABLE: list[tuple[str, int, bytes, tuple[Status, ErrorKind | None, bool | None]]] = [
    *[
        (p, 200, SUCCESS_BODY, (s, None, None))
        for p, s in [("zuora.run", Q), ("zuora.rerun", A), ("workfloo", Q)]
    ],
    ("zilliant", 202, SUCCESS_BODY, (Q, None, None)),
    ("8x8", 200, b"{}", (A, None, None)),
    *[(p, status, b"{}", (R, PR, False)) for p in COMMANDS for status in (400, 404, 422)],
    *[(p, 401, b"", (E, AU, False)) for p in COMMANDS],
    *[(p, 403, b"", (E, AU, False)) for p in COMMANDS],
    *[(p, 429, b"", (E, RL, True)) for p in COMMANDS],
    *[(p, status, b"oops", (E, PE, True)) for p in COMMANDS for status in (500, 502, 503)],
    *[(p, 418, b"", (E, PE, False)) for p in COMMANDS],
    ("zilliant", 409, b"", (C, CF, True)),
    ("workfloo", 409, b"{}", (C, CF, True)),
    ("zuora.run", 409, b'{"reasons":[{"message":"Idempotency key in use"}]}', (C, CF, True)),
    ("zuora.run", 409, b'{"reasons":[{"message":"instance exists"}]}', (R, PR, False)),
    ("zuora.rerun", 409, b"{}", (R, PR, False)),
    ("8x8", 409, b"{}", (E, PE, False)),
]


def final(verdict: Verdict, status: int | None, body: bytes | None, redactor: Redactor | None = None) -> Any:
    return decide.final(
        verdict, http_status=status, body=body, attempts=1, scrubber=redactor or Redactor(), max_body_bytes=64
    )


@pytest.mark.parametrize(("provider", "status", "body", "expected"), TABLE)
def test_every_status_of_every_provider(provider: str, status: int, body: bytes, expected: Any) -> None:
    command, classify = COMMANDS[provider]
    decision = final(classify(command, status, {}, body), status, body)
    want_status, want_kind, want_retryable = expected
    assert decision.status is want_status
    assert decision.http_status == status
    if want_kind is None:
        assert decision.error is None
        assert decision.reference is not None
    else:
        assert decision.error is not None
        assert (decision.error.kind, decision.error.retryable) == (want_kind, want_retryable)
        assert decision.error.message


def test_the_table_covers_every_provider_kind() -> None:
    assert {p.split(".")[0] for p in COMMANDS} == set(CATALOG.kinds)


@pytest.mark.parametrize(
    ("failure", "kind", "retryable"),
    [
        (RetryableCallError(ErrorKind.TIMEOUT, "slow"), ErrorKind.TIMEOUT, True),
        (RetryableCallError(ErrorKind.UNREACHABLE, "refused"), ErrorKind.UNREACHABLE, True),
        (AuthError("token endpoint refused", retryable=False), ErrorKind.AUTH, False),
        (AuthError("token endpoint down", retryable=True), ErrorKind.AUTH, True),
    ],
)
def test_calls_without_a_response(failure: Any, kind: ErrorKind, retryable: bool) -> None:
    decision = final(verdicts.failure_verdict(failure), None, None)
    assert decision.status is Status.ERROR
    assert decision.http_status is None
    assert decision.error is not None
    assert (decision.error.kind, decision.error.retryable, decision.error.provider_body) == (
        kind,
        retryable,
        None,
    )


def test_provider_body_is_capped_and_scrubbed() -> None:
    body = b'{"password": "hunter22", "detail": "' + b"x" * 500 + b'"}'
    verdict = Verdict(Status.ERROR, error_kind=ErrorKind.PROVIDER_ERROR, message="failed with s3cr3t-value")
    decision = final(verdict, 500, body, Redactor(["s3cr3t-value"]))
    assert decision.error is not None
    assert decision.error.provider_body is not None
    assert "hunter22" not in decision.error.provider_body
    assert decision.error.provider_body.endswith("…(truncated)")
    assert "s3cr3t-value" not in decision.error.message


def test_empty_message_gets_a_default() -> None:
    decision = final(Verdict(Status.ERROR), 500, b"")
    assert decision.error is not None
    assert (decision.error.kind, decision.error.message) == (ErrorKind.PROVIDER_ERROR, "provider call failed")


def test_decisions_before_any_call() -> None:
    refused = decide.rejected(ErrorKind.EXPIRED, "too late")
    assert (refused.status, refused.attempts, refused.error and refused.error.retryable) == (R, 0, False)
    blocked = decide.circuit_open("billing", attempts=2)
    assert blocked.status is E and blocked.attempts == 2
    assert blocked.error is not None and blocked.error.kind is ErrorKind.CIRCUIT_OPEN
    assert blocked.error.retryable and "billing" in blocked.error.message


@pytest.mark.parametrize(
    ("kind", "signal"),
    [
        (ErrorKind.PROVIDER_ERROR, CircuitSignal.FAILURE),
        (ErrorKind.TIMEOUT, CircuitSignal.FAILURE),
        (ErrorKind.UNREACHABLE, CircuitSignal.FAILURE),
        (ErrorKind.RATE_LIMITED, CircuitSignal.NEUTRAL),
        (ErrorKind.AUTH, CircuitSignal.SUCCESS),
        (ErrorKind.PROVIDER_REJECTED, CircuitSignal.SUCCESS),
        (None, CircuitSignal.SUCCESS),
    ],
)
def test_circuit_signal(kind: ErrorKind | None, signal: CircuitSignal) -> None:
    assert decide.circuit_signal(Verdict(Status.ERROR, error_kind=kind)) is signal


def test_outcome_data_carries_the_decision() -> None:
    decision = decide.Decision(Status.QUEUED, "job-1", 202, 2)
    source = SourceRecord(topic="t", partition=1, offset=5)
    data = decide.outcome_data(
        command_id="c",
        target="t",
        provider="zilliant",
        operation="zilliant.queue_job",
        decision=decision,
        duration_ms=1.23456,
        source=source,
    )
    assert (data.status, data.provider_ref, data.http_status, data.attempts) == (Q, "job-1", 202, 2)
    assert data.duration_ms == 1.235 and data.source == source and data.error is None


# What a 409 means, per provider: a busy scope (the conflict policy decides), a request still in flight
# (retried like any transient error), or a refusal. One table; bridge/providers/verdicts.py is its home.
CONFLICTS = [
    ("zilliant", b"", True, False),
    ("workfloo", b"{}", True, False),
    ("zuora.run", b'{"reasons":[{"message":"Idempotency key in use"}]}', False, True),
    ("zuora.run", b'{"reasons":[{"message":"instance exists"}]}', False, False),
    ("zuora.rerun", b"{}", False, False),
    ("8x8", b"{}", False, False),
]


@pytest.mark.parametrize(("provider", "body", "busy", "retryable"), CONFLICTS)
def test_what_a_409_means(provider: str, body: bytes, busy: bool, retryable: bool) -> None:
    command, classify = COMMANDS[provider]
    verdict = classify(command, 409, {}, body)
    assert (verdict.scope_busy, verdict.retryable) == (busy, retryable)
