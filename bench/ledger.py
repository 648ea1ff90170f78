"""Ledger benchmarks: the bridge with the ledger on vs off in one run, and a 1,000,000-id restore.

    python -m bench.run --ledger                 # on vs off: 50 ms throughput, added p99 at half load
    python -m bench.ledger --ids 1000000         # RSS per remembered id and restore entries/s

The restore runs in a child process (``--child``) so that its RSS before and after is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from statistics import median
from typing import Any

from aiokafka import TopicPartition

from bench.scenarios import Bench
from bench.stats import Row, Target, ratio
from bench.workload import Latency, Shape, make_producer
from bridge.ledger.entries import DoneFields, encode_done
from bridge.local.broker import create_topics, start_broker

LEDGER_LABELS = ("ledger-off", "ledger-on")


async def on_vs_off(bench: Bench, report: Any, args: Any, scenario: Any) -> None:
    """Throughput at 50 ms latency, then a paced feed at half the ledger-off rate; off and on alternate
    for ``--ledger-rounds`` rounds, so that the machine's other load hits both alike."""
    rows: dict[str, list[Row]] = {label: [] for label in LEDGER_LABELS}
    for n in range(args.ledger_rounds):
        for label in LEDGER_LABELS:
            _ledger(bench, label)
            rows[label].append(
                await scenario(
                    bench,
                    report,
                    f"{label}-50ms-r{n + 1}",
                    Shape(5000, 1000, 4),
                    Latency(50),
                    1000,
                    args,
                    baselines_too=False,
                )
            )
    rate = max(10.0, median([r.rate for r in rows["ledger-off"]]) / 2)
    paced: dict[str, list[Row]] = {label: [] for label in LEDGER_LABELS}
    for n in range(args.ledger_rounds):
        for label in LEDGER_LABELS:
            _ledger(bench, label)
            shape = Shape(int(rate * args.paced_seconds), 1000, 4)
            paced[label].append(
                await scenario(
                    bench,
                    report,
                    f"{label}-paced-r{n + 1}",
                    shape,
                    Latency(50),
                    1000,
                    args,
                    rate=rate,
                    baselines_too=False,
                )
            )
    report.targets += ledger_targets(rows, paced)


def _ledger(bench: Bench, label: str) -> None:
    bench.bridge_overrides = {**bench.bridge_overrides, "ledger": {"enabled": label == "ledger-on"}}


def _median_of(rows: list[Row], figure: str) -> float | None:
    values = [v for r in rows if (v := getattr(r, figure)) is not None]
    return median(values) if values else None


def ledger_targets(rows: dict[str, list[Row]], paced: dict[str, list[Row]]) -> list[Target]:
    """Medians over the rounds: throughput on / off, added p99 on - off, CPU per command on / off."""
    share = ratio(_median_of(rows["ledger-on"], "rate"), _median_of(rows["ledger-off"], "rate"))
    on, off = _median_of(paced["ledger-on"], "added_p99_ms"), _median_of(paced["ledger-off"], "added_p99_ms")
    added = on - off if on is not None and off is not None else None
    cpu = {label: median([(r.cpu_s or 0) / max(1, r.commands) * 1000 for r in rows[label]]) for label in rows}
    print(f"CPU per command (median, 50 ms): off {cpu['ledger-off']:.3f} ms, on {cpu['ledger-on']:.3f} ms")
    return [
        Target("ledger", "throughput on / off at 50 ms (median)", share, 0.85, at_least=True),
        Target("ledger", "added p99 at half load, on - off, ms (median)", added, 5, at_least=False),
    ]


# -- restore of a large partition ----------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def fill(bootstrap: str, ledger_topic: str, command_topic: str, ids: int) -> float:
    """Write ``ids`` done entries into ledger partition 0; returns the seconds it took."""
    done, now = (
        DoneFields("queued", "job-000000", "0d0f5bd6-5f0a-5c43-9d0f-7b1e2f0f6a11"),
        int(time.time() * 1000),
    )
    records = (encode_done(command_topic, f"cmd-{i:08d}", i * 2654435761, i, now, done) for i in range(ids))
    return await fill_partition(bootstrap, ledger_topic, records)


async def fill_partition(bootstrap: str, topic: str, records: Iterable[tuple[bytes, bytes]]) -> float:
    """Write (key, value) records into partition 0 of ``topic``; returns the seconds it took."""
    producer = make_producer(bootstrap, linger_ms=50)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for key, value in records:
            pending.append(await producer.send(topic, value, key=key, partition=0))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


async def restore_child(bootstrap: str, ledger_topic: str, command_topic: str) -> dict[str, Any]:
    """In the child: RSS before, restore partition 0, RSS after."""
    from bridge.config.settings import Settings
    from bridge.ledger.store import Ledger
    from bridge.observability.metrics import Metrics

    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": {"run_commands": command_topic, "ledger": ledger_topic},
        }
    )
    ledger = Ledger(settings, None, Metrics())  # type: ignore[arg-type]  # restore only reads
    before = rss_mb()
    started = time.perf_counter()
    await ledger.restore([TopicPartition(command_topic, 0)])
    seconds = time.perf_counter() - started
    after = rss_mb()
    return {
        "ids": ledger.entries,
        "restore_s": round(seconds, 2),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
    }


async def restore_bench(ids: int) -> dict[str, Any]:
    broker = await start_broker()
    try:
        ledger_topic, command_topic = "bench.restore.ledger", "bench.restore.commands"
        await create_topics(broker.bootstrap, {ledger_topic: 1, command_topic: 1})
        fill_s = await fill(broker.bootstrap, ledger_topic, command_topic, ids)
        argv = [
            sys.executable,
            "-m",
            "bench.ledger",
            "--child",
            broker.bootstrap,
            ledger_topic,
            command_topic,
        ]
        child = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, check=True, timeout=900
        )
        result: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    finally:
        broker.kill()
    per_id = (result["rss_after_mb"] - result["rss_before_mb"]) * 1024 * 1024 / max(1, result["ids"])
    rate = result["ids"] / max(result["restore_s"], 1e-9)
    return {
        **result,
        "fill_s": round(fill_s, 1),
        "bytes_per_id": round(per_id, 1),
        "entries_per_s": round(rate),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.splitlines()[0])
    p.add_argument("--ids", type=int, default=1_000_000, help="done entries in the ledger partition")
    p.add_argument("--child", nargs=3, metavar=("BOOTSTRAP", "LEDGER", "COMMANDS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(restore_child(*args.child))))
        return 0
    result = asyncio.run(restore_bench(args.ids))
    print(json.dumps(result, indent=2))
    verdict = "PASS" if result["bytes_per_id"] <= 150 else "MISS"
    print(
        f"{verdict}  ledger restore: {result['bytes_per_id']} bytes of RSS per remembered id "
        f"(target <= 150); {result['entries_per_s']:,} entries/s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
