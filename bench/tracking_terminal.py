"""Time from the sandbox finishing a run to its terminal lifecycle event, end to end.

    python -m bench.tracking --terminal --runs 400 --send-seconds 40 --budget 50

Nothing is in memory but the provider's state: the embedded broker (Tansu), the bridge as its own
process (``python -m bridge run``), the sandbox in a child process over HTTP, and this process
reading the lifecycle topic. ``--runs`` Zuora runs are started over ``--send-seconds``, each lasting a
random ``--min-duration``..``--max-duration`` s (run parameter ``SANDBOX_DURATION_S``), so that runs
end at every point of their poll intervals. The sandbox child serves one more route,
``GET /_bench/runs``: each run's finish instant (its timeline) and the arrival times of its reads.

Per run: ``latency`` = terminal event seen here - run finished in the sandbox (``stamped``: the
event record's timestamp instead, the bridge's clock when it sent it); ``interval`` = the poll
interval the tracker held when the run finished (its policy replayed over the reads that came
before, without jitter); ``slack`` = latency - interval. The bound: latency <= interval + 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiohttp import web
from aiokafka import AIOKafkaConsumer

from bench.procs import Child, machine_busy_s, python_module, read_proc, wait_http
from bench.stats import percentile
from bench.workload import fresh_topics, make_producer
from bridge.config.settings import TopicSettings
from bridge.config.tracking import TargetTracking
from bridge.local.broker import create_topics, free_port, start_broker
from bridge.local.stack import SANDBOX_ENV, local_config, sandbox_targets, topic_layout
from bridge.providers.readings import RunReading, RunState
from bridge.sandbox import zuora as zuora_sandbox
from bridge.sandbox import zuora_runs
from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.server import STATE_KEY, SandboxState, build_app
from bridge.sandbox.zuora import ZuoraSandbox, run_status
from bridge.tracking.entries import TrackedEntry
from bridge.tracking.policy import after_reading
from bridge.tracking.schedule import Tracked

RUN_PATH = "/zuora/workflows/workflow_runs/"
BOUND_S = 1.0
TERMINAL = frozenset(s.value for s in RunState if s.terminal)
CPUS = os.cpu_count() or 1
SETTINGS = [
    "runs",
    "send_seconds",
    "min_duration",
    "max_duration",
    "first_poll",
    "max_interval",
    "jitter",
    "budget",
    "partitions",
    "seed",
]


# -- pure: what one run's figures are ------------------------------------------------------------


def interval_after(reads: int, policy: TargetTracking) -> float:
    """The poll interval (before jitter) the tracker holds after ``reads`` reads found the run running."""
    entry = TrackedEntry("t", 0, "c", zuora_sandbox.LOCAL_TARGET, "zuora.run_workflow", None, (), 0, 0)
    workflow = Tracked(entry, policy.first_poll_s)
    for _ in range(reads):
        step = after_reading(workflow, RunReading(RunState.RUNNING, "Processing"), policy, 0.0)
        workflow.interval_s = step.interval_s
        workflow.entry = replace(workflow.entry, state=RunState.RUNNING)
    return workflow.interval_s


@dataclass(frozen=True, slots=True)
class RunFigures:
    interval_s: float
    latency_s: float
    stamped_s: float
    late_read_s: float | None
    """terminal read - the read before it - interval: jitter plus scheduler slip (None: no read before)"""

    @property
    def slack_s(self) -> float:
        return self.latency_s - self.interval_s

    @property
    def exceeded(self) -> bool:
        return self.latency_s > self.interval_s + BOUND_S


def figures(
    finished_at: float, reads: Sequence[float], seen_at: float, stamped_at: float, policy: TargetTracking
) -> RunFigures:
    before = [r for r in reads if r < finished_at]
    after = [r for r in reads if r >= finished_at]
    interval = interval_after(len(before), policy)
    late = after[0] - before[-1] - interval if before and after else None
    return RunFigures(interval, seen_at - finished_at, stamped_at - finished_at, late)


def _p(values: Sequence[float], q: float) -> float | None:
    found = percentile(values, q)
    return None if found is None else round(found, 3)


def summary(runs: Sequence[RunFigures]) -> dict[str, Any]:
    late = [r.late_read_s for r in runs if r.late_read_s is not None]
    return {
        "runs": len(runs),
        "latency_p50_s": _p([r.latency_s for r in runs], 0.5),
        "latency_p99_s": _p([r.latency_s for r in runs], 0.99),
        "latency_max_s": round(max((r.latency_s for r in runs), default=0.0), 3),
        "stamped_p99_s": _p([r.stamped_s for r in runs], 0.99),
        "slack_p50_s": _p([r.slack_s for r in runs], 0.5),
        "slack_p99_s": _p([r.slack_s for r in runs], 0.99),
        "slack_max_s": round(max((r.slack_s for r in runs), default=-math.inf), 3),
        "late_read_p99_s": _p(late, 0.99),
        "exceeded": sum(r.exceeded for r in runs),
    }


def by_interval(runs: Sequence[RunFigures]) -> dict[str, dict[str, Any]]:
    groups: dict[float, list[RunFigures]] = {}
    for run in runs:
        groups.setdefault(run.interval_s, []).append(run)
    return {f"{interval:g}s": summary(group) for interval, group in sorted(groups.items())}


def max_reads_in_1s(times: Sequence[float]) -> int:
    """The most reads in any 1 s window that starts at a read."""
    ordered, most, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while at - ordered[start] >= 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


# -- the sandbox child -----------------------------------------------------------------------------


def runs_of(state: SandboxState) -> dict[str, dict[str, Any]]:
    """Every Zuora run's finish instant and the arrival times of its status reads."""
    reads: dict[str, list[float]] = {}
    for entry in state.log.entries("zuora"):
        if entry.method == "GET" and entry.path.startswith(RUN_PATH):
            reads.setdefault(entry.path[len(RUN_PATH) :], []).append(entry.arrived_at)
    return {
        str(run_id): {
            "finished_at": run_status(timeline, math.inf)[2],
            "reads": sorted(reads.get(str(run_id), [])),
        }
        for run_id, timeline in zuora_of(state).timelines.items()
    }


