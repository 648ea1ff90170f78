"""``python -m bench.inproc`` as a user runs it: the bridge's own CPU per command, also while commands
wait for call slots (issue 26)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_inproc_with_commands_waiting_for_call_slots_prints_cpu_and_rate() -> None:
    argv = [
        "--commands",
        "300",
        "--latency-ms",
        "5",
        "--max-calls",
        "4",
        "--in-flight",
        "100",
        "--repeat",
        "1",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "bench.inproc", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^CPU per command \(µs\): best \d+\.\d, all \d+\.\d$", done.stdout, re.M), done.stdout
    # 4 slots x 5 ms: at most 800 commands/s however fast the machine is
    rate = float(re.search(r"^commands/s: ([\d,]+)$", done.stdout, re.M)[1].replace(",", ""))  # type: ignore[index]
    assert 0 < rate <= 800


def test_inproc_count_says_the_timers_and_callbacks_per_command() -> None:
    argv = [
        "--commands",
        "200",
        "--latency-ms",
        "5",
        "--max-calls",
        "4",
        "--in-flight",
        "100",
        "--repeat",
        "1",
    ]
    done = subprocess.run(
        [sys.executable, "-m", "bench.inproc", *argv, "--count"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    found = re.search(
        r"^per command: (\d+\.\d\d) timers scheduled, (\d+\.\d\d) callbacks scheduled$", done.stdout, re.M
    )
    assert found, done.stdout
    # the fake provider's sleep is one timer per command; waiting for the 4 slots adds almost none
    assert 1.0 <= float(found[1]) < 1.5


def test_inproc_refuses_an_unknown_option_in_one_line() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench.inproc", "--max-call", "x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_inproc_with_the_ledger_waits_for_its_three_records_a_command() -> None:
    """Every command's ``dispatched``, outcome and ``done`` reach the producer: the run ends only then,
    and a failing ledger write would dead-letter the commands instead (and the run would hang)."""
    argv = ["--commands", "300", "--keys", "30", "--ledger", "--repeat", "1"]
    done = subprocess.run(
        [sys.executable, "-m", "bench.inproc", *argv], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"^CPU per command \(µs\): best \d+\.\d, all \d+\.\d$", done.stdout, re.M), done.stdout
