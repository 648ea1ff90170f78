"""Retry decisions. Pure: the executor asks, these functions answer with a delay or ``None``."""

from __future__ import annotations

import random
from dataclasses import dataclass

from bridge.config.targets import ConflictSettings, RetrySettings
from bridge.providers.verdicts import Verdict


@dataclass(frozen=True, slots=True)
class RetryState:
    attempts: int  # provider calls made so far for this command
    elapsed_s: float  # since the first attempt started


def backoff_s(attempt: int, policy: RetrySettings, rng: random.Random) -> float:
    """Full-jitter exponential backoff: uniform(0, min(cap, base * 2**(attempt-1)))."""
    ceiling = min(policy.max_backoff_s, policy.base_backoff_s * (2 ** max(0, attempt - 1)))
    return rng.uniform(0.0, ceiling)


def retry_delay(
    verdict: Verdict,
    state: RetryState,
    policy: RetrySettings,
    conflict: ConflictSettings,
    rng: random.Random,
) -> float | None:
    """Seconds to wait before the next attempt, or None when the verdict is final."""
    if verdict.is_success:
        return None
    if verdict.scope_busy:  # the target's conflict policy decides, and nothing else
        if conflict.policy != "retry":
            return None
        delay = backoff_s(state.attempts, policy, rng)
        return delay if state.elapsed_s + delay <= conflict.retry_deadline_s else None
    if not verdict.retryable or state.attempts >= policy.max_attempts:
        return None
    if verdict.retry_after_s is not None:
        delay = min(verdict.retry_after_s, policy.max_retry_after_s)
    else:
        delay = backoff_s(state.attempts, policy, rng)
    return delay if state.elapsed_s + delay <= policy.budget_s else None


def asked_wait(verdict: Verdict, attempts: int, policy: RetrySettings) -> float | None:
    """The provider's ``Retry-After`` (capped) when only the budget kept the retry from waiting it."""
    if verdict.retryable and verdict.retry_after_s is not None and attempts < policy.max_attempts:
        return min(verdict.retry_after_s, policy.max_retry_after_s)
    return None
