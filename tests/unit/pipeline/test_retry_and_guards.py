import random
from datetime import UTC, datetime

import pytest

from bridge.config.targets import CircuitSettings, ConflictSettings, RateLimitSettings, RetrySettings
from bridge.messages.outcomes import ErrorKind, Status
from bridge.pipeline.guards import CircuitBreaker, CircuitState, TokenBucket
from bridge.pipeline.retry import RetryState, backoff_s, retry_delay
from bridge.providers.verdicts import Verdict, parse_retry_after, scope_busy
from tests.fakes import FakeClock

POLICY = RetrySettings(max_attempts=4, budget_s=10, base_backoff_s=0.5, max_backoff_s=2, max_retry_after_s=5)
REPORT, RETRY = ConflictSettings(policy="report"), ConflictSettings(policy="retry", retry_deadline_s=3)
FIVE_XX = Verdict(Status.ERROR, error_kind=ErrorKind.PROVIDER_ERROR, retryable=True)
SCOPE_BUSY = scope_busy("scope busy")
IN_FLIGHT = Verdict(Status.CONFLICT, error_kind=ErrorKind.CONFLICT, retryable=True)  # Zuora's key in flight


def delay(verdict, attempts=1, elapsed=0.0, conflict=REPORT, seed=1):
    return retry_delay(verdict, RetryState(attempts, elapsed), POLICY, conflict, random.Random(seed))


def test_backoff_is_full_jitter_under_an_exponential_cap():
    rng = random.Random(7)
    samples = [backoff_s(3, POLICY, rng) for _ in range(500)]
    assert all(0 <= s <= 2.0 for s in samples)
    assert max(samples) > 1.5 and min(samples) < 0.3
    assert all(backoff_s(1, POLICY, rng) <= 0.5 for _ in range(100))


def test_success_and_final_errors_are_not_retried():
    assert delay(Verdict(Status.QUEUED)) is None
    assert delay(Verdict(Status.REJECTED, error_kind=ErrorKind.PROVIDER_REJECTED)) is None
    assert delay(Verdict(Status.ERROR, error_kind=ErrorKind.AUTH)) is None


def test_retryable_errors_stop_at_max_attempts_and_budget():
    assert delay(FIVE_XX, attempts=3) is not None
    assert delay(FIVE_XX, attempts=4) is None
    assert delay(FIVE_XX, attempts=1, elapsed=10.0) is None  # the budget is spent


def test_retry_after_is_honoured_and_capped():
    v = Verdict(Status.ERROR, error_kind=ErrorKind.RATE_LIMITED, retryable=True, retry_after_s=3)
    assert delay(v) == 3
    capped = Verdict(Status.ERROR, error_kind=ErrorKind.RATE_LIMITED, retryable=True, retry_after_s=500)
    assert delay(capped) == 5
    assert delay(capped, elapsed=6) is None  # 6 + 5 > budget


def test_scope_conflict_follows_the_conflict_policy():
    assert delay(SCOPE_BUSY, conflict=REPORT) is None
    assert delay(SCOPE_BUSY, attempts=20, conflict=RETRY) is not None  # not bound by max_attempts
    assert delay(SCOPE_BUSY, attempts=2, elapsed=3.0, conflict=RETRY) is None  # past the deadline


def test_a_conflict_that_is_not_a_busy_scope_follows_the_retry_policy_only():
    assert delay(IN_FLIGHT, conflict=REPORT) is not None  # the conflict policy does not apply to it
    assert delay(IN_FLIGHT, attempts=POLICY.max_attempts, conflict=RETRY) is None  # bound by max_attempts
    final = Verdict(Status.CONFLICT, error_kind=ErrorKind.CONFLICT)
    assert delay(final, conflict=RETRY) is None  # neither busy nor retryable: final under any policy


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("7", 7.0),
        (" 0 ", 0.0),
        ("Wed, 21 Oct 2026 07:28:10 GMT", 10.0),
        ("Wed, 21 Oct 2026 07:27:00 GMT", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("-3", None),
    ],
)
def test_parse_retry_after_both_forms(value, expected):
    now = datetime(2026, 10, 21, 7, 28, 0, tzinfo=UTC)
    assert parse_retry_after(value, now) == expected


def test_token_bucket_allows_a_burst_then_spaces_calls():
    clock = FakeClock()
    bucket = TokenBucket(RateLimitSettings(rate_per_s=10, burst=2), clock)
    assert bucket.reserve() == 0 and bucket.reserve() == 0
    assert bucket.reserve() == pytest.approx(0.1)
    clock.now += 1.0
    assert bucket.reserve() == 0


def test_unlimited_bucket_never_waits():
    bucket = TokenBucket(RateLimitSettings())
    assert all(bucket.reserve() == 0 for _ in range(1000))


def test_circuit_opens_after_consecutive_failures_and_probes_half_open():
    clock = FakeClock()
    changes = []
    breaker = CircuitBreaker(CircuitSettings(failure_threshold=3, open_s=10), clock, changes.append)
    for _ in range(2):
        breaker.record_failure()
    breaker.record_success()  # resets the streak
    for _ in range(3):
        assert breaker.wait_s() == 0
        breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    assert breaker.wait_s() == pytest.approx(10)
    clock.now += 10
    assert breaker.wait_s() == 0  # the single probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.wait_s() > 0  # everyone else waits for the probe
    breaker.record_failure()
    assert breaker.state is CircuitState.OPEN
    clock.now += 10
    assert breaker.wait_s() == 0
    breaker.record_success()
    assert breaker.state is CircuitState.CLOSED
    assert changes == [
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.OPEN,
        CircuitState.HALF_OPEN,
        CircuitState.CLOSED,
    ]
