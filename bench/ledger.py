"""Ledger benchmarks: the bridge with the ledger on vs off in one run, and a 1,000,000-id restore.

    python -m bench.run --ledger                 # off, in memory, on local disk: 50 ms throughput, added p99
    python -m bench.ledger --ids 1000000         # RSS per remembered id and restore entries/s
    python -m bench.ledger --ids 1000000 --broker both   # the same on Tansu, then on Apache Kafka

The restore writes, as the bridge does, a ``dispatched`` and then a ``done`` entry for every id into
one partition of a ledger topic made from its spec (compacted). On Apache Kafka the topic rolls 1 MiB
segments with ``min.cleanable.dirty.ratio`` 0.01, and the restore waits until the log cleaner has
cleaned the partition (the broker's log says so, and the partition shrank); Tansu does not compact,
so its restore reads both entries of every id. The restore then runs in a child process
(``--child``, a bridge restarting) so that its RSS before and after is its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from statistics import median
from typing import Any

from aiokafka import TopicPartition

from bench.brokers import broker_order
from bench.scenarios import Bench, start_bench_broker
from bench.stats import Row, Target, ratio
from bench.workload import Latency, Shape, make_producer
from bridge.contracts.specs import load_specs
from bridge.kafka.topics import apply_topics
from bridge.ledger.entries import DoneFields, encode_dispatched, encode_done
from bridge.local.broker import RunningBroker, create_topics
from bridge.local.kafka_broker import RunningKafka, kafka_available

LEDGER_LABELS = ("ledger-off", "ledger-on", "ledger-store")  # ledger-store: on, in a local disk store


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
    rate = args.ledger_rate or max(10.0, median([r.rate for r in rows["ledger-off"]]) / 2)
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
    ledger: dict[str, Any] = {"enabled": label != "ledger-off"}
    if label == "ledger-store":  # a new directory per run: every store is built from its changelog
        ledger["store"] = {"path": tempfile.mkdtemp(prefix="ledger-store-", dir=bench.workdir)}
    bench.bridge_overrides = {**bench.bridge_overrides, "ledger": ledger}


def _median_of(rows: list[Row], figure: str) -> float | None:
    values = [v for r in rows if (v := getattr(r, figure)) is not None]
    return median(values) if values else None


def ledger_targets(rows: dict[str, list[Row]], paced: dict[str, list[Row]]) -> list[Target]:
    """Medians over the rounds: throughput on / off and on disk / in memory, added p99 on - off and on
    disk / in memory, CPU per command of each."""

    def rate(label: str) -> float | None:
        return _median_of(rows[label], "rate")

    def p99(label: str) -> float | None:
        return _median_of(paced[label], "added_p99_ms")

    def minus(a: float | None, b: float | None) -> float | None:
        return a - b if a is not None and b is not None else None

    cpu = {label: median([(r.cpu_s or 0) / max(1, r.commands) * 1000 for r in rows[label]]) for label in rows}
    print("CPU per command (median, 50 ms): " + ", ".join(f"{k} {v:.3f} ms" for k, v in cpu.items()))
    return [
        Target(
            "ledger",
            "throughput on / off at 50 ms (median)",
            ratio(rate("ledger-on"), rate("ledger-off")),
            0.85,
            at_least=True,
        ),
        Target(
            "ledger",
            "added p99 at half load, on - off, ms (median)",
            minus(p99("ledger-on"), p99("ledger-off")),
            5,
            at_least=False,
        ),
        Target(
            "ledger",
            "throughput on disk / in memory at 50 ms (median)",
            ratio(rate("ledger-store"), rate("ledger-on")),
            0.9,
            at_least=True,
        ),
        Target(
            "ledger",
            "added p99 at half load, on disk / in memory (median)",
            ratio(p99("ledger-store"), p99("ledger-on")),
            1 / 0.9,
            at_least=False,
        ),
    ]


# -- restore of a large partition ----------------------------------------------------------------------


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def ledger_records(
    command_topic: str, ids: int, now_ms: int, *, compacted: bool = False
) -> Iterator[tuple[bytes, bytes]]:
    """A ``dispatched`` and then a ``done`` entry for each of ``ids`` ids (the bridge's two writes per
    command), or with ``compacted`` the ``done`` entry alone (what the log cleaner keeps of them)."""
    done = DoneFields("queued", "job-000000", "0d0f5bd6-5f0a-5c43-9d0f-7b1e2f0f6a11")
    for i in range(ids):
        fp = i * 2654435761
        if not compacted:
            yield encode_dispatched(command_topic, f"cmd-{i:08d}", fp, i, now_ms)
        yield encode_done(command_topic, f"cmd-{i:08d}", fp, i, now_ms, done)


async def fill(
    bootstrap: str, ledger_topic: str, command_topic: str, ids: int, *, compacted: bool = False
) -> float:
    """Write :func:`ledger_records` into ledger partition 0; returns the seconds it took."""
    now = int(time.time() * 1000)
    records = ledger_records(command_topic, ids, now, compacted=compacted)
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


class _RecordsRead(logging.Handler):
    """The ``records`` the ledger's "ledger restored" line reports: what the restore read."""

    records: int | None = None

    def emit(self, record: logging.LogRecord) -> None:
        self.records = getattr(record, "records", self.records)


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
    counter = _RecordsRead()
    logging.getLogger("bridge.ledger").addHandler(counter)
    logging.getLogger("bridge.ledger").setLevel(logging.INFO)
    ledger = Ledger(settings, None, Metrics())  # restore only reads: no producer
    before = rss_mb()
    started = time.perf_counter()
    await ledger.restore([TopicPartition(command_topic, 0)])
    seconds = time.perf_counter() - started
    after = rss_mb()
    return {
        "ids": ledger.entries,
        "records_read": counter.records,
        "restore_s": round(seconds, 2),
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
    }


