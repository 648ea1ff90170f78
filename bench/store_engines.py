"""Pick the local state store's engine: RocksDB (``rocksdict``) against LMDB (``lmdb``), measured.

    python -m bench.store_engines --ids 1000000            # both engines, one child process each

For each engine, in a child process of its own (so that its RSS is its own): write ``--ids`` real
ledger ``done`` entries in batches of 10,000 (one atomic batch each, as the store writes them with
their checkpoint; only the engine's calls are timed, not the encoding), look up ``--lookups`` random
ids, scan every entry (a warm start's read of the tracked-workflow keys), and report writes/s,
lookups/s, scanned entries/s, disk bytes per id and RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bench.ledger import rss_mb
from bridge.ledger.entries import DoneFields, encode_done

ENGINES = ("rocksdb", "lmdb")
BATCH = 10_000
TOPIC = "workflow.run.commands"


def entries(ids: int) -> Iterator[tuple[bytes, bytes]]:
    done, now = (
        DoneFields("queued", "job-000000", "0d0f5bd6-5f0a-5c43-9d0f-7b1e2f0f6a11"),
        int(time.time() * 1000),
    )
    for i in range(ids):
        yield encode_done(TOPIC, f"cmd-{i:08d}", i * 2654435761, i, now, done)


def disk_bytes(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def batches(ids: int) -> Iterator[list[tuple[bytes, bytes]]]:
    """The entries in batches of ``BATCH``, encoded before the clock runs (only the engine is timed)."""
    pending: list[tuple[bytes, bytes]] = []
    for entry in entries(ids):
        pending.append(entry)
        if len(pending) == BATCH:
            yield pending
            pending = []
    if pending:
        yield pending


def run_rocksdb(path: str, ids: int, lookups: list[bytes]) -> dict[str, float]:
    from rocksdict import WriteBatch

    from bridge.ledger.checkpoint import Identity
    from bridge.ledger.rocks import PartitionStore, rocks_options

    store = PartitionStore(Path(path), Identity("bench", 0, 1), rocks_options(cache_mb=32))
    db = store._db
    write_s = 0.0
    for pending in batches(ids):
        started = time.perf_counter()
        batch = WriteBatch(raw_mode=True)
        for key, value in pending:
            batch.put(key, value)
        db.write(batch)
        write_s += time.perf_counter() - started
    started = time.perf_counter()
    db.flush()
    write_s += time.perf_counter() - started
    started = time.perf_counter()
    found = sum(db.get(key) is not None for key in lookups)
    lookup_s = time.perf_counter() - started
    started = time.perf_counter()
    scanned = sum(1 for _ in db.items())
    scan_s = time.perf_counter() - started
    rss = rss_mb()
    store.close()
    return {
        "write_s": write_s,
        "lookup_s": lookup_s,
        "found": found,
        "scan_s": scan_s,
        "scanned": scanned,
        "rss": rss,
    }


def run_lmdb(path: str, ids: int, lookups: list[bytes]) -> dict[str, float]:
    import lmdb

    env = lmdb.open(path, map_size=64 << 30, sync=True, metasync=True, readahead=False)
    write_s = 0.0
    for pending in batches(ids):
        started = time.perf_counter()
        with env.begin(write=True) as txn:
            txn.cursor().putmulti(pending)
        write_s += time.perf_counter() - started
    started = time.perf_counter()
    with env.begin() as txn:
        found = sum(txn.get(key) is not None for key in lookups)
    lookup_s = time.perf_counter() - started
    started = time.perf_counter()
    with env.begin() as txn:
        scanned = sum(1 for _ in txn.cursor())
    scan_s = time.perf_counter() - started
    rss = rss_mb()
    env.close()
    return {
        "write_s": write_s,
        "lookup_s": lookup_s,
        "found": found,
        "scan_s": scan_s,
        "scanned": scanned,
        "rss": rss,
    }


def child(engine: str, ids: int, lookups: int) -> dict[str, Any]:
    rng = random.Random(7)
    keys = [f"cmd:{TOPIC}:cmd-{rng.randrange(ids):08d}".encode() for _ in range(lookups)]
    path = tempfile.mkdtemp(prefix=f"bench-{engine}-")
    try:
        before = rss_mb()
        run = run_rocksdb if engine == "rocksdb" else run_lmdb
        got = run(path, ids, keys)
        size = disk_bytes(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return {
        "engine": engine,
        "ids": ids,
        "writes_per_s": round(ids / got["write_s"]),
        "lookups_per_s": round(lookups / got["lookup_s"]),
        "lookups_found": int(got["found"]),
        "scan_per_s": round(got["scanned"] / got["scan_s"]),
        "disk_bytes_per_id": round(size / ids, 1),
        "rss_mb_added": round(got["rss"] - before, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.store_engines", description=__doc__.splitlines()[0])
    p.add_argument("--ids", type=int, default=1_000_000)
    p.add_argument("--lookups", type=int, default=200_000)
    p.add_argument("--engine", choices=ENGINES, action="append", help="default: both")
    p.add_argument("--child", choices=ENGINES, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.ids, args.lookups)))
        return 0
    for engine in args.engine or ENGINES:
        argv_ = [sys.executable, "-m", "bench.store_engines", "--child", engine, "--ids", str(args.ids)]
        argv_ += ["--lookups", str(args.lookups)]
        out = subprocess.run(argv_, capture_output=True, text=True, check=False, timeout=3600)
        if out.returncode != 0:
            print(f"{engine}: failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
            return 1
        print(out.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
