"""The soak benchmark's figures: drift after warm-up, and the per-interval row."""

import math

from bench.soak import Interval, drift, quantiles


def interval(
    at: float, rss: float, p99_ms: float, fds: int = 40, tasks: float = 300, faults: tuple[str, ...] = ()
) -> Interval:
    latencies = [0.01] * 98 + [p99_ms / 1000] * 2
    return Interval(at, 100, latencies, rss, fds, tasks, 1000.0, list(faults))


def test_drift_compares_the_last_quarter_with_the_first_after_warm_up() -> None:
    rss = [50, 80, 82, 84, 86, 88, 90, 92, 94]  # the warm-up interval's 50 MB is left out
    intervals = [interval(30 * (n + 1), mb, 40) for n, mb in enumerate(rss)]
    intervals[-1] = interval(270, 94, 60, fds=41, tasks=310)
    text = drift(intervals, warmup=1, calm_after=0)
    assert "RSS median 1.15 x (81.0 -> 93.0 MB)" in text
    assert "p99 median of calm intervals 1.25 x (40 -> 50 ms)" in text
    assert "fds median 40 -> 40; tasks median 300 -> 305" in text  # one interval of the two grew


def test_a_fault_and_the_intervals_after_it_are_not_drift_but_show_as_the_worst() -> None:
    intervals = [interval(30 * (n + 1), 80, 40) for n in range(13)]
    intervals[10] = interval(330, 80, 9000, faults=("broker_pause",))
    intervals[11] = interval(360, 80, 3000)  # still recovering from the pause
    text = drift(intervals, warmup=1, calm_after=1)
    assert "p99 median of calm intervals 1.00 x (40 -> 40 ms)" in text
    assert "p99 worst / first 225.00 x" in text


def test_drift_says_when_no_interval_of_a_quarter_was_calm() -> None:
    intervals = [interval(30 * (n + 1), 80, 40, faults=("kill9",)) for n in range(5)]
    assert "no calm interval" in drift(intervals, warmup=1)


def test_drift_says_when_there_is_too_little_to_judge() -> None:
    assert "too few intervals" in drift([interval(30, 50, 10)], warmup=2)


def test_quantiles_of_few_values_and_the_row() -> None:
    assert all(math.isnan(q) for q in quantiles([]))  # nothing measured in that interval
    assert quantiles([0.5]) == (0.5, 0.5)
    row = interval(30, 64.5, 40).row(10.0)
    assert "10.0/s" in row and "rss 64.5 MB" in row and "fds 40" in row
