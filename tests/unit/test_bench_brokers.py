"""The Kafka-vs-Tansu comparison of the benchmarks, and their one line when Kafka cannot start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.brokers import broker_order, comparison, comparison_table, tagged_rows
from bench.scaling import parse_pauses, table
from bench.stats import Row

ROOT = Path(__file__).resolve().parents[2]


def row(scenario: str, commands: int, seconds: float, cpu_s: float, p99: float) -> Row:
    found = Row(scenario, "bridge", commands, seconds, 50.0, cpu_s=cpu_s)
    found.added_p50_ms, found.added_p99_ms = p99 / 2, p99
    return found


def test_both_brokers_alternate_for_the_rounds_and_one_broker_runs_once() -> None:
    assert broker_order("both", 2) == ["tansu", "kafka", "tansu", "kafka"]
    assert broker_order("kafka", 3) == ["kafka"]


def test_comparison_takes_the_median_of_each_broker_and_the_ratio_kafka_over_tansu() -> None:
    rows = [
        *tagged_rows([row("i", 1000, 1.0, 0.5, 10)], "tansu", 1),
        *tagged_rows([row("i", 1000, 2.0, 1.0, 20)], "kafka", 1),
        *tagged_rows([row("i", 1000, 0.5, 0.7, 30)], "tansu", 2),
        *tagged_rows([row("i", 1000, 4.0, 1.0, 40)], "kafka", 2),
        *tagged_rows([row("only-tansu", 10, 1.0, 0.1, 1)], "tansu", 1),
    ]
    assert rows[0].scenario == "tansu/i" and rows[0].extra["broker_round"] == 1
    (entry,) = comparison(rows)  # a scenario seen on one broker only is not compared
    assert (entry["scenario"], entry["run"], entry["rounds"]) == ("i", "bridge", 2)
    assert entry["cmds/s"] == {"tansu": 1500.0, "kafka": 375.0, "kafka/tansu": 0.25}
    assert entry["CPU ms/cmd"]["kafka/tansu"] == pytest.approx(1.0 / 0.6)
    assert entry["added p99 ms"] == {"tansu": 20.0, "kafka": 30.0, "kafka/tansu": 1.5}
    row_text = "| i | bridge | 2 | 1,500 | 375 | 0.25 | 0.600 | 1.000 | 1.67 | - | - | - |"
    assert row_text in comparison_table([entry])


def test_scaling_table_reads_the_pauses_the_scaling_test_prints() -> None:
    output = "x\npause after kill -9 of b: median 4.21 s, longest 5.02 s (4 partitions)\n1 passed"
    assert parse_pauses(output) == {"kill -9 of b": {"median_s": 4.21, "longest_s": 5.02, "partitions": 4}}
    runs = [
        {"broker": "tansu", "passed": True, "pauses": {"kill -9 of b": {"median_s": 4.0, "longest_s": 5.0}}},
        {"broker": "kafka", "passed": True, "pauses": {"kill -9 of b": {"median_s": 5.0, "longest_s": 6.0}}},
        {
            "broker": "kafka",
            "passed": False,
            "pauses": {"kill -9 of b": {"median_s": 99.0, "longest_s": 99.0}},
        },
    ]
    text = table(runs)
    assert "| kill -9 of b | median | 4.00 | 5.00 | 1.25 |" in text  # the failed run is left out
    assert "| graceful stop of a | median | - | - | - |" in text


@pytest.mark.parametrize(
    "argv",
    [
        ["bench.run", "--smoke", "--broker", "both"],
        ["bench.ledger", "--ids", "10", "--broker", "kafka"],
        ["bench.scaling", "--broker", "kafka"],
    ],
)
def test_without_the_kafka_jars_a_benchmark_says_so_in_one_line(argv: list[str], tmp_path: Path) -> None:
    env = {**os.environ, "BRIDGE_KAFKA_JARS": str(tmp_path)}  # an empty folder: no broker jars
    done = subprocess.run(
        [sys.executable, "-m", *argv], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 2
    assert done.stdout == ""
    assert (
        done.stderr.strip()
        == f"--broker {argv[-1]}: no Kafka broker jars in {tmp_path}: run `make kafka-jars` (needs mvn)"
    )
