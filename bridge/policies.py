"""Per-target call policies: timeouts, retries, the conflict policy, the circuit breaker, the rate limit.

Each is a small frozen model with safe defaults; a target's settings (:mod:`bridge.settings`) hold one
of each, and :mod:`bridge.retry` and :mod:`bridge.guards` apply them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TimeoutSettings(_Model):
    connect_s: float = Field(default=5.0, gt=0)
    total_s: float = Field(default=30.0, gt=0)


class RetrySettings(_Model):
    """Retry policy for one target: attempts within a total time budget, full-jitter backoff."""

    max_attempts: int = Field(default=5, ge=1, le=50)
    budget_s: float = Field(default=60.0, gt=0)
    base_backoff_s: float = Field(default=0.2, gt=0)
    max_backoff_s: float = Field(default=10.0, gt=0)
    max_retry_after_s: float = Field(default=60.0, gt=0)


class ConflictSettings(_Model):
    """What to do with a Zilliant 409 (scope busy): report at once, or retry until a deadline."""

    policy: Literal["report", "retry"] = "report"
    retry_deadline_s: float = Field(default=300.0, gt=0)


class CircuitSettings(_Model):
    failure_threshold: int = Field(default=10, ge=1)
    open_s: float = Field(default=30.0, gt=0)
    mode: Literal["fail_fast", "hold"] = "hold"
    max_held: int = Field(default=100, ge=0, description="Commands held while open; more fail fast.")
    slow_call_s: float = Field(default=10.0, gt=0, description="A call slower than this counts as failed.")
    max_unanswered: int = Field(
        default=20,
        ge=1,
        description="Open when this many calls are in flight and none answered for silent_s.",
    )
    silent_s: float = Field(default=3.0, gt=0, description="See max_unanswered.")


class RateLimitSettings(_Model):
    rate_per_s: float | None = Field(default=None, gt=0, description="None disables the limit.")
    burst: int = Field(default=10, ge=1)
