"""The benchmark's smoke mode: broker, sandbox and bridge as real processes, one outcome per command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_gives_every_command_exactly_one_outcome() -> None:
    assert "smoke: OK" in run_module("bench.run", "--smoke")


def run_module(module: str, *args: str, timeout_s: float = 120) -> str:
    """``python -m module args``; its output. Its own process group, so that a timeout also ends
    the broker, sandbox and bridge it started."""
    process = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"{module} {args} did not finish within {timeout_s} s:\n{output[-4000:]}")
    assert process.returncode == 0, output[-4000:]
    return output


def test_terminal_bench_follows_every_run_to_exactly_one_terminal_event(tmp_path: Path) -> None:
    args = ("--runs", "10", "--send-seconds", "2", "--max-duration", "3", "--workdir", str(tmp_path))
    output = run_module("bench.tracking", "--terminal", *args)
    result = json.loads(output[output.index("{") :])
    assert (result["runs"], result["missing"], result["doubled"]) == (10, 0, 0)
    assert result["statuses"] == {"completed": 10}
    assert result["reads"] >= 10 and sum(g["runs"] for g in result["by_interval"].values()) == 10


def test_restore_bench_restores_and_schedules_every_tracked_workflow() -> None:
    result = json.loads(run_module("bench.tracking", "--restore", "1000"))
    assert (result["workflows"], result["records"], result["tracked"], result["scheduled"]) == (
        1000,
        2000,
        1000,
        1000,
    )


def test_status_bench_looks_up_every_id_from_the_topics_and_the_owners_ledger() -> None:
    output = run_module("bench.status", "--records", "3000", "--rounds", "1")
    result = json.loads(output[: output.rindex("}") + 1])
    states = result["states"]
    assert states["unknown"] == states["unknown, owner's ledger"] == "unknown", states
    for label in ("old", "middle", "new"):
        assert states[label] == states[f"{label}, owner's ledger"] == "absorbed", states
    # 3,000 records: the newest 20,000 cover them all, so the ledger stands in for none of them
    assert any(n.startswith("read whole: ") for n in result["notes"]["unknown, owner's ledger"])
    assert output.count("PASS") + output.count("MISS") == 10