def zuora_of(state: SandboxState) -> ZuoraSandbox:
    emulator = state.emulator("zuora")
    assert isinstance(emulator, ZuoraSandbox)
    return emulator


async def serve_sandbox(port: int, log_limit: int) -> None:
    app = build_app(SandboxConfig(request_log_limit=log_limit))
    state = app[STATE_KEY]

    async def view(_: web.Request) -> web.Response:
        return web.Response(body=orjson.dumps(runs_of(state)), content_type="application/json")

    app.add_routes([web.get("/_bench/runs", view)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


# -- the run ---------------------------------------------------------------------------------------


def policy_of(args: Any) -> TargetTracking:
    return TargetTracking(
        first_poll_s=args.first_poll,
        max_interval_s=args.max_interval,
        jitter=args.jitter,
        polls_per_s=args.budget,
        horizon_s=3600,
    )


def bridge_config(bootstrap: str, sandbox_url: str, topics: TopicSettings, args: Any, port: int) -> Any:
    targets: dict[str, Any] = {
        name: {"tracking": {"enabled": False}} for name in sandbox_targets(sandbox_url)
    }
    targets[zuora_sandbox.LOCAL_TARGET] = {"tracking": policy_of(args).model_dump()}
    overrides = {
        "topics": topics.model_dump(),
        "kafka": {"group_id": f"bench-terminal-{uuid.uuid4().hex[:8]}"},
        "targets": targets,
        "tracking": {"max_concurrent_polls": 50},
    }
    return local_config(bootstrap, sandbox_url, metrics_port=port, overrides=overrides)


def commands(args: Any) -> list[tuple[str, float]]:
    """(command id, run duration) of every run, the durations from a seeded generator."""
    rng = random.Random(args.seed)
    span = args.max_duration - args.min_duration
    return [(f"term-{n:05d}", round(args.min_duration + span * rng.random(), 3)) for n in range(args.runs)]


async def send(bootstrap: str, topic: str, planned: list[tuple[str, float]], seconds: float) -> None:
    producer = make_producer(bootstrap, linger_ms=0)
    await producer.start()
    try:
        started, pending = time.monotonic(), []
        for n, (command_id, duration) in enumerate(planned):
            await asyncio.sleep(max(0.0, started + n * seconds / len(planned) - time.monotonic()))
            doc = {
                "id": command_id,
                "target": zuora_sandbox.LOCAL_TARGET,
                "operation": "zuora.run_workflow",
                "workflow_id": zuora_runs.ZUORA_DEFINITION_NO_PARAMS,
                "parameters": {zuora_runs.ZUORA_DURATION_PARAM: duration},
            }
            pending.append(await producer.send(topic, orjson.dumps(doc), key=command_id.encode()))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def collect(bootstrap: str, topic: str, expected: int, within_s: float) -> dict[str, list[Any]]:
    """Terminal lifecycle events by command id: (seen at, record timestamp, run id, status) each;
    read for 1 s more once every run has one (room for a second one, if one were coming)."""
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", fetch_max_wait_ms=10
    )
    found: dict[str, list[Any]] = {}
    await consumer.start()
    try:
        deadline = time.monotonic() + within_s
        while time.monotonic() < deadline:
            if len(found) >= expected:
                deadline = min(deadline, time.monotonic() + 1.0)
            batch = await consumer.getmany(timeout_ms=100)
            seen = time.time()
            for records in batch.values():
                for record in records:
                    data = orjson.loads(record.value)["data"]
                    if data["status"] in TERMINAL:
                        event = (seen, record.timestamp / 1000, data["provider_ref"], data["status"])
                        found.setdefault(data["command_id"], []).append(event)
    finally:
        await consumer.stop()
    return found


async def sandbox_runs(url: str) -> dict[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.get(f"{url}/_bench/runs") as resp:
        result: dict[str, dict[str, Any]] = await resp.json()
        return result


def analyse(events: dict[str, list[Any]], runs: dict[str, dict[str, Any]], args: Any) -> dict[str, Any]:
    policy, measured = policy_of(args), []
    for found in events.values():
        seen, stamped, run_id, _ = found[0]
        run = runs[run_id]
        measured.append(figures(run["finished_at"], run["reads"], seen, stamped, policy))
    reads = [t for run in runs.values() for t in run["reads"]]
    statuses: dict[str, int] = {}
    for found in events.values():
        statuses[found[0][3]] = statuses.get(found[0][3], 0) + 1
    return {
        **summary(measured),
        "missing": args.runs - len(events),
        "doubled": sum(len(found) > 1 for found in events.values()),
        "statuses": statuses,
        "reads": len(reads),
        "max_reads_in_1s": max_reads_in_1s(reads),
        "by_interval": by_interval(measured),
    }


def measure(args: Any) -> dict[str, Any]:
    """The whole run; the logs stay in ``--workdir`` (default: a fresh temporary folder)."""
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="bench-terminal-"))
    workdir.mkdir(parents=True, exist_ok=True)
    return asyncio.run(run(args, workdir))


