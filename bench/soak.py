"""Soak: the bridge at a steady share of its capacity for a long, bounded time, under a seeded fault schedule.

    python -m bench.soak                          # 30 minutes at 150 commands/s, faults every ~2 minutes
    python -m bench.soak --minutes 5 --seed 7     # a short run
    python -m bench.soak --hours 2 --write        # the long run; its table goes to bench/results/
    python -m bench.soak --ledger-store           # the ledger in a disk store: memory stops growing with it
    python -m bench.soak --broker kafka           # on Apache Kafka (Tansu's in-memory log slows as it grows)

One bridge process (default settings but a tracking poll budget of twice the rate, 4 partitions, workfloo
sandbox at 50 ms) gets commands at
``--rate`` over ``--keys`` keys. Faults, chosen by a seeded random schedule: the provider answering 503
for a while, the provider hanging, the broker paused (SIGSTOP) for 5-15 s, and with ``--restarts`` the
bridge killed (kill -9) or stopped (SIGTERM) and started again. Printed per interval: commands/s
answered, the added latency (record timestamp to outcome read) p50 and p99, the bridge's RSS, open
file descriptors, asyncio tasks and ledger entries (from its metrics), and the faults begun. At the end:
lost commands, duplicates (a kill -9 may explain up to ``engine.max_in_flight``), key-order breaks, and
the drift after warm-up, the last quarter of the run against the first: the medians of RSS, open
descriptors and tasks, and of the p99 of the calm intervals (no fault begun in them or the two before:
a fault's own cost is not drift); and what the faults added, p99 worst / first.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import signal
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import aiohttp
import orjson

from bench.brokers import BROKERS
from bench.decompose import order_violations
from bench.outage import set_fault
from bench.procs import Child, read_proc
from bench.scenarios import Bench, bridge_config, spawn_bridge, started
from bench.workload import (
    PROVIDER,
    TARGET,
    Latency,
    OutcomeCollector,
    Sent,
    command,
    key_of,
    make_producer,
    make_topics,
)
from bench.workload import set_latency as reset_sandbox
from bridge.local.broker import free_port

RESULTS = Path(__file__).resolve().parent / "results"
FAULTS = ("provider_503", "provider_hang", "broker_pause")
RESTARTS = ("kill9", "sigterm")


@dataclass
class Interval:
    at_s: float
    answered: int
    latencies: list[float]
    rss_mb: float | None
    fds: int | None
    tasks: float | None
    ledger: float | None
    faults: list[str]

    def row(self, seconds: float) -> str:
        p50, p99 = quantiles(self.latencies)
        return (
            f"{self.at_s:7.0f}s  {self.answered / seconds:7.1f}/s  p50 {p50 * 1000:7.1f} ms  "
            f"p99 {p99 * 1000:7.1f} ms  rss {fmt(self.rss_mb, '.1f')} MB  fds {fmt(self.fds, 'd')}  "
            f"tasks {fmt(self.tasks, '.0f')}  ledger {fmt(self.ledger, '.0f')}  {' '.join(self.faults)}"
        )


@dataclass
class Soak:
    bench: Bench
    args: argparse.Namespace
    config: dict[str, object]
    metrics_url: str
    label: str
    bridge: Child
    sent: Sent = field(default_factory=Sent)
    faults: list[str] = field(default_factory=list)
    restarts: int = 0
    sending: bool = True


def quantiles(values: list[float]) -> tuple[float, float]:
    if len(values) < 2:
        return (values[0], values[0]) if values else (float("nan"), float("nan"))
    cuts = statistics.quantiles(values, n=100)
    return cuts[49], cuts[98]


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


async def scrape(url: str, names: Sequence[str]) -> dict[str, float]:
    found: dict[str, float] = {}
    with contextlib.suppress(aiohttp.ClientError, TimeoutError):
        async with (
            aiohttp.ClientSession() as session,
            session.get(url, timeout=aiohttp.ClientTimeout(2)) as r,
        ):
            for line in (await r.text()).splitlines():
                name, _, value = line.partition(" ")
                if name in names:
                    found[name] = float(value)
    return found


async def send_steadily(soak: Soak, topic: str) -> int:
    """Commands at ``--rate`` until told to stop; returns how many were sent."""
    producer = make_producer(soak.bench.world.bootstrap, linger_ms=5)
    await producer.start()
    sent, began = 0, time.monotonic()
    try:
        while soak.sending:
            due = began + sent / soak.args.rate
            if (delay := due - time.monotonic()) > 0:
                await asyncio.sleep(delay)
            cid, now = f"{soak.label}-{sent}", time.time()
            soak.sent.at[cid] = now
            await producer.send(
                topic, command_doc(cid), key=key_of(sent, soak.args.keys), timestamp_ms=int(now * 1000)
            )
            sent += 1
    finally:
        await producer.stop()
    return sent


def command_doc(cid: str) -> bytes:
    return orjson.dumps(command(cid))


async def sandbox_fault(soak: Soak, spec: dict[str, object]) -> None:
    await set_fault(soak.bench.world.sandbox_url, PROVIDER, {"latency_ms": 50, **spec})


async def restart(soak: Soak, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        soak.bridge.process.send_signal(sig)
    await asyncio.to_thread(soak.bridge.process.wait, 60)
    soak.restarts += 1
    soak.bridge = spawn_bridge(soak.bench, soak.label, soak.config)


async def one_fault(soak: Soak, kind: str, rng: random.Random) -> None:
    soak.faults.append(kind)
    lasts = rng.uniform(5, 15)
    if kind == "provider_503":
        await sandbox_fault(soak, {"fail_next": {"count": 10**6, "status": 503}})
        await asyncio.sleep(lasts)
        await sandbox_fault(soak, {})
    elif kind == "provider_hang":
        await sandbox_fault(soak, {"timeout_next": {"count": 10**6, "delay_s": 3600}})
        await asyncio.sleep(lasts)
        await sandbox_fault(soak, {})
    elif kind == "broker_pause":
        os.kill(soak.bench.broker_pid, signal.SIGSTOP)
        try:
            await asyncio.sleep(lasts)
        finally:
            os.kill(soak.bench.broker_pid, signal.SIGCONT)
    elif kind == "kill9":
        await restart(soak, signal.SIGKILL)
    elif kind == "sigterm":
        await restart(soak, signal.SIGTERM)


async def fault_schedule(soak: Soak, until: float) -> None:
    rng = random.Random(soak.args.seed)
    kinds = FAULTS + (RESTARTS if soak.args.restarts else ())
    while True:
        gap = rng.expovariate(1 / soak.args.fault_every_s)
        if time.monotonic() + gap > until - soak.args.interval:  # the last interval stays quiet
            return
        await asyncio.sleep(gap)
        await one_fault(soak, rng.choice(kinds), rng)


async def watch(soak: Soak, collector: OutcomeCollector, until: float) -> list[Interval]:
    intervals: list[Interval] = []
    began, seen = time.monotonic(), set(collector.arrivals)
    while time.monotonic() < until:
        end = min(until, time.monotonic() + soak.args.interval)
        while time.monotonic() < end:
            await collector.collect(10**12, min(1.0, max(0.01, end - time.monotonic())))
        fresh = [cid for cid in collector.arrivals if cid not in seen]
        seen.update(fresh)
        latencies = [collector.arrivals[c][0].at - soak.sent.at[c] for c in fresh if c in soak.sent.at]
        sample = read_proc(soak.bridge.pid)
        gauges = await scrape(soak.metrics_url, ("bridge_event_loop_tasks", "bridge_ledger_entries"))
        faults, soak.faults = soak.faults, []
        interval = Interval(
            time.monotonic() - began,
            len(fresh),
            latencies,
            sample.rss_mb if sample else None,
            open_fds(soak.bridge.pid),
            gauges.get("bridge_event_loop_tasks"),
            gauges.get("bridge_ledger_entries"),
            faults,
        )
        intervals.append(interval)
        print(interval.row(soak.args.interval), flush=True)
    return intervals


def calm(intervals: list[Interval], index: int, after: int) -> bool:
    """No fault began in this interval or in the ``after`` intervals before it."""
    return not any(i.faults for i in intervals[max(0, index - after) : index + 1])


def drift(intervals: list[Interval], warmup: int, calm_after: int = 2) -> str:
    """The last quarter after warm-up against the first: RSS medians, and the p99 medians of the calm
    intervals (a fault's own cost is not drift); then what the faults added, p99 worst / first."""
    steady = [n for n in range(warmup, len(intervals)) if intervals[n].rss_mb is not None]
    if len(steady) < 4:
        return "drift: too few intervals after warm-up to judge"
    quarter = len(steady) // 4
    head, tail = steady[:quarter], steady[-quarter:]
    p99 = {n: quantiles(intervals[n].latencies)[1] for n in steady}

    def median(part: list[int], gauge: Callable[[int], float | None]) -> float | None:
        values = [v for n in part if (v := gauge(n)) is not None and not math.isnan(v)]
        return statistics.median(values) if values else None

    def calm_p99(n: int) -> float | None:
        return p99[n] if calm(intervals, n, calm_after) else None

    def gauge_text(gauge: Callable[[int], float | None]) -> str:
        return " -> ".join(fmt(median(part, gauge), ".0f") for part in (head, tail))

    rss_head, rss_tail = (median(part, lambda n: intervals[n].rss_mb) or 0.0 for part in (head, tail))
    first_p99, last_p99 = median(head, calm_p99), median(tail, calm_p99)
    calm_ratio = (
        f"{last_p99 / first_p99:.2f} x ({first_p99 * 1000:.0f} -> {last_p99 * 1000:.0f} ms)"
        if first_p99 and last_p99
        else "- (no calm interval in a quarter)"
    )
    measured = [p99[n] for n in steady if not math.isnan(p99[n])]
    return (
        f"drift after {warmup} warm-up interval(s), last quarter / first ({quarter} intervals each): "
        f"RSS median {rss_tail / rss_head:.2f} x ({rss_head:.1f} -> {rss_tail:.1f} MB); "
        f"p99 median of calm intervals {calm_ratio}; "
        f"fds median {gauge_text(lambda n: intervals[n].fds)}; "
        f"tasks median {gauge_text(lambda n: intervals[n].tasks)}\n"
        f"faults: p99 worst / first {max(measured) / measured[0] if measured else float('nan'):.2f} x"
    )


async def soak_run(bench: Bench, args: argparse.Namespace) -> str:
    label = f"soak-{uuid.uuid4().hex[:6]}"
    topics = await make_topics(bench.world.bootstrap, label, 4)
    await reset_sandbox(bench.world.sandbox_url, Latency(50))
    port = free_port()
    config = bridge_config(bench, topics, 1000, metrics_port=port)
    # every command starts a workflow that ends 2 s later: its first status read ends it, so the poll
    # budget must cover the command rate (the default 5 reads/s lets followed workflows pile up)
    config["targets"][TARGET]["tracking"] = {"polls_per_s": 2 * args.rate}
    if args.ledger_store:  # kept across the restarts, as a persistent volume would be
        config.setdefault("ledger", {})["store"] = {"path": str(bench.workdir / "ledger-store")}
    soak = Soak(
        bench, args, config, f"http://127.0.0.1:{port}/metrics", label, spawn_bridge(bench, label, config)
    )
    until = time.monotonic() + args.seconds
    tasks: list[asyncio.Task[object]] = []
    try:
        async with OutcomeCollector(bench.world.bootstrap, topics) as collector:
            sender = asyncio.create_task(send_steadily(soak, topics.run_commands))
            faults = asyncio.create_task(fault_schedule(soak, until))
            tasks += [sender, faults]
            intervals = await watch(soak, collector, until)
            soak.sending = False
            total = await sender
            await faults
            await sandbox_fault(soak, {})
            await collector.collect(total, args.settle_s)
            await collector.settle(2.0)
    finally:
        for task in tasks:  # interrupted: the sender and the faults end before the broker and sandbox do
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.to_thread(soak.bridge.stop, 30.0)
    expected = set(soak.sent.at)
    missing = len(expected - collector.arrivals.keys())
    doubled = sum(1 for a in collector.arrivals.values() if len(a) > 1)
    breaks = order_violations({c: a[0] for c, a in collector.arrivals.items()})
    summary = (
        f"{total} commands in {args.seconds / 60:.0f} min: {missing} lost, {doubled} answered twice "
        f"({soak.restarts} restart(s)), {fmt(breaks, 'd')} key-order break(s), "
        f"{collector.dead_letters} dead letter(s)\n{drift(intervals, args.warmup)}"
    )
    print(summary, flush=True)
    return summary + "\n\n" + "\n".join(i.row(args.interval) for i in intervals)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--hours", type=float, default=None, help="overrides --minutes")
    p.add_argument(
        "--rate", type=float, default=150.0, help="commands/s sent (half of a loaded 2-core machine)"
    )
    p.add_argument("--keys", type=int, default=500)
    p.add_argument("--interval", type=float, default=30.0, help="seconds per printed line")
    p.add_argument("--warmup", type=int, default=2, help="intervals left out of the drift figures")
    p.add_argument("--fault-every-s", type=float, default=120.0, help="mean gap between faults")
    p.add_argument("--restarts", action="store_true", help="also kill -9 and SIGTERM the bridge")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--broker",
        choices=BROKERS,
        default="tansu",
        help="kafka for hours: the embedded Tansu keeps its log in memory and slows as it grows",
    )
    p.add_argument(
        "--ledger-store", action="store_true", help="the ledger in a local disk store (ledger.store.path)"
    )
    p.add_argument(
        "--settle-s", type=float, default=180.0, help="time for the last outcomes after sending stops"
    )
    p.add_argument("--write", action="store_true", help=f"write the table to {RESULTS}/soak-<date>.md")
    args = p.parse_args(argv)
    args.seconds = (args.hours * 3600) if args.hours is not None else args.minutes * 60

    async def run() -> str:
        with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
            async with started(Path(tmp), args.broker) as bench:
                return await soak_run(bench, args)

    try:
        report = asyncio.run(run())
    except KeyboardInterrupt:  # its children are stopped with it (bench.scenarios)
        print("bench.soak: interrupted; no figures written", file=sys.stderr)
        return 130
    if args.write:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d-%H%M")
        head = f"# Soak {stamp} (python -m bench.soak {' '.join(sys.argv[1:])})\n\n```text\n"
        (RESULTS / f"soak-{stamp}.md").write_text(head + report + "\n```\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
