"""Restore of tracked workflows from the ledger topic on assignment: time and RSS.

    python -m bench.tracking --restore 100000

Writes ``--restore`` N tracked workflows into ledger partition 0 of a fresh embedded broker (Tansu),
each as the bridge writes it: the entry written when tracking started and its rewrite after the
first lifecycle event (``running``), so 2 N records. A child process then does what the bridge
does when command partition 0 is assigned: :meth:`Ledger.restore` with the real
:class:`~bridge.tracking.tracker.Tracker` as its sibling state, which schedules every restored
workflow. It reports its own RSS before and after, its peak (``VmHWM``) and the time taken.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import aiohttp
from aiokafka import TopicPartition

from bench.ledger import fill_partition
from bench.tracking_doubles import CountingProducer, CountingTransport, counting_tracker, status_kb
from bridge.local.broker import create_topics, start_broker
from bridge.local.stack import local_settings
from bridge.providers.readings import RunState
from bridge.sandbox import zuora as zuora_sandbox
from bridge.tracking.entries import TrackedEntry, encode

LEDGER, COMMANDS = "bench.restore-tracked.ledger", "bench.restore-tracked.commands"


def entries(n: int, now_ms: int) -> tuple[TrackedEntry, TrackedEntry]:
    """The n-th workflow's first entry and its rewrite after the ``running`` event."""
    first = TrackedEntry(
        COMMANDS,
        0,
        f"cmd-{n:08d}",
        zuora_sandbox.LOCAL_TARGET,
        "zuora.run_workflow",
        f"k{n % 1000}".encode(),
        (("run_id", str(100_000 + n)),),
        n,
        now_ms,
    )
    return first, replace(first, state=RunState.RUNNING, seq=1)


async def fill(bootstrap: str, workflows: int) -> float:
    now_ms = int(time.time() * 1000)
    records = (encode(entry) for n in range(workflows) for entry in entries(n, now_ms))
    return await fill_partition(bootstrap, LEDGER, records)


async def restore_child(bootstrap: str) -> dict[str, Any]:
    """In the child: RSS with the tracker built, restore partition 0 as on assignment, RSS after."""
    from bridge.ledger.store import Ledger
    from bridge.observability.metrics import Metrics

    overrides = {"topics": {"run_commands": COMMANDS, "ledger": LEDGER}}
    settings = local_settings(bootstrap, "http://127.0.0.1:1", metrics_port=None, overrides=overrides)
    async with aiohttp.ClientSession() as session:
        tracker = counting_tracker(settings, session, CountingTransport(), CountingProducer())
        ledger = Ledger(settings, None, Metrics(), sibling=tracker)  # restore only reads: no producer
        before = status_kb("VmRSS")
        started = time.perf_counter()
        await ledger.restore([TopicPartition(COMMANDS, 0)])
        seconds = time.perf_counter() - started
        return {
            "tracked": len(tracker.registry),
            "scheduled": sum(len(heap) for heap in tracker.registry.heaps.values()),
            "restore_s": round(seconds, 2),
            "rss_before_mb": round(before / 1024, 1),
            "rss_after_mb": round(status_kb("VmRSS") / 1024, 1),
            "peak_rss_mb": round(status_kb("VmHWM") / 1024, 1),
        }


async def restore_bench(workflows: int) -> dict[str, Any]:
    broker = await start_broker()
    try:
        await create_topics(broker.bootstrap, {LEDGER: 1, COMMANDS: 1})
        fill_s = await fill(broker.bootstrap, workflows)
        argv = [sys.executable, "-m", "bench.tracking_restore", broker.bootstrap]
        child = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, check=True, timeout=900
        )
        result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        broker.kill()
    grown = (result["rss_after_mb"] - result["rss_before_mb"]) * 1024 * 1024
    return {
        "workflows": workflows,
        "records": 2 * workflows,
        **result,
        "fill_s": round(fill_s, 1),
        "bytes_per_workflow": round(grown / max(1, result["tracked"])),
        "workflows_per_s": round(result["tracked"] / max(result["restore_s"], 1e-9)),
    }


def measure(workflows: int) -> dict[str, Any]:
    return asyncio.run(restore_bench(workflows))


if __name__ == "__main__":
    print(json.dumps(asyncio.run(restore_child(sys.argv[1]))))