async def run(args: Any, workdir: Path) -> dict[str, Any]:
    sandbox_port, metrics_port = free_port(), free_port()
    url = f"http://127.0.0.1:{sandbox_port}"
    log_limit = str(args.runs * 40)
    argv = python_module("bench.tracking_terminal", "--sandbox", str(sandbox_port), log_limit)
    sandbox = Child.spawn("sandbox", argv, workdir / "sandbox.log")
    bridge: Child | None = None
    broker = await start_broker(log_path=workdir / "broker.log")
    try:
        await wait_http(sandbox, f"{url}/_sandbox/faults")
        topics = fresh_topics("terminal").model_copy(
            update={"lifecycle": f"bench-terminal-{uuid.uuid4().hex[:8]}.lifecycle"}
        )
        await create_topics(broker.bootstrap, topic_layout(topics, args.partitions))
        config = workdir / "bridge.yaml"
        config.write_text(yaml.safe_dump(bridge_config(broker.bootstrap, url, topics, args, metrics_port)))
        bridge_argv = python_module("bridge", "run", "--config", str(config))
        bridge = Child.spawn("bridge", bridge_argv, workdir / "bridge.log", env={**os.environ, **SANDBOX_ENV})
        await wait_http(bridge, f"http://127.0.0.1:{metrics_port}/readyz", timeout_s=60)
        planned = commands(args)
        busy0, wall0, cpu0 = machine_busy_s(), time.monotonic(), read_proc(bridge.pid)
        within = args.send_seconds + args.max_duration + 2 * args.max_interval + 30
        collecting = asyncio.create_task(collect(broker.bootstrap, topics.lifecycle, args.runs, within))
        await send(broker.bootstrap, topics.run_commands, planned, args.send_seconds)
        events = await collecting
        wall, cpu1 = time.monotonic() - wall0, read_proc(bridge.pid)
        runs = await sandbox_runs(url)
        (workdir / "runs.json").write_bytes(orjson.dumps({"runs": runs, "events": events}))
        result = analyse(events, runs, args)
    finally:
        if bridge is not None:
            await asyncio.to_thread(bridge.stop, 15.0)
        await asyncio.to_thread(sandbox.stop, 5.0)
        await broker.stop()
    bridge_cpu = (cpu1.cpu_s - cpu0.cpu_s) if cpu0 and cpu1 else None
    return {
        "settings": {k: getattr(args, k) for k in SETTINGS},
        "seconds": round(wall, 1),
        "machine_busy": round((machine_busy_s() - busy0) / (wall * CPUS), 3),
        "bridge_cpu_share": None if bridge_cpu is None else round(bridge_cpu / wall, 3),
        **result,
        "logs": str(workdir),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--terminal", action="store_true", help="time from a run's end to its terminal event")
    p.add_argument("--runs", type=int, default=400, help="--terminal: Zuora runs started")
    p.add_argument("--send-seconds", type=float, default=40.0, help="--terminal: over this long")
    p.add_argument("--min-duration", type=float, default=1.0, help="--terminal: shortest run, s")
    p.add_argument("--max-duration", type=float, default=40.0, help="--terminal: longest run, s")
    p.add_argument("--first-poll", type=float, default=2.0, help="--terminal: tracking.first_poll_s")
    p.add_argument("--max-interval", type=float, default=16.0, help="--terminal: tracking.max_interval_s")
    p.add_argument("--jitter", type=float, default=0.2, help="--terminal: tracking.jitter")
    p.add_argument("--partitions", type=int, default=4, help="--terminal: command topic partitions")
    p.add_argument("--seed", type=int, default=1, help="--terminal: seeds the run durations")
    p.add_argument("--workdir", help="--terminal: where the logs go (default a fresh /tmp folder)")


def main(argv: Sequence[str] | None = None) -> int:
    """The sandbox child: ``python -m bench.tracking_terminal --sandbox PORT LOG_LIMIT``."""
    p = argparse.ArgumentParser(prog="python -m bench.tracking_terminal")
    p.add_argument("--sandbox", nargs=2, type=int, metavar=("PORT", "LOG_LIMIT"), required=True)
    args = p.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve_sandbox(*args.sandbox))
    return 0


if __name__ == "__main__":
    sys.exit(main())
