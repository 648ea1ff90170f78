"""Benchmark scenario "one target down": a healthy target's throughput and p99 while another fails.

    python -m bench.outage                      # B alone, then B while A answers 503 + Retry-After: 30
    python -m bench.outage --fault hang         # A accepts calls and never answers
    python -m bench.outage --fault refused      # A's address refuses connections

One bridge process (default settings, parking on, 1,000 in flight, 4 partitions) serves both phases
in one run: first only target B (workfloo, 50 ms sandbox latency) gets commands, then B gets as many
again while target A (Zuora, reached through a loopback proxy that ``refused`` cuts) fails and gets
``--a-commands`` commands over ``--a-keys`` keys. Once every B command is answered A recovers, and
the run waits until every A command is answered too (its parked ones come back). Printed: B's
commands/s in the outage phase as a ratio of B alone, B's p99 record-to-outcome latency in both,
how A's commands ended, and A's recovery: the seconds from the heal to A's first and last answer
(``--open-s`` sets A's circuit open_s, the longest a down target waits for its next probe).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench.scenarios import Bench, bridge_config, spawn_bridge, started
from bench.workload import (
    Latency,
    OutcomeCollector,
    Sent,
    command,
    key_of,
    make_producer,
    make_topics,
    set_latency,
)
from bridge.local.broker import free_port
from bridge.sandbox import zuora as zuora_sandbox
from bridge.sandbox.zuora_runs import ZUORA_DEFINITION_NO_PARAMS
from tests.integration.proxy import CuttableProxy

FAULTS: dict[str, dict[str, Any]] = {
    "retry_after": {"fail_next": {"count": 10**6, "status": 503, "retry_after": "30"}},
    "hang": {"timeout_next": {"count": 10**6, "delay_s": 3600}},
    "refused": {},  # the proxy is cut instead
}


def a_command(command_id: str) -> dict[str, Any]:
    return {
        "id": command_id,
        "target": zuora_sandbox.LOCAL_TARGET,
        "operation": "zuora.run_workflow",
        "workflow_id": ZUORA_DEFINITION_NO_PARAMS,
    }


async def publish(bootstrap: str, topic: str, docs: list[tuple[bytes, dict[str, Any]]], sent: Sent) -> None:
    producer = make_producer(bootstrap, linger_ms=20)
    await producer.start()
    try:
        pending = []
        for key, doc in docs:
            sent.at[doc["id"]] = now = time.time()
            pending.append(
                await producer.send(topic, orjson.dumps(doc), key=key, timestamp_ms=int(now * 1000))
            )
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


def b_figures(collector: OutcomeCollector, sent: Sent, ids: list[str], began: float) -> tuple[float, float]:
    """Commands/s from ``began`` to the last of ``ids`` answered, and their p99 latency (s)."""
    firsts = [collector.arrivals[i][0] for i in ids]
    latencies = [a.at - sent.at[i] for i, a in zip(ids, firsts, strict=True)]
    return len(ids) / (max(a.at for a in firsts) - began), statistics.quantiles(latencies, n=100)[98]


async def answered(
    collector: OutcomeCollector, docs: list[tuple[bytes, dict[str, Any]]], timeout_s: float, alive: Any
) -> bool:
    """Read until every one of ``docs`` has an outcome; False on timeout or when the bridge exited."""
    ids, deadline = {doc["id"] for _, doc in docs}, time.monotonic() + timeout_s
    while not ids <= collector.arrivals.keys():
        if time.monotonic() > deadline or not alive():
            return False
        await collector.collect(collector.outcomes + collector.dead_letters + collector.unreadable + 1, 1.0)
    return True


async def set_fault(sandbox_url: str, provider: str, spec: dict[str, Any]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.put(f"{sandbox_url}/_sandbox/faults/{provider}", json=spec) as resp,
    ):
        resp.raise_for_status()


async def start_outage(bench: Bench, proxy: CuttableProxy, fault: str) -> None:
    if fault == "refused":
        await proxy.cut()
    else:
        await set_fault(bench.world.sandbox_url, "zuora", FAULTS[fault])


async def end_outage(bench: Bench, proxy: CuttableProxy) -> None:
    await proxy.restore()
    await set_fault(bench.world.sandbox_url, "zuora", {})


def a_endings(collector: OutcomeCollector, a: list[tuple[bytes, dict[str, Any]]]) -> str:
    """How A's commands ended: status counts, e.g. ``error 37, queued 963``."""
    counts: dict[str, int] = {}
    for _, doc in a:
        status = collector.arrivals[doc["id"]][0].status
        counts[status] = counts.get(status, 0) + 1
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items()))


