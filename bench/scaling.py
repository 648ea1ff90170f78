"""The scaling test's pauses on the embedded Tansu and on Apache Kafka, in turn, in one run.

    python -m bench.scaling --broker both --rounds 2

Runs ``tests/integration/test_scaling.py`` (three bridge processes in one group; a graceful stop, a
kill -9 and a replacement while commands flow, see that file) with ``--broker tansu`` and ``--broker
kafka`` alternately, and collects the pauses it prints: for each membership change, the median and
the longest time a moved partition went without an outcome. Prints a table (the median over the
rounds of each figure, and Kafka ÷ Tansu) and the JSON of every run. Exit 1 when a run of the test
failed (its figures are then not shown), 2 when Kafka cannot be started here.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.brokers import BROKERS, broker_order
from bench.stats import ratio
from bridge.local.kafka_broker import kafka_available

ROOT = Path(__file__).resolve().parents[1]
TEST = "tests/integration/test_scaling.py"
PAUSE = re.compile(r"pause after (.+?): median ([\d.]+) s, longest ([\d.]+) s \((\d+) partitions\)")
CHANGES = ("graceful stop of a", "kill -9 of b", "replacement d joins")


def run_test(broker: str, timeout_s: float) -> dict[str, Any]:
    """The scaling test once on ``broker``: whether it passed, its wall time and its pauses."""
    argv = [sys.executable, "-m", "pytest", TEST, "-q", "-s", "-p", "no:xdist", "--broker", broker]
    argv.append(f"--timeout={timeout_s:.0f}")  # pytest-timeout's, instead of the suite's 120 s
    started = time.perf_counter()
    try:
        done = subprocess.run(
            argv, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s + 60, check=False
        )
        output, code = done.stdout + done.stderr, done.returncode
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
        output, code = f"{partial}\ntimed out after {timeout_s:.0f} s", -1
    pauses = parse_pauses(output)
    return {
        "broker": broker,
        "passed": code == 0,
        "wall_s": round(time.perf_counter() - started, 1),
        "pauses": pauses,
        "failure": "" if code == 0 else failure(output),
    }


def parse_pauses(output: str) -> dict[str, dict[str, float]]:
    """The test's ``pause after ...`` lines: change -> median, longest (s) and partitions moved."""
    return {
        m[1]: {"median_s": float(m[2]), "longest_s": float(m[3]), "partitions": int(m[4])}
        for m in PAUSE.finditer(output)
    }


def failure(output: str) -> str:
    """What pytest said went wrong: its ``E`` lines (the assertion or the exception), or the tail."""
    said = [line for line in output.splitlines() if line.startswith("E ")]
    return "\n".join(said[:40]) if said else output[-2000:]


def table(runs: Sequence[dict[str, Any]]) -> str:
    """Markdown: per membership change, the median over the passed rounds of each broker."""
    passed = [r for r in runs if r["passed"]]
    head = "| change | figure | tansu s | kafka s | kafka / tansu |\n|---|---|---|---|---|"
    lines = [head]
    for change in CHANGES:
        for figure in ("median_s", "longest_s"):
            values = {
                b: [r["pauses"][change][figure] for r in passed if r["broker"] == b and change in r["pauses"]]
                for b in BROKERS
            }
            medians = {b: statistics.median(v) if v else None for b, v in values.items()}
            rel = ratio(medians["kafka"], medians["tansu"])
            cells = [_s(medians["tansu"]), _s(medians["kafka"]), "-" if rel is None else f"{rel:.2f}"]
            lines.append(f"| {change} | {figure.removesuffix('_s')} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.scaling", description=__doc__.splitlines()[0])
    p.add_argument("--broker", choices=["tansu", "kafka", "both"], default="both")
    p.add_argument("--rounds", type=int, default=1, help="--broker both: tansu, kafka rounds")
    p.add_argument("--timeout", type=float, default=300.0, help="pytest-timeout of one run of the test (s)")
    args = p.parse_args(argv)
    if args.broker != "tansu" and (missing := kafka_available()) is not None:
        print(f"--broker {args.broker}: {missing}", file=sys.stderr)
        return 2
    runs = []
    for number, broker in enumerate(broker_order(args.broker, args.rounds), start=1):
        run = run_test(broker, args.timeout)
        runs.append(run)
        shown = "; ".join(
            f"{c}: {p['median_s']:.2f} / {p['longest_s']:.2f} s" for c, p in run["pauses"].items()
        )
        verdict = "passed" if run["passed"] else "FAILED"
        print(
            f"[{number}] {broker}: {verdict} in {run['wall_s']} s; pauses (median / longest) {shown}",
            flush=True,
        )
        if not run["passed"]:
            print(run["failure"], flush=True)
    print(json.dumps(runs, indent=2))
    print(table(runs))
    return 0 if all(r["passed"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
