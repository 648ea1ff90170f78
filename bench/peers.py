"""Processes the benchmark runs in the bridge's place, over the same topics, broker and sandbox.

    python -m bench.peers echo --config bridge.yaml         # Kafka-only round trip: the floor
    python -m bench.peers faststream --config bridge.yaml   # FastStream, its defaults
    python -m bench.peers faststream --config bridge.yaml --workers 1000              # max_workers
    python -m bench.peers faststream --config bridge.yaml --workers 4 --ack-after     # per partition

Each reads the bridge's own YAML (bench/scenarios.py writes it), so it uses the same topics, group
id, target URL and Kafka client settings (``fetch_max_wait_ms``, ``linger_ms``, acks ``all``).
Each outcome is ``{"data": {"command_id", "status", "duration_ms"}}`` with the bridge's
``bridge.timing`` header, so the benchmark reads and times it like the bridge's.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream import AckPolicy, FastStream
from faststream.kafka import KafkaBroker, KafkaMessage, KafkaResponse

from bench.workload import TARGET, WORKFLOO_HEADERS
from bridge.kafka.records import TIMING_HEADER, timing_header


def _outcome(command: bytes | None, status: str, duration_ms: float) -> bytes:
    cid = orjson.loads(command or b"{}").get("id")
    return orjson.dumps({"data": {"command_id": cid, "status": status, "duration_ms": duration_ms}})


async def echo(raw: dict[str, Any], stop: asyncio.Event) -> None:
    """Consume with the bridge's consumer settings, produce one small outcome per record, commit."""
    kafka, topics = raw["kafka"], raw["topics"]
    consumer = AIOKafkaConsumer(
        topics["run_commands"],
        bootstrap_servers=kafka["bootstrap_servers"],
        group_id=kafka["group_id"],
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=kafka["fetch_max_wait_ms"],
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=kafka["bootstrap_servers"],
        acks="all",
        enable_idempotence=False,
        linger_ms=kafka["linger_ms"],
        max_batch_size=kafka.get("max_batch_size", 1_000_000),
    )
    await consumer.start()
    await producer.start()
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100, max_records=1000)
            fetched = time.time()
            futures = []
            for records in batch.values():
                for rec in records:
                    header = timing_header(fetched, fetched)
                    value = _outcome(rec.value, "queued", 0.0)
                    out = topics["run_outcomes"]
                    futures.append(await producer.send(out, value, key=rec.key, headers=[header]))
            if futures:
                await asyncio.gather(*futures)
                await consumer.commit()
    finally:
        await consumer.stop()
        await producer.stop()


async def faststream(raw: dict[str, Any], workers: int | None, ack_after: bool) -> None:
    """The same job as the bridge written the way FastStream's documentation shows it: a subscriber
    that returns a ``KafkaResponse`` to a ``@broker.publisher``; ``max_workers`` for concurrency."""
    kafka, topics = raw["kafka"], raw["topics"]
    url = raw["targets"][TARGET]["base_url"] + "/api/v1/workfloo"
    broker = KafkaBroker(kafka["bootstrap_servers"], acks="all", linger_ms=kafka["linger_ms"])
    app = FastStream(broker)
    extra: dict[str, Any] = {"max_workers": workers} if workers else {}
    if ack_after:
        extra["ack_policy"] = AckPolicy.ACK
    session: dict[str, aiohttp.ClientSession] = {}

    @broker.subscriber(
        topics["run_commands"],
        group_id=kafka["group_id"],
        auto_offset_reset="earliest",
        fetch_max_wait_ms=kafka["fetch_max_wait_ms"],
        **extra,
    )
    @broker.publisher(topics["run_outcomes"])
    async def handle(command: dict[str, Any], msg: KafkaMessage) -> KafkaResponse:
        started = time.time()
        body = {"idWorkflooDefinition": command["definition_id"]}
        async with session["http"].post(url, json=body, headers=WORKFLOO_HEADERS) as resp:
            await resp.read()
        took = (time.time() - started) * 1000
        status = "queued" if resp.status == 200 else "error"
        data = {"command_id": command["id"], "status": status, "duration_ms": took}
        timing = timing_header(started, started)[1].decode()
        return KafkaResponse(
            orjson.dumps({"data": data}), key=msg.raw_message.key, headers={TIMING_HEADER: timing}
        )

    @app.on_startup
    async def open_session() -> None:
        session["http"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1000))

    @app.after_shutdown
    async def close_session() -> None:
        await session["http"].close()

    await app.run()  # FastStream handles SIGTERM itself: graceful stop of the subscriber


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.peers")
    p.add_argument("mode", choices=["echo", "faststream"])
    p.add_argument("--config", type=Path, required=True, help="the bridge YAML of the scenario")
    p.add_argument("--workers", type=int, default=None, help="FastStream max_workers")
    p.add_argument("--ack-after", action="store_true", help="FastStream AckPolicy.ACK (commit after)")
    return p.parse_args(argv)


async def main_async(args: argparse.Namespace) -> None:
    raw = yaml.safe_load(args.config.read_text())
    if args.mode == "faststream":
        await faststream(raw, args.workers, args.ack_after)
        return
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    await echo(raw, stop)


def main(argv: Sequence[str] | None = None) -> int:
    asyncio.run(main_async(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
