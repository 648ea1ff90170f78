"""Tracking benchmark: 100,000 tracked workflows in one process.

    python -m bench.tracking --workflows 100000 --budget 200 --seconds 20
    python -m bench.tracking --terminal --runs 400 --send-seconds 40 --budget 50   # bench.tracking_terminal
    python -m bench.tracking --restore 100000                                      # bench.tracking_restore

The real :class:`~bridge.tracking.tracker.Tracker` (timer heap, budgets, policy, event encoding)
follows Zuora runs that stay ``Processing``; the status reads go to an in-memory transport and the
writes to a producer that only counts, so the figures are the tracker's own, without a broker or a
provider. Two phases, each in its own child process so that each RSS is its own:

- ``busy``: every workflow is due 2 s after it started, far more than the budget allows; reports
  the status reads per second (each 1 s window, and overall) against ``--budget``;
- ``idle``: every workflow has just been read and waits its interval (the first read is an hour
  away): reports the CPU the scheduler uses while nothing is due.

Both report peak RSS (``VmHWM``) and the RSS per tracked workflow.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

import aiohttp

from bench import tracking_restore, tracking_terminal
from bench.tracking_doubles import CountingProducer, CountingTransport, counting_tracker, status_kb
from bridge.local.stack import local_settings
from bridge.messages.records import Incoming
from bridge.providers.zuora import ZuoraRunWorkflow
from bridge.sandbox import zuora as zuora_sandbox

TOPIC = "workflow.run.commands"


async def phase(name: str, workflows: int, budget: float, seconds: float) -> dict[str, Any]:
    first_poll = 2.0 if name == "busy" else 3600.0
    tracking = {"first_poll_s": first_poll, "max_interval_s": 3600.0, "polls_per_s": budget}
    settings = local_settings(
        "127.0.0.1:1",
        "http://127.0.0.1:1",
        metrics_port=None,
        overrides={
            "targets": {zuora_sandbox.LOCAL_TARGET: {"tracking": tracking}},
            "tracking": {"max_concurrent_polls": 50},
        },
    )
    rss_before = status_kb("VmRSS")
    async with aiohttp.ClientSession() as session:
        transport, producer = CountingTransport(), CountingProducer()
        tracker = counting_tracker(settings, session, transport, producer)
        tracker.restore_started([(TOPIC, p) for p in range(12)])
        tracker.restore_finished([(TOPIC, p) for p in range(12)])
        started = time.perf_counter()
        for n in range(workflows):
            command = ZuoraRunWorkflow(
                id=f"bench-{n:07d}",
                target=zuora_sandbox.LOCAL_TARGET,
                operation="zuora.run_workflow",
                workflow_id=398,
            )
            tracker.start(Incoming(TOPIC, n % 12, n, f"k{n % 1000}".encode(), None), command, str(10_000 + n))
        start_s = time.perf_counter() - started
        rss_tracked = status_kb("VmRSS")
        async with tracker.running():
            cpu0, wall0 = time.process_time(), time.monotonic()
            await asyncio.sleep(seconds)
            cpu_s, wall_s = time.process_time() - cpu0, time.monotonic() - wall0
        return {
            "phase": name,
            "workflows": workflows,
            "tracked": len(tracker.registry),
            "budget_polls_per_s": budget,
            "start_tracking_s": round(start_s, 2),
            "rss_before_mb": round(rss_before / 1024, 1),
            "rss_tracked_mb": round(rss_tracked / 1024, 1),
            "bytes_per_workflow": round((rss_tracked - rss_before) * 1024 / workflows),
            "peak_rss_mb": round(status_kb("VmHWM") / 1024, 1),
            "seconds": round(wall_s, 1),
            "cpu_s": round(cpu_s, 2),
            "cpu_share": round(cpu_s / wall_s, 4),
            "polls": len(transport.times),
            **poll_rates(transport.times),
            "events": producer.sent.get(settings.topics.lifecycle, 0),
        }


def poll_rates(times: list[float]) -> dict[str, Any]:
    """Reads per second overall and in each whole 1 s window after the first read."""
    if not times:
        return {"polls_per_s": 0.0, "max_polls_in_1s_window": 0}
    windows: dict[int, int] = {}
    for t in times:
        windows[int(t - times[0])] = windows.get(int(t - times[0]), 0) + 1
    whole = [count for second, count in windows.items() if second < int(times[-1] - times[0])]
    span = max(1e-9, times[-1] - times[0])  # from the first read: nothing is due before first_poll_s
    return {"polls_per_s": round((len(times) - 1) / span, 1), "max_polls_in_1s_window": max(whole or [0])}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.tracking", description=__doc__.splitlines()[0])
    p.add_argument("--workflows", type=int, default=100_000)
    p.add_argument("--budget", type=float, default=200.0, help="tracking.polls_per_s of the target")
    p.add_argument("--seconds", type=float, default=20.0, help="how long each phase runs")
    p.add_argument("--child", choices=["busy", "idle"], help=argparse.SUPPRESS)
    tracking_terminal.add_arguments(p)
    p.add_argument("--restore", type=int, metavar="N", help="time and RSS to restore N tracked workflows")
    args = p.parse_args(argv)
    if args.restore:
        print(json.dumps(tracking_restore.measure(args.restore), indent=2))
        return 0
    if args.terminal:
        print(json.dumps(tracking_terminal.measure(args), indent=2))
        return 0
    if args.child:
        result = asyncio.run(phase(args.child, args.workflows, args.budget, args.seconds))
        print(json.dumps(result))
        return 0
    results = []
    for name in ("busy", "idle"):
        child = [sys.executable, "-m", "bench.tracking", "--child", name]
        child += [
            "--workflows",
            str(args.workflows),
            "--budget",
            str(args.budget),
            "--seconds",
            str(args.seconds),
        ]
        out = subprocess.run(child, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    for result in results:
        print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
