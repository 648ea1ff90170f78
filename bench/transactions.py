"""Kafka transactions on vs off, in one run on Apache Kafka (issue 24): commands/s at 50 ms provider
latency, then a paced feed at half the off rate for the added p99; off and on alternate per round so
that the machine's other load hits both alike.

    python -m bench.transactions                       # 2 rounds, 5,000 commands, 1,000 keys, 4 partitions
    python -m bench.transactions --rounds 3 --commands 3000 --batch-ms 20

Needs the Kafka jars (``make kafka-jars``) and Java. Outcomes are read ``read_committed``, so the
latency is the one a downstream consumer with the guarantee sees.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from statistics import median
from typing import Any

from bench.run import Report, scenario
from bench.scenarios import Bench, started
from bench.stats import Row, ratio
from bench.workload import Latency, Shape

MODES = ("off", "on")


def _mode(bench: Bench, mode: str, batch_ms: int) -> None:
    kafka = {"transactions": mode, "enable_idempotence": True, "transaction_batch_ms": batch_ms}
    bench.bridge_overrides = {**bench.bridge_overrides, "kafka": kafka}


def _median(rows: list[Row], figure: str) -> float | None:
    values = [v for r in rows if (v := getattr(r, figure)) is not None]
    return median(values) if values else None


async def on_vs_off(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    report = Report()
    shape, latency = Shape(args.commands, args.keys, args.partitions), Latency(50)
    async with started(workdir, "kafka") as bench:
        bench.bridge_log_level = "WARNING"
        full: dict[str, list[Row]] = {m: [] for m in MODES}
        for n in range(args.rounds):
            for mode in MODES:
                _mode(bench, mode, args.batch_ms)
                full[mode].append(
                    await scenario(
                        bench, report, f"txn-{mode}-r{n + 1}", shape, latency, 1000, args, baselines_too=False
                    )
                )
        rate = max(10.0, (_median(full["off"], "rate") or 20.0) / 2)
        paced: dict[str, list[Row]] = {m: [] for m in MODES}
        for n in range(args.rounds):
            for mode in MODES:
                _mode(bench, mode, args.batch_ms)
                half = Shape(int(rate * args.paced_seconds), args.keys, args.partitions)
                paced[mode].append(
                    await scenario(
                        bench,
                        report,
                        f"txn-{mode}-paced-r{n + 1}",
                        half,
                        latency,
                        1000,
                        args,
                        rate=rate,
                        baselines_too=False,
                    )
                )
    checks = {name: check.ok for name, check in report.checks.items()}
    off_rate, on_rate = _median(full["off"], "rate"), _median(full["on"], "rate")
    off_p99, on_p99 = _median(paced["off"], "added_p99_ms"), _median(paced["on"], "added_p99_ms")
    return {
        "rate_off": off_rate,
        "rate_on": on_rate,
        "rate_ratio_on_over_off": ratio(on_rate, off_rate),
        "paced_rate": rate,
        "added_p99_ms_off": off_p99,
        "added_p99_ms_on": on_p99,
        "added_p99_ms_on_minus_off": None if on_p99 is None or off_p99 is None else on_p99 - off_p99,
        "every_run_one_outcome_per_command": all(checks.values()),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.transactions", description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--commands", type=int, default=5000)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--paced-seconds", type=float, default=10.0)
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--batch-ms", type=int, default=100, help="kafka.transaction_batch_ms of the on runs")
    args = p.parse_args(argv)
    args.profile = None
    with tempfile.TemporaryDirectory(prefix="bench-txn-") as tmp:
        result = asyncio.run(on_vs_off(args, Path(tmp)))
    for name, value in result.items():
        print(f"{name}: {round(value, 3) if isinstance(value, float) else value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
