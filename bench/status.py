"""``bridge status`` on a partition holding 1,000,000 commands: how long one lookup takes.

    python -m bench.status                       # 1,000,000 records; old, middle, new and unknown ids
    python -m bench.status --records 100000 --rounds 5

Writes ``--records`` commands into one partition of the run command topic of a fresh embedded broker
(all with one key that maps to that partition, stamped ``--spacing-ms`` apart so that the partition
spans hours, as a real one does), then times ``bridge.status.lookup.find`` (what the CLI and the
admin endpoint run: connect, read metadata, search every partition the key maps to, read the
group's committed offsets) for an id near the start, one in the middle, one near the end, and one
that was never sent; then the old and middle ids again with ``since`` one minute before they were
sent (``bridge status ID --since ...``); then old, middle, new and unknown again as the member that
owns the partition looks them up (``GET /v1/commands/{id}``, or ``bridge status`` once it asked that
member's ``GET /v1/ledger/{id}``): with what its ledger knows (bridge/status/hints.py). Each lookup
runs ``--rounds`` times; the median is reported.

What the owner's ledger knows is what ``Ledger.recall`` answers after the bridge processed the
partition: the minute of each id's last entry (here: written 100 ms after its command was sent),
and a horizon older than the partition; the group's offset is committed at the partition's end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from statistics import median
from typing import Any

import orjson
from aiokafka import TopicPartition

from bench.workload import make_producer
from bridge.kafka.clients import make_reader, started
from bridge.ledger.index import EPOCH_MS
from bridge.local.broker import create_topics, start_broker
from bridge.local.stack import local_settings, topic_layout
from bridge.status.hints import Hint, Recaller
from bridge.status.lookup import find, partition_of
from bridge.status.story import assemble

TARGET_S = 1.0
DISPATCH_MS = 100  # how long after its command the ledger's entry of it was written


def bench_key(partitions: int) -> bytes:
    """A key the default partitioner maps to partition 0 (where the records are written)."""
    n = 0
    while partition_of(f"bench-key-{n}".encode(), partitions) != 0:
        n += 1
    return f"bench-key-{n}".encode()


def command_id(i: int) -> str:
    return f"bench-{i:08d}"


async def fill(bootstrap: str, topic: str, count: int, key: bytes, stamps: list[int]) -> float:
    """Write the records into partition 0, stamped as ``stamps`` says; returns the seconds it took."""
    producer = make_producer(bootstrap, linger_ms=50)
    await producer.start()
    started = time.perf_counter()
    try:
        pending = []
        for (k, value), stamp in zip(records(count, key), stamps, strict=True):
            pending.append(await producer.send(topic, value, key=k, partition=0, timestamp_ms=stamp))
            if len(pending) >= 20_000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return time.perf_counter() - started


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


def owner_ledger(topic: str, stamps: dict[str, int], horizon_ms: int) -> Callable[[str], Recaller]:
    """What the owning member's ledger answers about an id of partition 0 of ``topic``: the minute
    of its entry for the ids sent (``stamps``), nothing for the others (as ``Ledger.recall``)."""

    def minute(ms: int) -> int:
        return EPOCH_MS + (ms - EPOCH_MS) // 60_000 * 60_000

    def recaller(command_id: str) -> Recaller:
        async def recall(partitions: Mapping[str, int]) -> dict[str, Hint]:
            stamp = stamps.get(command_id)
            last = None if stamp is None else minute(stamp + DISPATCH_MS)
            return (
                {topic: Hint(topic, 0, "bench-member", last, horizon_ms)}
                if partitions.get(topic) == 0
                else {}
            )

        return recall

    return recaller


async def commit_end(settings: Any, topic: str, end: int) -> None:
    """The group's offset of partition 0 at ``end``: as after the bridge processed every record."""
    async with started(make_reader(settings.kafka, settings.kafka.group_id)) as reader:
        reader.assign([TopicPartition(topic, 0)])
        await reader.commit({TopicPartition(topic, 0): end})


async def run(count: int, rounds: int, spacing_ms: int) -> dict[str, Any]:
    broker = await start_broker()
    try:
        settings = local_settings(broker.bootstrap, "http://127.0.0.1:9", overrides={"admin": {"port": None}})
        layout = topic_layout(settings.topics)
        await create_topics(broker.bootstrap, layout)
        key = bench_key(layout[settings.topics.run_commands])
        first = int(time.time() * 1000) - count * spacing_ms
        stamps = [first + i * spacing_ms for i in range(count)]
        fill_s = await fill(broker.bootstrap, settings.topics.run_commands, count, key, stamps)
        old, middle, new = min(10, count - 1), count // 2, max(0, count - 10)
        wanted: dict[str, tuple[str, int | None]] = {
            "old": (command_id(old), None),
            "middle": (command_id(middle), None),
            "new": (command_id(new), None),
            "unknown": ("never-sent", None),
            "old --since": (command_id(old), stamps[old] - 60_000),
            "middle --since": (command_id(middle), stamps[middle] - 60_000),
        }
        topic = settings.topics.run_commands
        await commit_end(settings, topic, count)
        sent = {command_id(i): stamps[i] for i in (old, middle, new)}
        ledger = owner_ledger(topic, sent, horizon_ms=first - 3_600_000)
        owner = {f"{label}, owner's ledger": (cid, None) for label, (cid, _) in list(wanted.items())[:4]}
        timings: dict[str, list[float]] = {}
        states: dict[str, str] = {}
        notes: dict[str, list[str]] = {}
        for label, (cid, since) in {**wanted, **owner}.items():
            recall = ledger(cid) if label in owner else None
            for _ in range(rounds):
                began = time.perf_counter()
                facts = await find(settings, cid, key, since, recall)
                timings.setdefault(label, []).append(time.perf_counter() - began)
                states[label] = assemble(facts).phase.value
                notes[label] = facts.notes
        return {
            "records": count,
            "spans_h": round(count * spacing_ms / 3_600_000, 1),
            "fill_s": round(fill_s, 1),
            "lookup_s": {label: round(median(times), 3) for label, times in timings.items()},
            "each_s": {label: [round(t, 3) for t in times] for label, times in timings.items()},
            "states": states,
            "notes": {label: texts for label, texts in notes.items() if texts},
        }
    finally:
        await broker.stop()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.status", description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=1_000_000, help="commands in the partition")
    p.add_argument("--rounds", type=int, default=3, help="lookups of each id")
    p.add_argument("--spacing-ms", type=int, default=50, help="between two records' timestamps")
    args = p.parse_args(argv)
    result = asyncio.run(run(args.records, args.rounds, args.spacing_ms))
    print(json.dumps(result, indent=2))
    for label, seconds in result["lookup_s"].items():
        verdict = "PASS" if seconds <= TARGET_S else "MISS"
        print(f"{verdict}  {label:15} {seconds:.3f}s on {args.records:,} records (target <= {TARGET_S:.0f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