COMPACTION_CONFIGS = {
    "segment.bytes": str(1024 * 1024),  # the smallest Kafka 4 allows: only closed segments are cleaned
    "segment.ms": "10000",
    "min.cleanable.dirty.ratio": "0.01",
    "min.compaction.lag.ms": "0",
}
"""The bench ledger topic's configs on top of its spec's, so that it compacts within the run."""
COMPACTION_TIMEOUT_S = 600.0


async def make_ledger_topic(bootstrap: str, name: str) -> None:
    """The ledger topic as ``bridge topics apply`` makes it from its spec (compacted), one partition,
    with ``COMPACTION_CONFIGS``."""
    spec = next(s for s in load_specs() if s.role == "ledger")
    configs = {**spec.configs, **COMPACTION_CONFIGS}
    report = await apply_topics(
        bootstrap, [spec.model_copy(update={"name": name, "partitions": 1, "configs": configs})]
    )
    if name not in report.created:
        raise RuntimeError(f"the bench ledger topic was not created: {report.render()}")


def partition_bytes(broker: RunningKafka, topic: str) -> int:
    """The size of the partition's segment files on the broker's disk."""
    assert broker.workdir is not None
    return sum(f.stat().st_size for f in (broker.workdir / "data" / f"{topic}-0").glob("*.log"))


def cleaned_up_to(log_path: Path, topic: str) -> int | None:
    """The end of the last dirty section the log cleaner reports for partition 0 of ``topic``."""
    pattern = re.compile(rf"cleaned log {re.escape(topic)}-0 \(dirty section = \[(\d+), (\d+)\]\)")
    found = pattern.findall(log_path.read_text(errors="replace")) if log_path.exists() else []
    return int(found[-1][1]) if found else None


