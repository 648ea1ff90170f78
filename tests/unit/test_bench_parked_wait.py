"""``python -m bench.parked_wait`` as a user runs it: what parked commands cost while they wait, and
the before/after comparison against another checkout (issue 26.1)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINE = re.compile(
    r"^(?:(before|after)\s+)?(recovery|key|due): (\d+) parked for (\d+\.\d) s: (\d+\.\d{3}) CPU s, "
    r"(\d+) callbacks \((\d+\.\d\d) per command per second\), (\d+) timers, (\d+) came back$",
    re.M,
)


def bench(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.parked_wait", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_parked_commands_waking_nothing_while_they_wait_in_every_scenario() -> None:
    done = bench("--commands", "300", "--seconds", "0.5")
    assert done.returncode == 0, done.stderr
    assert re.search(r"^load average: \d+\.\d\d \d+\.\d\d \d+\.\d\d$", done.stdout, re.M), done.stdout
    rows = LINE.findall(done.stdout)
    assert [row[1] for row in rows] == ["recovery", "key", "due"], done.stdout
    for row in rows:
        # nothing can bring them back in the window, and nothing wakes them: 0.5 s of polling at
        # 0.5 s (50 ms while the key is held) woke each one at least once
        assert (row[2], row[8], row[7]) == ("300", "0", "0"), done.stdout
        assert int(row[5]) < 30, done.stdout


def test_against_another_checkout_prints_before_after_and_their_ratio() -> None:
    done = bench("--commands", "50", "--seconds", "0.2", "--scenario", "key", "--against", str(ROOT))
    assert done.returncode == 0, done.stderr
    assert [row[:2] for row in LINE.findall(done.stdout)] == [("before", "key"), ("after", "key")]
    assert re.search(r"^key: before / after: callbacks \S+.*, CPU \S+", done.stdout, re.M), done.stdout


def test_operator_mistakes_get_one_line_and_exit_2() -> None:
    for argv, says in (
        (["--commands", "0"], "--commands must be at least 1"),
        (["--against", str(ROOT / "docs")], "no bridge package there"),
    ):
        done = bench(*argv)
        assert done.returncode == 2 and done.stdout == "", done
        assert len(done.stderr.splitlines()) == 1 and done.stderr.startswith("error: ")
        assert says in done.stderr and "Traceback" not in done.stderr
