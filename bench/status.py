"""``bridge status`` on a partition holding 1,000,000 commands: how long one lookup takes.

    python -m bench.status                       # 1,000,000 records; old, middle, new and unknown ids
    python -m bench.status --records 100000 --rounds 5

Writes ``--records`` commands into one partition of the run command topic of a fresh embedded broker
(all with one key that maps to that partition), then times ``bridge.status.lookup.find`` (what the
CLI and the admin endpoint run: connect, read metadata, search every partition the key maps to,
read the group's committed offsets) for an id near the start, one in the middle, one near the end,
and one that was never sent. Each lookup runs ``--rounds`` times; the median is reported.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Iterator, Sequence
from statistics import median
from typing import Any

import orjson

from bench.ledger import fill_partition
from bridge.local.broker import create_topics, start_broker
from bridge.local.stack import local_settings, topic_layout
from bridge.status.lookup import find, partition_of
from bridge.status.story import assemble

TARGET_S = 1.0


def bench_key(partitions: int) -> bytes:
    """A key the default partitioner maps to partition 0 (where the records are written)."""
    n = 0
    while partition_of(f"bench-key-{n}".encode(), partitions) != 0:
        n += 1
    return f"bench-key-{n}".encode()


def command_id(i: int) -> str:
    return f"bench-{i:08d}"


def records(count: int, key: bytes) -> Iterator[tuple[bytes, bytes]]:
    for i in range(count):
        doc = {
            "id": command_id(i),
            "target": "zilliant-sandbox",
            "operation": "zilliant.queue_job",
            "automation_id": "PublishListPrices",
            "parameters": {"region": "emea", "list": f"L-{i % 977}"},
        }
        yield key, orjson.dumps(doc)


async def run(count: int, rounds: int) -> dict[str, Any]:
    broker = await start_broker()
    try:
        settings = local_settings(broker.bootstrap, "http://127.0.0.1:9", overrides={"admin": {"port": None}})
        layout = topic_layout(settings.topics)
        await create_topics(broker.bootstrap, layout)
        key = bench_key(layout[settings.topics.run_commands])
        fill_s = await fill_partition(broker.bootstrap, settings.topics.run_commands, records(count, key))
        wanted = {
            "old": command_id(min(10, count - 1)),
            "middle": command_id(count // 2),
            "new": command_id(max(0, count - 10)),
            "unknown": "never-sent",
        }
        timings: dict[str, list[float]] = {}
        states: dict[str, str] = {}
        for label, cid in wanted.items():
            for _ in range(rounds):
                started = time.perf_counter()
                facts = await find(settings, cid, key)
                timings.setdefault(label, []).append(time.perf_counter() - started)
                states[label] = assemble(facts).phase.value
        return {
            "records": count,
            "fill_s": round(fill_s, 1),
            "lookup_s": {label: round(median(times), 3) for label, times in timings.items()},
            "each_s": {label: [round(t, 3) for t in times] for label, times in timings.items()},
            "states": states,
        }
    finally:
        await broker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.status", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000, help="commands in the partition")
    p.add_argument("--rounds", type=int, default=3, help="lookups of each id")
    args = p.parse_args(argv)
    result = asyncio.run(run(args.records, args.rounds))
    print(json.dumps(result, indent=2))
    slowest = max(result["lookup_s"].values())
    verdict = "PASS" if slowest <= TARGET_S else "MISS"
    print(f"{verdict}  bridge status on {args.records:,} records: slowest median lookup {slowest:.3f}s "
          f"(target <= {TARGET_S:.0f}s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
