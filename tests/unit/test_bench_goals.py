"""The suite's guarantee table and goals (issue 26), over synthetic rows: no broker, no bridge."""

from __future__ import annotations

from typing import Any

import pytest

from bench.goals import (
    GUARANTEES,
    calls_per_command,
    cpu_per_call_ratio,
    guarantee_costs,
    guarantee_table,
    throughput_goals,
)
from bench.scenarios import count_calls, set_path
from bench.stats import Row

EXPOSITION = """\
# HELP bridge_provider_request_duration_seconds Duration of one HTTP call to a provider.
bridge_provider_request_duration_seconds_bucket{status_class="2xx",target="wf",le="0.1"} 990.0
bridge_provider_request_duration_seconds_count{status_class="2xx",target="wf"} 1000.0
bridge_provider_request_duration_seconds_count{status_class="5xx",target="wf"} 10.0
bridge_tracking_polls_total{result="running",target="wf"} 400.0
bridge_tracking_polls_total{result="completed",target="wf"} 90.0
bridge_outcomes_total{status="queued"} 1000.0
"""


def row(scenario: str, kind: str, rate: float, cpu_ms: float, calls: dict[str, float] | None = None) -> Row:
    commands = 1000
    got = Row(scenario, kind, commands, commands / rate, 50.0, cpu_s=cpu_ms * commands / 1000)
    if calls is not None:
        got.extra["http_calls"] = calls
    return got


def test_the_http_calls_are_the_commands_calls_and_trackings_status_reads() -> None:
    assert count_calls(EXPOSITION) == {"calls": 1010.0, "status_reads": 490.0}
    assert calls_per_command(row("i", "bridge", 100, 0.3, count_calls(EXPOSITION))) == 1.5
    assert calls_per_command(row("i", "bridge", 100, 0.3)) is None  # not scraped: unknown, not zero


def test_a_variant_setting_reaches_every_target_through_a_star() -> None:
    raw: dict[str, Any] = {"targets": {"a": {"tracking": {"horizon_s": 5}}, "b": {}}, "ledger": {"x": 1}}
    set_path(raw, "targets.*.tracking.enabled", False)
    set_path(raw, "ledger.enabled", False)
    set_path(raw, "parking.enabled", False)
    assert raw["targets"] == {
        "a": {"tracking": {"horizon_s": 5, "enabled": False}},
        "b": {"tracking": {"enabled": False}},
    }
    assert raw["ledger"] == {"x": 1, "enabled": False} and raw["parking"] == {"enabled": False}


def test_each_guarantee_is_a_variant_with_it_off() -> None:
    assert [v.settings for v in GUARANTEES] == [
        (("ledger.enabled", False),),
        (("targets.*.tracking.enabled", False),),
        (("parking.enabled", False),),
    ]
    assert not any(v.timing for v in GUARANTEES)  # comparable with the base row, which has no timing header


def test_the_cpu_goal_counts_every_http_call_of_a_command() -> None:
    calls = {"calls": 1000.0, "status_reads": 500.0}  # 1.5 calls per command
    rows = [
        row("i", "bridge", 2000, 0.45, calls),
        row("i", "bridge", 2200, 0.39, calls),
        row("i", "http-only", 5000, 0.15),
    ]
    assert cpu_per_call_ratio(rows, "i") == pytest.approx(0.42 / (0.15 * 1.5))  # median CPU of the two rounds
    goals = {
        (g.scenario, g.what): g
        for g in throughput_goals([*rows, row("ii", "bridge", 2900, 0.3, calls)], "i", "ii")
    }
    assert goals["i", "goal: commands/s, every guarantee on"].passed is False  # median 2,100 < 2,500
    assert goals["ii", "goal: commands/s, every guarantee on"].passed is False  # 2,900 < 3,000
    cpu_goal = goals["i", "goal: CPU/command ÷ (HTTP-only CPU/request x HTTP calls/command)"]
    assert cpu_goal.passed is True and cpu_goal.threshold == 2.0
    assert (
        goals["ii", "goal: CPU/command ÷ (HTTP-only CPU/request x HTTP calls/command)"].value is None
    )  # no baseline


def test_the_guarantee_table_shows_each_off_against_the_defaults() -> None:
    calls = {"calls": 1000.0, "status_reads": 0.0}
    rows = [
        row("i", "bridge", 2000, 0.40, calls),
        row("i", "bridge[ledger off]", 2500, 0.30, calls),
        row("i", "bridge[tracking off]", 2100, 0.36, calls),
    ]
    table = guarantee_table(guarantee_costs(rows, "i"))
    assert "| defaults (every guarantee on) | 2,000 | 0.400 | 1.00 | 1.00 | 1.00 |" in table
    assert "| bridge[ledger off] | 2,500 | 0.300 | 1.00 | 1.25 | 0.75 |" in table
    assert "| bridge[parking off] | - | - | - | - | - |" in table  # not run: said, not invented
