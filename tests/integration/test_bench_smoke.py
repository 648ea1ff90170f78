"""The benchmark's smoke mode: broker, sandbox and bridge as real processes, one outcome per command."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_bench_smoke_gives_every_command_exactly_one_outcome() -> None:
    # Its own process group, so that a timeout also ends the broker, sandbox and bridge it started.
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.run", "--smoke"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = process.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        pytest.fail(f"bench smoke did not finish within 120 s:\n{output[-4000:]}")
    assert process.returncode == 0, output[-4000:]
    assert "smoke: OK" in output
