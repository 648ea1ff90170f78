"""Where the outcome of a command is decided. Pure: no I/O, no clock, no configuration lookups.

The path of a decision:

1. a provider module classifies one HTTP response into a :class:`Verdict` (the HTTP semantics every
   provider shares are :func:`classify_common`; a call that got no response becomes a verdict
   through :func:`failure_verdict`);
2. the executor asks :mod:`bridge.pipeline.retry` whether to try again, and :func:`circuit_signal` what the
   verdict means for the circuit breaker;
3. the last verdict, the number of calls and the response body become a :class:`Decision`
   (:func:`final`); commands stopped before any call become one through :func:`rejected` or
   :func:`circuit_open`;
4. the processor turns the decision into the published :class:`~bridge.messages.outcomes.OutcomeData`
   (:func:`outcome_data`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from enum import Enum
from typing import Protocol

from bridge.messages.outcomes import ErrorKind, OutcomeData, OutcomeError, SourceRecord, Status

_CIRCUIT_FAILURES = frozenset({ErrorKind.PROVIDER_ERROR, ErrorKind.TIMEOUT, ErrorKind.UNREACHABLE})
_PROVIDER_REJECTS = frozenset({400, 404, 406, 422})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one HTTP response (or the lack of one) means for the command."""

    status: Status
    reference: str | None = None
    error_kind: ErrorKind | None = None
    message: str = ""
    retryable: bool = False
    refresh_auth: bool = False
    retry_after_s: float | None = None
    maybe_applied: bool = True
    """False when the answer rules an effect out: the request never reached the provider, or it was
    refused before any work (401, 429, 503). A command whose every attempt was so is never in doubt."""

    @property
    def is_success(self) -> bool:
        return self.status in (Status.QUEUED, Status.APPLIED)


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


class CallFailure(Protocol):
    """A failed call without a usable response (see :class:`bridge.errors.ProviderCallError`)."""

    kind: ErrorKind
    message: str
    retryable: bool
    sent: bool


class Scrubber(Protocol):
    def scrub(self, text: str) -> str: ...

    def body_excerpt(self, body: bytes, limit: int) -> str | None: ...


class CircuitSignal(Enum):
    FAILURE = "failure"  # counts towards opening the circuit
    NEUTRAL = "neutral"  # says nothing about the provider's health (rate limited)
    SUCCESS = "success"  # the provider answered as its contract says


# -- 1. verdicts -----------------------------------------------------------------------------------


def classify_common(status: int, headers: Mapping[str, str]) -> Verdict | None:
    """The part of every provider's classification that HTTP semantics decide.

    Returns None for statuses the provider module must decide itself (2xx, 409, most 4xx).
    """
    if status == 401:
        return Verdict(
            Status.ERROR,
            error_kind=ErrorKind.AUTH,
            message="credentials refused (401)",
            refresh_auth=True,
            maybe_applied=False,
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
            maybe_applied=False,
        )
    if status >= 500:
        retry_after = parse_retry_after(header(headers, "Retry-After")) if status == 503 else None
        return Verdict(
            Status.ERROR,
            error_kind=ErrorKind.PROVIDER_ERROR,
            message=f"provider failed ({status})",
            retryable=True,
            retry_after_s=retry_after,
            maybe_applied=status != 503,  # unavailable: turned away before any work
        )
    if status in _PROVIDER_REJECTS:
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


def failure_verdict(failure: CallFailure) -> Verdict:
    """The verdict for a call that got no usable response (timeout, refused, token endpoint down)."""
    return Verdict(
        Status.ERROR,
        error_kind=failure.kind,
        message=failure.message,
        retryable=failure.retryable,
        maybe_applied=failure.sent,
    )


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


# -- 2. what a verdict means for the circuit --------------------------------------------------------


def circuit_signal(verdict: Verdict) -> CircuitSignal:
    if verdict.error_kind in _CIRCUIT_FAILURES:
        return CircuitSignal.FAILURE
    if verdict.error_kind is ErrorKind.RATE_LIMITED:
        return CircuitSignal.NEUTRAL
    return CircuitSignal.SUCCESS


# -- 3. decisions ------------------------------------------------------------------------------------


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
    """Whether the same command may succeed if sent again later (reported on the outcome)."""
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


# -- 4. the outcome --------------------------------------------------------------------------------


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
