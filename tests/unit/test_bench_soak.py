"""The soak benchmark's figures: drift after warm-up, and the per-interval row."""

import math

from bench.soak import Interval, drift, quantiles


def interval(at: float, rss: float, p99_ms: float, fds: int = 40, tasks: float = 300) -> Interval:
    latencies = [0.01] * 98 + [p99_ms / 1000] * 2
    return Interval(at, 100, latencies, rss, fds, tasks, 1000.0, [])


def test_drift_compares_the_last_steady_interval_with_the_first_after_warm_up() -> None:
    intervals = [interval(30, 50, 900), interval(60, 80, 40), interval(90, 84, 60), interval(120, 88, 40)]
    text = drift(intervals, warmup=1)
    assert "RSS 1.10 x (80.0 -> 88.0 MB)" in text  # the warm-up interval's 50 MB is left out
    assert "p99 worst / first 1.50 x" in text
    assert "fds 40 -> 40; tasks 300 -> 300" in text


def test_drift_says_when_there_is_too_little_to_judge() -> None:
    assert "too few intervals" in drift([interval(30, 50, 10)], warmup=2)


def test_quantiles_of_few_values_and_the_row() -> None:
    assert all(math.isnan(q) for q in quantiles([]))  # nothing measured in that interval
    assert quantiles([0.5]) == (0.5, 0.5)
    row = interval(30, 64.5, 40).row(10.0)
    assert "10.0/s" in row and "rss 64.5 MB" in row and "fds 40" in row
