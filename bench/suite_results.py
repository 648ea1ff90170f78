"""The suite's results file, kept in git: ``bench/results/suite-<UTC time>.yaml``.

It holds what the docs quote (``python -m bench.report`` renders the performance page's table from
the newest one) and what is needed to judge the figures: the date, the commit (and whether the
work tree had changes), the command, the machine, and the machine's foreign load during the run:
the load average at the start and the end, and for each bridge run the share of the machine used by
processes that are not part of the benchmark (other test runs on a shared machine).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bench.goals import Cost, calls_per_command
from bench.stats import RESULTS_DIR, Row, Target

PATTERN = "suite-*.yaml"


@dataclass(frozen=True, slots=True)
class Started:
    at: float
    load_average: tuple[float, float, float]
    commit: str
    """taken at the start: the code the run measured, whatever is edited while it runs"""

    @classmethod
    def now(cls) -> Started:
        return cls(time.time(), os.getloadavg(), commit())


def commit() -> str:
    """The checked-out commit, with ``+changes`` when the work tree differs from it."""
    root = Path(__file__).resolve().parents[1]
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{head}+changes" if dirty else head


def _r(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def row_doc(row: Row) -> dict[str, Any]:
    return {
        "scenario": row.scenario,
        "run": row.kind,
        "round": row.extra.get("round"),
        "commands": row.commands,
        "commands_per_s": _r(row.rate, 1),
        "cpu_ms_per_command": _r(row.cpu_ms_per_command, 3),
        "http_calls_per_command": _r(calls_per_command(row), 2),
        "added_p50_ms": _r(row.added_p50_ms, 1),
        "added_p99_ms": _r(row.added_p99_ms, 1),
        "e2e_p99_ms": _r(row.e2e_p99_ms, 1),
        "peak_rss_mb": _r(row.peak_rss_mb, 1),
        "foreign_share": row.extra.get("foreign_share"),
    }


def document(
    argv: Sequence[str],
    rows: Sequence[Row],
    targets: Sequence[Target],
    costs: Sequence[Cost],
    started: Started,
) -> dict[str, Any]:
    shares = [s for r in rows if (s := r.extra.get("foreign_share")) is not None]
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started.at)),
        "commit": started.commit,
        "command": " ".join(["python -m bench.run", *argv[1:]]),
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "foreign_load": {
            "load_average_start": [round(v, 2) for v in started.load_average],
            "load_average_end": [round(v, 2) for v in os.getloadavg()],
            "share_median": _r(statistics.median(shares), 3) if shares else None,
            "share_max": _r(max(shares), 3) if shares else None,
        },
        "goals": [
            {
                "scenario": t.scenario,
                "what": t.what,
                "value": _r(t.value, 3),
                "target": t.threshold,
                "at_least": t.at_least,
                "passed": t.passed,
            }
            for t in targets
        ],
        "guarantees": [
            {
                "run": c.kind,
                "rounds": c.rounds,
                "commands_per_s": _r(c.rate, 1),
                "cpu_ms_per_command": _r(c.cpu_ms, 3),
                "http_calls_per_command": _r(c.calls, 2),
            }
            for c in costs
        ],
        "rows": [row_doc(r) for r in rows],
    }


def write(
    argv: Sequence[str],
    rows: Sequence[Row],
    targets: Sequence[Target],
    costs: Sequence[Cost],
    started: Started,
) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"suite-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(started.at))}.yaml"
    doc = document(argv, rows, targets, costs, started)
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def newest(folder: Path = RESULTS_DIR) -> Path | None:
    found = sorted(folder.glob(PATTERN))
    return found[-1] if found else None


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or "goals" not in doc or "rows" not in doc:
        raise ValueError(f"{path} is not a suite results file")
    return doc