async def one_target_down(bench: Bench, args: argparse.Namespace) -> None:
    world, label = bench.world, f"outage-{uuid.uuid4().hex[:6]}"
    topics = await make_topics(world.bootstrap, label, 4)
    await set_latency(world.sandbox_url, Latency(50))
    proxy = CuttableProxy(free_port(), int(world.sandbox_url.rsplit(":", 1)[1]))
    await proxy.restore()
    config = bridge_config(bench, topics, 1000, metrics_port=None)
    config["targets"][zuora_sandbox.LOCAL_TARGET]["base_url"] = f"http://127.0.0.1:{proxy.listen_port}/zuora"
    if args.open_s is not None:
        config["targets"][zuora_sandbox.LOCAL_TARGET]["circuit"] = {"open_s": args.open_s}
    bridge = spawn_bridge(bench, label, config)
    sent = Sent()
    try:
        async with OutcomeCollector(world.bootstrap, topics) as collector:
            warm = [(key_of(i, args.b_keys), command(f"{label}-warm-{i}")) for i in range(200)]
            warm.append((b"a-warm", a_command(f"{label}-a-warm")))  # A's token too
            await publish(world.bootstrap, topics.run_commands, warm, sent)  # joined, connected, warm
            assert await answered(collector, warm, args.timeout, bridge.alive), "warm-up: outcomes missing"
            alone = [(key_of(i, args.b_keys), command(f"{label}-b0-{i}")) for i in range(args.b_commands)]
            began = time.time()
            await publish(world.bootstrap, topics.run_commands, alone, sent)
            assert await answered(collector, alone, args.timeout, bridge.alive), "B alone: outcomes missing"
            rate0, p99_0 = b_figures(collector, sent, [d["id"] for _, d in alone], began)

            await start_outage(bench, proxy, args.fault)
            b = [(key_of(i, args.b_keys), command(f"{label}-b1-{i}")) for i in range(args.b_commands)]
            a = [
                (f"a{i % args.a_keys}".encode(), a_command(f"{label}-a-{i}")) for i in range(args.a_commands)
            ]
            mixed = [doc for pair in zip(a, b, strict=False) for doc in pair] + a[len(b) :] + b[len(a) :]
            began = time.time()
            await publish(world.bootstrap, topics.run_commands, mixed, sent)
            ok = await answered(collector, b, args.timeout, bridge.alive)
            await end_outage(bench, proxy)
            healed = time.time()
            assert ok, "outage: B's outcomes missing"
            rate1, p99_1 = b_figures(collector, sent, [d["id"] for _, d in b], began)
            assert await answered(collector, a, args.timeout, bridge.alive), "after recovery: A's missing"
            endings = a_endings(collector, a)
            firsts = [collector.arrivals[d["id"]][0] for _, d in a]
            after = [f.at - healed for f in firsts if f.at >= healed]
            ran = [f.at - healed for f in firsts if f.at >= healed and f.status != "error"]
    finally:
        await asyncio.to_thread(bridge.stop, 10.0)
        await proxy.close()
    doubled = sum(1 for arrivals in collector.arrivals.values() if len(arrivals) > 1)
    doubled += collector.dead_letters + collector.unreadable  # none expected either
    print(
        f"one target down ({args.fault}): B alone {rate0:.0f} commands/s, p99 {p99_0:.2f} s; "
        f"with A down {rate1:.0f} commands/s (ratio {rate1 / rate0:.2f}), p99 {p99_1:.2f} s "
        f"({p99_1 / p99_0:.2f} x); A's commands: {endings}; "
        f"{doubled} command(s) answered twice or dead-lettered"
    )
    if after:
        print(
            f"recovery ({args.fault}, A's open_s {args.open_s or 'default'}): {len(after)} of A's commands "
            f"answered after the heal, the first {min(after):.1f} s and the last {max(after):.1f} s after it"
            f" (the last that ran: {max(ran, default=0.0):.1f} s; errors are calls that hung at the heal"
            " and ended at their timeout)"
        )


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--fault", choices=sorted(FAULTS), default="retry_after")
    p.add_argument("--b-commands", type=int, default=3000)
    p.add_argument("--b-keys", type=int, default=500)
    p.add_argument("--a-commands", type=int, default=1000)
    p.add_argument("--a-keys", type=int, default=100)
    p.add_argument("--timeout", type=float, default=240.0)
    p.add_argument("--open-s", type=float, default=None, help="A's circuit open_s (default: the bridge's)")
    args = p.parse_args(argv)

    async def run() -> None:
        with tempfile.TemporaryDirectory(prefix="bench-outage-") as tmp:
            async with started(Path(tmp)) as bench:
                await one_target_down(bench, args)

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
