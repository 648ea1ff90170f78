"""The lifecycle of a started workflow, as the providers' status reads tell it. Pure.

A provider module turns one status-read response into a :class:`Reading` (``classify_status``);
what every provider shares (401, 404, 429, 5xx) is :func:`classify_read_common`. A reading is a
:class:`RunReading` (the run's state) or a :class:`ReadFailure` (ask again later, or give up).

Example::

    reading = zuora.classify_status(200, headers, body)
    if isinstance(reading, RunReading) and reading.state.terminal:
        ...
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from bridge.providers.verdicts import header, parse_retry_after


class RunState(StrEnum):
    """What a lifecycle event reports; the last four are terminal."""

    RUNNING = "running"
    WAITING = "waiting"  # on a human step (form, document, OTP, review) or a suspension
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"  # cancelled, stopped or terminated on purpose
    LOST = "lost"  # tracking gave up: horizon passed, or the provider no longer knows the run

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({RunState.COMPLETED, RunState.FAILED, RunState.STOPPED, RunState.LOST})


@dataclass(frozen=True, slots=True)
class RunReading:
    """The run's state; ``raw`` is the provider's own word for it, ``detail`` the failure detail."""

    state: RunState
    raw: str
    waiting_for: str | None = None
    detail: str | None = None


class ReadProblem(StrEnum):
    AUTH = "auth"  # 401: refresh the credentials, ask again
    RATE_LIMITED = "rate_limited"
    PROVIDER_ERROR = "provider_error"  # 5xx, timeouts, unreachable: ask again later
    UNREADABLE = "unreadable"  # 2xx without a usable body: ask again later
    GONE = "gone"  # 404: the provider no longer knows the run (retention passed): lost


@dataclass(frozen=True, slots=True)
class ReadFailure:
    problem: ReadProblem
    retry_after_s: float | None = None

    @property
    def circuit_failure(self) -> bool:
        return self.problem is ReadProblem.PROVIDER_ERROR


Reading = RunReading | ReadFailure


def classify_read_common(status: int, headers: Mapping[str, str]) -> ReadFailure | None:
    """The failures every status read shares; None for a 2xx (the provider module reads the body)."""
    if 200 <= status < 300:
        return None
    if status == 401:
        return ReadFailure(ReadProblem.AUTH)
    if status == 404:
        return ReadFailure(ReadProblem.GONE)
    if status == 429 or status == 503:
        retry_after = parse_retry_after(header(headers, "Retry-After"))
        problem = ReadProblem.RATE_LIMITED if status == 429 else ReadProblem.PROVIDER_ERROR
        return ReadFailure(problem, retry_after)
    return ReadFailure(ReadProblem.PROVIDER_ERROR)


UNREADABLE = ReadFailure(ReadProblem.UNREADABLE)


def status_document(status: int, headers: Mapping[str, str], body: bytes) -> dict[str, Any] | ReadFailure:
    """The JSON object a successful status read returned, or why there is none."""
    failure = classify_read_common(status, headers)
    if failure is not None:
        return failure
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return UNREADABLE
    return parsed if isinstance(parsed, dict) else UNREADABLE
