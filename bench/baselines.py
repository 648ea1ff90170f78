"""What a user would measure without the bridge, over the same broker, sandbox and data shape.

- ``sequential``: the loop a user writes first: consume -> HTTP call -> produce (send_and_wait) ->
  commit, one command at a time.
- ``http_only``: the HTTP ceiling: the same provider call at the bridge's concurrency, no Kafka.
- ``kafka_only``: the Kafka ceiling: consume and produce the same records in batches, no HTTP.

All three run in the benchmark's own process; their CPU figure is this process's CPU time.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench.stats import Row
from bench.workload import (
    DEFINITION,
    WORKFLOO_HEADERS,
    WORKFLOO_PATH,
    Latency,
    Shape,
    make_topics,
    preload,
)


@dataclass(frozen=True, slots=True)
class World:
    """The shared broker and sandbox."""

    bootstrap: str
    sandbox_url: str


def _consumer(world: World, topic: str) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        topic,
        bootstrap_servers=world.bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )


def _producer(world: World) -> AIOKafkaProducer:
    return AIOKafkaProducer(bootstrap_servers=world.bootstrap, acks="all", enable_idempotence=False)


def _ms_since(timestamp_ms: int, now: float) -> float:
    return now * 1000 - timestamp_ms


async def sequential(world: World, scenario: str, shape: Shape, latency: Latency, max_s: float) -> Row:
    """``shape.commands`` commands (or ``max_s`` seconds) through the plain one-at-a-time loop."""
    topics = await make_topics(world.bootstrap, f"{scenario}-seq", shape.partitions)
    await preload(world.bootstrap, topics.run_commands, shape, f"{scenario}-seq")
    consumer, producer = _consumer(world, topics.run_commands), _producer(world)
    e2e: list[float] = []
    service: list[float] = []
    started = cpu0 = 0.0
    try:
        await consumer.start()
        await producer.start()
        async with aiohttp.ClientSession() as http:
            async for msg in consumer:
                picked = time.time()
                if not e2e:
                    started, cpu0 = picked, time.process_time()
                cmd = orjson.loads(msg.value)
                async with http.post(
                    world.sandbox_url + WORKFLOO_PATH,
                    json={"idWorkflooDefinition": cmd["definition_id"]},
                    headers=WORKFLOO_HEADERS,
                ) as resp:
                    reply = await resp.json()
                outcome = {"command_id": cmd["id"], "status": resp.status, "ref": reply.get("id")}
                await producer.send_and_wait(topics.run_outcomes, orjson.dumps(outcome), key=msg.key)
                await consumer.commit()
                done = time.time()
                e2e.append(_ms_since(msg.timestamp, done))
                service.append((done - picked) * 1000)
                if len(e2e) >= shape.commands or time.time() - started > max_s:
                    break
    finally:
        await consumer.stop()
        await producer.stop()
    row = Row(scenario, "sequential", len(e2e), time.time() - started, latency.ms)
    row.cpu_s = time.process_time() - cpu0
    return row.with_latencies(e2e).with_service(service)


async def http_only(world: World, scenario: str, requests: int, concurrency: int, latency: Latency) -> Row:
    """``requests`` provider calls with ``concurrency`` in flight (connection pool of the same size)."""
    body = orjson.dumps({"idWorkflooDefinition": DEFINITION})
    url = world.sandbox_url + WORKFLOO_PATH
    todo = iter(range(requests))
    took: list[float] = []
    failures = 0

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for _ in todo:
            t = time.perf_counter()
            async with session.post(url, data=body, headers=WORKFLOO_HEADERS) as resp:
                await resp.read()
                failures += resp.status != 200
            took.append((time.perf_counter() - t) * 1000)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        started, cpu0 = time.time(), time.process_time()
        await asyncio.gather(*(worker(session) for _ in range(min(concurrency, requests))))
        seconds = time.time() - started
    row = Row(scenario, "http-only", len(took), seconds, latency.ms, extra={"failures": failures})
    row.cpu_s = time.process_time() - cpu0
    return row.with_latencies(took).with_service(took)


async def kafka_only(world: World, scenario: str, shape: Shape, max_s: float) -> Row:
    """Consume the preloaded commands and produce one small event each, batch by batch, no HTTP."""
    topics = await make_topics(world.bootstrap, f"{scenario}-kafka", shape.partitions)
    await preload(world.bootstrap, topics.run_commands, shape, f"{scenario}-kafka")
    consumer, producer = _consumer(world, topics.run_commands), _producer(world)
    e2e: list[float] = []
    service: list[float] = []
    started = cpu0 = 0.0
    try:
        await consumer.start()
        await producer.start()
        deadline = time.time() + max_s
        while len(e2e) < shape.commands and time.time() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=1000)
            records = [rec for recs in batch.values() for rec in recs]
            if not records:
                continue
            picked = time.time()
            if not e2e:
                started, cpu0 = picked, time.process_time()
            await _echo(producer, topics.run_outcomes, records)
            await consumer.commit()
            now = time.time()
            e2e.extend(_ms_since(rec.timestamp, now) for rec in records)
            service.extend([(now - picked) * 1000] * len(records))
    finally:
        await consumer.stop()
        await producer.stop()
    row = Row(scenario, "kafka-only", len(e2e), time.time() - started, 0.0)
    row.cpu_s = time.process_time() - cpu0
    return row.with_latencies(e2e).with_service(service)


async def _echo(producer: AIOKafkaProducer, topic: str, records: list[Any]) -> None:
    futures = []
    for rec in records:
        cmd = orjson.loads(rec.value)
        event = orjson.dumps({"command_id": cmd["id"], "status": "queued"})
        futures.append(await producer.send(topic, event, key=rec.key))
    await asyncio.gather(*futures)