async def wait_for_compaction(
    broker: RunningKafka, log_path: Path, topic: str, written: int
) -> dict[str, Any]:
    """Until the log cleaner has cleaned the partition up to its active segment and the partition's
    size has stopped shrinking; returns what was seen (sizes, the cleaned offset, seconds)."""
    started = time.perf_counter()
    before = partition_bytes(broker, topic)
    last, steady_since = before, time.perf_counter()
    while time.perf_counter() - started < COMPACTION_TIMEOUT_S:
        await asyncio.sleep(1.0)
        size, cleaned = partition_bytes(broker, topic), cleaned_up_to(log_path, topic)
        if size != last:
            last, steady_since = size, time.perf_counter()
        # the active segment (1 MiB at most) is never cleaned
        if cleaned is not None and cleaned >= written - 10_000 and time.perf_counter() - steady_since > 5:
            break
    return {
        "compaction_s": round(time.perf_counter() - started, 1),
        "partition_mb_after_fill": round(before / 2**20, 1),
        "partition_mb_cleaned": round(last / 2**20, 1),
        "cleaned_up_to_offset": cleaned_up_to(log_path, topic),
    }


async def restore_bench(ids: int, broker_kind: str = "tansu") -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-ledger-") as tmp:
        log_path = Path(tmp) / f"broker-{broker_kind}.log"
        broker: RunningBroker = await start_bench_broker(broker_kind, log_path)
        try:
            ledger_topic, command_topic = "bench.restore.ledger", "bench.restore.commands"
            await make_ledger_topic(broker.bootstrap, ledger_topic)
            await create_topics(broker.bootstrap, {command_topic: 1})
            fill_s = await fill(broker.bootstrap, ledger_topic, command_topic, ids)
            compaction: dict[str, Any] = {}
            if isinstance(broker, RunningKafka):
                compaction = await wait_for_compaction(broker, log_path, ledger_topic, 2 * ids)
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
            await broker.stop()
    per_id = (result["rss_after_mb"] - result["rss_before_mb"]) * 1024 * 1024 / max(1, result["ids"])
    rate = result["ids"] / max(result["restore_s"], 1e-9)
    return {
        "broker": broker_kind,
        **result,
        "records_written": 2 * ids,
        "fill_s": round(fill_s, 1),
        **compaction,
        "bytes_per_id": round(per_id, 1),
        "entries_per_s": round(rate),
        "records_per_s": round((result["records_read"] or 0) / max(result["restore_s"], 1e-9)),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ledger", description=__doc__.splitlines()[0])
    p.add_argument("--ids", type=int, default=1_000_000, help="ids in the ledger partition (2 entries each)")
    p.add_argument(
        "--broker",
        choices=["tansu", "kafka", "both"],
        default="tansu",
        help="the embedded Tansu, Apache Kafka (make kafka-jars), or both, one after the other",
    )
    p.add_argument("--child", nargs=3, metavar=("BOOTSTRAP", "LEDGER", "COMMANDS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(restore_child(*args.child))))
        return 0
    if args.broker != "tansu" and (missing := kafka_available()) is not None:
        print(f"--broker {args.broker}: {missing}", file=sys.stderr)
        return 2
    results = [asyncio.run(restore_bench(args.ids, kind)) for kind in broker_order(args.broker, 1)]
    print(json.dumps(results if len(results) > 1 else results[0], indent=2))
    for result in results:
        verdict = "PASS" if result["bytes_per_id"] <= 150 else "MISS"
        print(
            f"{verdict}  ledger restore on {result['broker']}: {result['bytes_per_id']} bytes of RSS per "
            f"remembered id (target <= 150); {result['entries_per_s']:,} ids/s; "
            f"{result['records_read']:,} of {result['records_written']:,} records read"
        )
    if len(results) == 2:
        tansu, kafka = results
        print(
            f"kafka / tansu: restore ids/s {ratio(kafka['entries_per_s'], tansu['entries_per_s']):.2f}, "
            f"bytes per id {ratio(kafka['bytes_per_id'], tansu['bytes_per_id']):.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
