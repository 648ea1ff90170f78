"""The ledger on local disk (ledger.store.path) with a large partition: RSS, disk, lookups, restores.

    python -m bench.ledger_store --ids 1000000

Fills ledger partition 0 with ``--ids`` done entries, then in a child process (its RSS its own):
a cold rebuild into an empty store (entries/s), ``--lookups`` random lookups through the ledger's
command path (lookups/s), RSS, disk bytes per id; then a warm restart in a second child (the store
kept: only the tail is read) and the time it took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from aiokafka import TopicPartition

from bench.ledger import fill, rss_mb
from bridge.ledger.index import id_hash
from bridge.local.broker import create_topics, start_broker


def disk_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


async def child(
    bootstrap: str, ledger_topic: str, command_topic: str, path: str, ids: int, lookups: int
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
    before = rss_mb()
    started = time.perf_counter()
    await ledger.restore([TopicPartition(command_topic, 0)])
    restore_s = time.perf_counter() - started
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
        "records_read": read,
        "lookups_per_s": round(lookups / lookup_s),
        "lookups_found": found,
        "rss_before_mb": round(before, 1),
        "rss_after_mb": round(after, 1),
    }


async def run(ids: int, lookups: int) -> dict[str, Any]:
    broker = await start_broker()
    path = tempfile.mkdtemp(prefix="bench-ledger-store-")
    try:
        ledger_topic, command_topic = "bench.store.ledger", "bench.store.commands"
        await create_topics(broker.bootstrap, {ledger_topic: 1, command_topic: 1})
        fill_s = await fill(broker.bootstrap, ledger_topic, command_topic, ids)
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
        argv += ["--ids", str(ids), "--lookups", str(lookups)]
        runs = []
        for _ in ("cold", "warm"):
            out = await asyncio.to_thread(
                subprocess.run, argv, capture_output=True, text=True, check=True, timeout=3600
            )
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        size = disk_bytes(path)
    finally:
        broker.kill()
        shutil.rmtree(path, ignore_errors=True)
    cold, warm = runs
    return {
        "ids": ids,
        "fill_s": round(fill_s, 1),
        "cold": cold,
        "cold_entries_per_s": round(ids / max(cold["restore_s"], 1e-9)),
        "warm": warm,
        "disk_bytes_per_id": round(size / ids, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.ledger_store", description=__doc__.splitlines()[0])
    p.add_argument("--ids", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=100_000)
    p.add_argument(
        "--child", nargs=4, metavar=("BOOTSTRAP", "LEDGER", "COMMANDS", "PATH"), help=argparse.SUPPRESS
    )
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(asyncio.run(child(*args.child, args.ids, args.lookups))))
        return 0
    result = asyncio.run(run(args.ids, args.lookups))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
