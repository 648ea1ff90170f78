"""What one provider response means: the :class:`Verdict` a provider's classifier returns. Pure.

This is the one home of what an HTTP status means for a command. The HTTP semantics every provider shares
are :func:`classify_common` (401, 403, 429, 5xx, 400/404/406/422); a provider module decides the rest
(its 2xx, its 409) and calls :func:`scope_busy` for a 409 that says another run holds the resource, or
returns a retryable ``CONFLICT`` for a 409 that says the same request is still in flight. What happens
next is not decided here: :mod:`bridge.pipeline.retry` applies the retry policy and, to a busy scope only,
the target's conflict policy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Protocol

from bridge.messages.outcomes import ErrorKind, Status

_PROVIDER_REJECTS = frozenset({400, 404, 406, 422})


@dataclass(frozen=True, slots=True)
class Verdict:
    """What one HTTP response (or the lack of one) means for the command."""

    status: Status
    reference: str | None = None
    error_kind: ErrorKind | None = None
    message: str = ""
    retryable: bool = False  # the same request may succeed if sent again now (the retry policy applies)
    scope_busy: bool = False  # a 409: another run holds the resource (the target's conflict policy applies)
    refresh_auth: bool = False
    retry_after_s: float | None = None
    maybe_applied: bool = True
    """False when the answer rules an effect out: the request never reached the provider, or it was
    refused before any work (401, 429, 503). A command whose every attempt was so is never in doubt."""

    @property
    def is_success(self) -> bool:
        return self.status in (Status.QUEUED, Status.APPLIED)


class CallFailure(Protocol):
    """A failed call without a usable response (see :class:`bridge.errors.ProviderCallError`)."""

    kind: ErrorKind
    message: str
    retryable: bool
    sent: bool


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


def scope_busy(message: str) -> Verdict:
    """A 409 that says another run holds the resource: the target's conflict policy decides what follows."""
    return Verdict(Status.CONFLICT, error_kind=ErrorKind.CONFLICT, message=message, scope_busy=True)


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
