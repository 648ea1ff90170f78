"""Where the outcome of a command is decided. Pure: no I/O, no clock, no configuration lookups.

The path of a decision:

1. a provider module classifies one HTTP response into a :class:`~bridge.providers.verdicts.Verdict`
   (:mod:`bridge.providers.verdicts` is the one home of what a status means; a call that got no
   response becomes a verdict through :func:`~bridge.providers.verdicts.failure_verdict`);
2. the executor asks :mod:`bridge.pipeline.retry` whether to try again, and :func:`circuit_signal` what the
   verdict means for the circuit breaker;
3. the last verdict, the number of calls and the response body become a :class:`Decision`
   (:func:`final`); commands stopped before any call become one through :func:`rejected` or
   :func:`circuit_open`;
4. the processor turns the decision into the published :class:`~bridge.messages.outcomes.OutcomeData`
   (:func:`outcome_data`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum
from typing import Protocol

from bridge.messages.outcomes import ErrorKind, OutcomeData, OutcomeError, SourceRecord, Status
from bridge.providers.verdicts import Verdict

_CIRCUIT_FAILURES = frozenset({ErrorKind.PROVIDER_ERROR, ErrorKind.TIMEOUT, ErrorKind.UNREACHABLE})


@dataclass(frozen=True, slots=True)
class Decision:
    """The decided result of a command, before it becomes an outcome event."""

    status: Status
    reference: str | None = None
    http_status: int | None = None
    attempts: int = 0
    error: OutcomeError | None = None
    # a retryable refusal or a retry whose wait was cut short: it may run again after this many
    # seconds (with parking on it is parked instead of answered)
    defer_s: float | None = None


class Scrubber(Protocol):
    def scrub(self, text: str) -> str: ...

    def body_excerpt(self, body: bytes, limit: int) -> str | None: ...


class CircuitSignal(Enum):
    FAILURE = "failure"  # counts towards opening the circuit
    NEUTRAL = "neutral"  # says nothing about the provider's health (rate limited)
    SUCCESS = "success"  # the provider answered as its contract says


# -- 1. what a verdict means for the circuit --------------------------------------------------------


def circuit_signal(verdict: Verdict) -> CircuitSignal:
    if verdict.error_kind in _CIRCUIT_FAILURES:
        return CircuitSignal.FAILURE
    if verdict.error_kind is ErrorKind.RATE_LIMITED:
        return CircuitSignal.NEUTRAL
    return CircuitSignal.SUCCESS


# -- 2. decisions ------------------------------------------------------------------------------------


def rejected(kind: ErrorKind, message: str) -> Decision:
    """A command refused before any call: never retryable, it is wrong as written."""
    return Decision(Status.REJECTED, error=OutcomeError(kind=kind, message=message, retryable=False))


_REFUSALS = {
    ErrorKind.CIRCUIT_OPEN: "circuit for target '{}' is open; not calling it",
    ErrorKind.TARGET_BUSY: "target '{}' holds its full share of the bridge (bulkhead); not calling it",
}


def refused(kind: ErrorKind, target: str, attempts: int) -> Decision:
    """Not called (again) because a guard of the target said no: retryable, the command is fine."""
    error = OutcomeError(kind=kind, retryable=True, message=_REFUSALS[kind].format(target))
    return Decision(Status.ERROR, attempts=attempts, error=error, defer_s=0.0)


def deferred(decision: Decision, wait_s: float | None) -> Decision:
    """``decision``, marked as one that may run again after ``wait_s`` when it is a retryable error
    (its retries ended because a wait was not started or was cut short)."""
    if (
        wait_s is None
        or decision.status is not Status.ERROR
        or not (decision.error and decision.error.retryable)
    ):
        return decision
    return replace(decision, defer_s=wait_s)


def circuit_open(target: str, attempts: int) -> Decision:
    return refused(ErrorKind.CIRCUIT_OPEN, target, attempts)


def is_retryable(verdict: Verdict) -> bool:
    """Whether the same command may succeed if sent again later (the outcome's ``error.retryable``):
    a conflict may, once the run that holds the scope (or the request in flight) has finished."""
    if verdict.status is Status.CONFLICT:
        return True
    return verdict.status is Status.ERROR and verdict.retryable


def final(
    verdict: Verdict,
    *,
    http_status: int | None,
    body: bytes | None,
    attempts: int,
    scrubber: Scrubber,
    max_body_bytes: int,
) -> Decision:
    """The decision after the last attempt: the provider body is capped and scrubbed of secrets."""
    if verdict.is_success:
        return Decision(verdict.status, verdict.reference, http_status, attempts)
    excerpt = scrubber.body_excerpt(body, max_body_bytes) if body is not None else None
    error = OutcomeError(
        kind=verdict.error_kind or ErrorKind.PROVIDER_ERROR,
        message=scrubber.scrub(verdict.message) or "provider call failed",
        retryable=is_retryable(verdict),
        provider_body=excerpt,
    )
    return Decision(verdict.status, verdict.reference, http_status, attempts, error)


# -- 3. the outcome --------------------------------------------------------------------------------


def outcome_data(
    *,
    command_id: str,
    target: str | None,
    provider: str | None,
    operation: str | None,
    decision: Decision,
    duration_ms: float,
    source: SourceRecord,
    schema_id: int | None = None,
) -> OutcomeData:
    return OutcomeData(
        command_id=command_id,
        target=target,
        provider=provider,
        operation=operation,
        status=decision.status,
        provider_ref=decision.reference,
        http_status=decision.http_status,
        attempts=decision.attempts,
        duration_ms=round(duration_ms, 3),
        error=decision.error,
        source=source,
        schema_id=schema_id,
    )
