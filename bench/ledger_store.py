"""The ledger on local disk (ledger.store.path) with a large partition: RSS, disk, lookups, restores.

    python -m bench.ledger_store --ids 1000000
    python -m bench.ledger_store --ids 1000000 --broker kafka --profile   # on Apache Kafka; the cold
                                                                        # rebuild's top functions
    python -m bench.ledger_store --direct --ids 10000000   # no Kafka: RSS, disk and lookups at 10 M ids
    python -m bench.ledger_store --fill-curve --ids 1500000 --stores 4   # RSS as the stores fill
    python -m bench.ledger_store --ids 1000000 --broker kafka --compacted   # one record per id
    python -m bench.ledger_store --follow --ids 200000 --broker kafka   # the follower's CPU per record:
                                                                      # raw fetches against getmany
    python -m bench.ledger_store --ids 1000000 --broker kafka --python-gc   # Python's own collector
                                                                        # thresholds (an embedded Bridge)

Fills ledger partition 0 with a ``dispatched`` and a ``done`` entry for each of ``--ids`` ids (as the
bridge writes them; ``--compacted``: the ``done`` entry alone, as the log cleaner leaves them), then
in a child process (its RSS its own): a cold rebuild into an empty store (records/s and ids/s),
``--lookups`` random lookups through the ledger's
command path (lookups/s), RSS, disk bytes per id; then a warm restart in a second child (the store
kept: only the tail is read) and the time it took. The children collect garbage as ``bridge run``
does (its ``SERVICE_GC_THRESHOLDS``); ``--python-gc`` keeps Python's defaults, as a Bridge embedded in
another program has them: a rebuild decodes a short-lived object per record, and Python's defaults
collect the youngest generation every 700 of them.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import os
import pstats
import random
import shutil
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from bench.brokers import BROKERS
from bench.ledger import fill, rss_mb
from bench.scenarios import start_bench_broker
from bench.stats import percentile
from bridge.cli import SERVICE_GC_THRESHOLDS
from bridge.ledger.index import id_hash
from bridge.local.broker import create_topics


@dataclass(slots=True)
class Rec:
    """A changelog record as the store's ``apply`` reads it (aiokafka's ConsumerRecord in the bridge)."""

    offset: int
    key: bytes
    value: bytes


DONE_ENTRY = (  # a ledger ``done`` entry's value: fingerprint, written at, offset, reference number
    b'{"v":1,"kind":"command","state":"done","fp":"%016x","at":%d,"offset":%d,"attempt":1,'
    b'"status":"queued","ref":"job-%08d","event":"0d0f5bd6-5f0a-5c43-9d0f-7b1e2f0f6a11"}'
)


def done_value(i: int, now_ms: int) -> bytes:
    """The ``done`` entry of the ``i``-th command (its offset ``i``), written at ``now_ms``."""
    return DONE_ENTRY % ((i * 2654435761) & (2**64 - 1), now_ms, i, i)


def disk_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


async def child(
    bootstrap: str,
    ledger_topic: str,
    command_topic: str,
    path: str,
    ids: int,
    lookups: int,
    profile: bool,
    python_gc: bool,
) -> dict[str, Any]:
    from bridge.config.settings import Settings
    from bridge.ledger.store import Ledger
    from bridge.observability.metrics import Metrics

    settings = Settings.model_validate(
        {
            "kafka": {"bootstrap_servers": bootstrap},
            "topics": {"run_commands": command_topic, "ledger": ledger_topic},
            "ledger": {"store": {"path": path}},
        }
    )
    metrics = Metrics()
    ledger = Ledger(settings, None, metrics)  # type: ignore[arg-type]  # restore and lookups only
    if not python_gc:
        gc.set_threshold(*SERVICE_GC_THRESHOLDS)
    before = rss_mb()
    profiler = cProfile.Profile() if profile else None
    started, cpu = time.perf_counter(), time.process_time()
    if profiler is not None:
        profiler.enable()
    await ledger.restore([TopicPartition(command_topic, 0)])
    if profiler is not None:
        profiler.disable()
        pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(25)
    restore_s, restore_cpu_s = time.perf_counter() - started, time.process_time() - cpu
    where = (command_topic, 0)
    rng = random.Random(3)
    names = [f"cmd-{rng.randrange(ids):08d}" for _ in range(lookups)]
    started = time.perf_counter()
    found = sum(ledger._seen(where, name, id_hash(name)) is not None for name in names)
    lookup_s = time.perf_counter() - started
    after = rss_mb()
    read = {
        source: metrics.registry.get_sample_value("bridge_ledger_restore_records_total", {"source": source})
        or 0
        for source in ("tail", "rebuild")
    }
    await ledger.close()
    return {
        "restore_s": round(restore_s, 2),
        "restore_cpu_s": round(restore_cpu_s, 2),
        "records_read": read,
        "lookups_per_s": round(lookups / lookup_s),
        "lookups_found": found,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
        "gc_thresholds": list(gc.get_threshold()),
    }


async def run(
    ids: int, lookups: int, broker_kind: str, profile: bool, python_gc: bool, compacted: bool
) -> dict[str, Any]:
    path = tempfile.mkdtemp(prefix="bench-ledger-store-")
    broker_log = Path(path).with_suffix(".broker.log")  # beside the store: its disk figure is the store's
    broker = await start_bench_broker(broker_kind, broker_log)
    try:
        ledger_topic, command_topic = "bench.store.ledger", "bench.store.commands"
        await create_topics(broker.bootstrap, {ledger_topic: 1, command_topic: 1})
        fill_s = await fill(broker.bootstrap, ledger_topic, command_topic, ids, compacted=compacted)
        argv = [
            sys.executable,
            "-m",
            "bench.ledger_store",
            "--child",
            broker.bootstrap,
            ledger_topic,
            command_topic,
            path,
        ]
        argv += ["--ids", str(ids), "--lookups", str(lookups), *(["--python-gc"] if python_gc else [])]
        runs = []
        for which in ("cold", "warm"):
            profiled = [*argv, "--profile"] if profile and which == "cold" else argv
            out = await asyncio.to_thread(
                subprocess.run, profiled, capture_output=True, text=True, check=True, timeout=3600
            )
            if profile and which == "cold":
                print(out.stderr, file=sys.stderr)
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        size = disk_bytes(path)
    finally:
        await broker.stop()
        shutil.rmtree(path, ignore_errors=True)
        broker_log.unlink(missing_ok=True)
    cold, warm = runs
    return {
        "broker": broker_kind,
        "ids": ids,
        "records_per_id": 1 if compacted else 2,
        "fill_s": round(fill_s, 1),
        "cold": cold,
        "cold_ids_per_s": round(ids / max(cold["restore_s"], 1e-9)),
        "cold_records_per_s": round(sum(cold["records_read"].values()) / max(cold["restore_s"], 1e-9)),
        "warm": warm,
        "disk_bytes_per_id": round(size / ids, 1),
    }


async def follow_cpu(ids: int, broker_kind: str, rounds: int = 3) -> dict[str, Any]:
    """The store follower's reading CPU per changelog record: ``ids`` ids' records read to the end the
    way the follower reads them (``ChangelogReader.follow``) and, as the baseline in the same
    process, with the consumer's ``getmany`` (a ``ConsumerRecord`` each; the follower's way before),
    taking turns. Nothing is applied: the reading alone."""
    from bridge.config.settings import KafkaSettings
    from bridge.kafka.changelog import ChangelogReader
    from bridge.kafka.clients import make_reader, raw_client, started

    with tempfile.TemporaryDirectory(prefix="bench-follow-") as tmp:
        broker = await start_bench_broker(broker_kind, Path(tmp) / "broker.log")
        try:
            topic = "bench.follow.ledger"
            await create_topics(broker.bootstrap, {topic: 1})
            await fill(broker.bootstrap, topic, "bench.follow.commands", ids)
            kafka = KafkaSettings(bootstrap_servers=broker.bootstrap)
            records, tp = 2 * ids, TopicPartition(topic, 0)

            async def raw() -> float:
                async with started(make_reader(kafka)) as consumer:
                    reader = ChangelogReader(raw_client(consumer), topic, {0: 0}, read_committed=True)
                    cpu, read = time.process_time(), 0
                    while read < records:
                        read += sum([len(found) async for _, found in reader.follow(wait_ms=200)])
                    return time.process_time() - cpu

            async def consumer_records() -> float:
                async with started(make_reader(kafka, fetch_max_wait_ms=200)) as consumer:
                    consumer.assign([tp])
                    consumer.seek(tp, 0)
                    cpu, read = time.process_time(), 0
                    while read < records:
                        fetched = await consumer.getmany(timeout_ms=500, max_records=10_000)
                        read += sum(len(found) for found in fetched.values())
                    return time.process_time() - cpu

            gc.set_threshold(*SERVICE_GC_THRESHOLDS)
            runs: dict[str, list[float]] = {"raw": [], "getmany": []}
            for _ in range(rounds):
                runs["raw"].append(await raw())
                runs["getmany"].append(await consumer_records())
        finally:
            await broker.stop()
    per_record = {name: [round(cpu / records * 1e6, 3) for cpu in cpus] for name, cpus in runs.items()}
    return {
        "broker": broker_kind,
        "records": records,
        "cpu_us_per_record": per_record,
        "raw_over_getmany": [round(r / g, 2) for r, g in zip(runs["raw"], runs["getmany"], strict=True)],
    }


def direct(ids: int, lookups: int) -> dict[str, Any]:
    """Without Kafka (in this process): ``ids`` done entries applied straight into a partition's
    store, as a rebuild applies what it fetched, then lookups through the ledger's command path, RSS
    and disk. The store's share of a rebuild, and the memory and disk at sizes the broker here
    cannot be filled to in time."""
    from bridge.config.settings import Settings
    from bridge.ledger.checkpoint import Identity
    from bridge.ledger.rocks import PartitionStore
    from bridge.ledger.store import Ledger
    from bridge.observability.metrics import Metrics

    path = tempfile.mkdtemp(prefix="bench-ledger-direct-")
    topic = "workflow.run.commands"
    settings = Settings.model_validate(
        {"topics": {"run_commands": topic}, "ledger": {"store": {"path": path}}}
    )
    ledger = Ledger(settings, None, Metrics())  # type: ignore[arg-type]  # lookups only
    disk = ledger._disk
    assert disk is not None
    store = PartitionStore(
        Path(path) / settings.topics.ledger / "0", Identity(settings.topics.ledger, 0, 1), disk._options
    )
    disk.stores[0] = store
    before = rss_mb()
    now = int(time.time() * 1000)
    prefix = f"cmd:{topic}:".encode()
    apply_s = 0.0
    for first in range(0, ids, 10_000):
        batch = [
            Rec(i, prefix + b"cmd-%08d" % i, done_value(i, now))
            for i in range(first, min(ids, first + 10_000))
        ]
        started = time.perf_counter()
        store.apply(batch, now)
        apply_s += time.perf_counter() - started
    rss_filled = rss_mb()
    level0 = store._db.property_int_value("rocksdb.num-files-at-level0")
    rng = random.Random(3)
    names = [f"cmd-{rng.randrange(ids):08d}" for _ in range(lookups)]
    names += [f"new-{n}" for n in range(lookups // 10)]  # misses: a new command's lookup
    started = time.perf_counter()
    found = sum(ledger._seen((topic, 0), n, id_hash(n)) is not None for n in names)
    lookup_s = time.perf_counter() - started
    after = rss_mb()
    store.close()
    size = disk_bytes(path)
    shutil.rmtree(path, ignore_errors=True)
    return {
        "ids": ids,
        "apply_entries_per_s": round(ids / apply_s),
        "lookups_per_s": round(len(names) / lookup_s),
        "lookups_found": found,
        "rss_before_mb": round(before, 1),
        "rss_filled_mb": round(rss_filled, 1),
        "rss_after_lookups_mb": round(after, 1),
        "disk_bytes_per_id": round(size / ids, 1),
        "level0_files_before_lookups": level0,
    }


def fill_curve(ids: int, stores: int) -> dict[str, Any]:
    """Without Kafka: ``ids`` entries written as a running bridge's follower writes them (batches of 50
    into ``stores`` partition stores in turn, one lookup per entry written), the RSS every 100,000:
    how long the stores' bounded memory (block cache, memtables) takes to fill, and that it stops.
    Also how long each call holds the event loop (an apply, a lookup, then one whole expiry sweep of
    the filled stores, step by step), since the bridge makes them on its loop."""
    from bridge.ledger.checkpoint import Identity
    from bridge.ledger.rocks import SWEEP_CHUNK, PartitionStore, rocks_options

    path = tempfile.mkdtemp(prefix="bench-ledger-curve-")
    options = rocks_options(32)
    opened = [
        PartitionStore(Path(path) / str(p), Identity("ledger", p, stores), options) for p in range(stores)
    ]
    now, rng, batch = int(time.time() * 1000), random.Random(1), 50
    offsets, curve = [0] * stores, {0: round(rss_mb(), 1)}
    applies, gets, sweep_steps = Held(), Held(every=20), Held()  # constant memory: the RSS is measured
    clock = time.perf_counter
    try:
        for first in range(0, ids, batch):
            p = (first // batch) % stores
            records = [
                Rec(offsets[p] + j, b"cmd:t:cmd-%09d" % (first + j), done_value(first + j, now))
                for j in range(batch)
            ]
            offsets[p] += batch
            began = clock()
            opened[p].apply(records, now)
            applies.add(clock() - began)
            for _ in range(batch):
                k = rng.randrange(first + 1)
                began = clock()
                opened[(k // batch) % stores].get(b"cmd:t:cmd-%09d" % k)
                gets.add(clock() - began)
            if (first + batch) % 100_000 == 0:
                curve[first + batch] = round(rss_mb(), 1)
        for store in opened:  # a sweep that finds nothing expired reads and judges every key
            start: bytes | None = b"cmd:"
            while start is not None:
                began = clock()
                _, start = store.expire(start, now - 86_400_000)
                sweep_steps.add(clock() - began)
    finally:
        for store in opened:
            store.close()
        shutil.rmtree(path, ignore_errors=True)
    return {
        "ids": ids,
        "stores": stores,
        "cache_mb": 32,
        "rss_mb_by_entries_written": curve,
        "loop_held_ms": {
            "apply_50_entries": applies.summary(),
            "lookup": gets.summary(),
            f"sweep_step_{SWEEP_CHUNK}_keys": sweep_steps.summary(),
        },
    }


class Held:
    """Durations in constant memory: every ``every``-th kept for p50 and p99 (an ``array``), the
    longest and the count over 5 ms exact."""

    def __init__(self, every: int = 1) -> None:
        self.every, self.seen, self.longest, self.over_5ms = every, 0, 0.0, 0
        self.sample = array("d")

    def add(self, seconds: float) -> None:
        if self.seen % self.every == 0:
            self.sample.append(seconds)
        self.seen += 1
        self.longest = max(self.longest, seconds)
        self.over_5ms += seconds > 0.005

    def summary(self) -> dict[str, float]:
        p50, p99 = percentile(self.sample, 0.5), percentile(self.sample, 0.99)
        if p50 is None or p99 is None:
            return {}
        return {
            "p50": round(p50 * 1000, 3),
            "p99": round(p99 * 1000, 3),
            "max": round(self.longest * 1000, 1),
            "over_5ms": self.over_5ms,
            "count": self.seen,
        }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ledger_store", description=__doc__.splitlines()[0])
    p.add_argument("--ids", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=100_000)
    p.add_argument(
        "--direct", action="store_true", help="no Kafka: apply ids straight into a store (RSS, disk)"
    )
    p.add_argument("--fill-curve", action="store_true", help="no Kafka: RSS as --stores stores fill")
    p.add_argument(
        "--follow", action="store_true", help="the follower's CPU per record: raw fetches against getmany"
    )
    p.add_argument("--stores", type=int, default=4, help="--fill-curve: partition stores written in turn")
    p.add_argument("--broker", choices=BROKERS, default="tansu", help="kafka: needs make kafka-jars")
    p.add_argument("--profile", action="store_true", help="the cold rebuild's top functions (cProfile)")
    p.add_argument("--compacted", action="store_true", help="one record per id in the changelog, not two")
    p.add_argument(
        "--python-gc",
        action="store_true",
        help="restore with Python's default collector thresholds, not bridge run's",
    )
    p.add_argument(
        "--child", nargs=4, metavar=("BOOTSTRAP", "LEDGER", "COMMANDS", "PATH"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.child:
        found = asyncio.run(child(*args.child, args.ids, args.lookups, args.profile, args.python_gc))
        print(json.dumps(found))
        return 0
    if args.follow:
        result = asyncio.run(follow_cpu(args.ids, args.broker))
    elif args.fill_curve:
        result = fill_curve(args.ids, args.stores)
    elif args.direct:
        result = direct(args.ids, args.lookups)
    else:
        result = asyncio.run(
            run(args.ids, args.lookups, args.broker, args.profile, args.python_gc, args.compacted)
        )
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
