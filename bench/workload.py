"""The data the benchmark feeds and reads: topics, commands, the preload, the paced producer and the
outcome collector that counts outcomes by command id and times them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bridge.config.settings import TopicSettings
from bridge.kafka.records import TIMING_HEADER
from bridge.local.broker import create_topics
from bridge.local.stack import topic_layout
from bridge.sandbox.workfloo import WORKFLOO_API_KEY, WORKFLOO_DEFINITION_PLAIN

TARGET = "workfloo-sandbox"
PROVIDER = "workfloo"  # the sandbox fault-injection name of that target
DEFINITION = WORKFLOO_DEFINITION_PLAIN  # needs no scenario and no parameters
WORKFLOO_PATH = "/workfloo-sandbox/api/v1/workfloo"
WORKFLOO_HEADERS = {
    "x-api-key": WORKFLOO_API_KEY,
    "Content-Type": "application/json",
    "Accept": "application/json",
}


@dataclass(frozen=True, slots=True)
class Shape:
    """How one scenario's commands look: count, distinct keys, partitions."""

    commands: int
    keys: int
    partitions: int


def fresh_topics(label: str) -> TopicSettings:
    prefix = f"bench-{label}-{uuid.uuid4().hex[:8]}"
    return TopicSettings(
        run_commands=f"{prefix}.run.commands",
        control_commands=f"{prefix}.control.commands",
        run_outcomes=f"{prefix}.run.outcomes",
        control_outcomes=f"{prefix}.control.outcomes",
        dead_letter=f"{prefix}.dlq",
        ledger=f"{prefix}.ledger",
    )


async def make_topics(bootstrap: str, label: str, partitions: int) -> TopicSettings:
    topics = fresh_topics(label)
    await create_topics(bootstrap, topic_layout(topics, partitions))
    return topics


def command(command_id: str) -> dict[str, Any]:
    return {"id": command_id, "target": TARGET, "operation": "workfloo.execute", "definition_id": DEFINITION}


def key_of(index: int, keys: int) -> bytes:
    return f"k{index % keys}".encode()


def make_producer(bootstrap: str, linger_ms: int = 10) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=linger_ms
    )


@dataclass
class Sent:
    """Command id -> record timestamp (seconds) of everything the benchmark published."""

    at: dict[str, float] = field(default_factory=dict)


async def preload(bootstrap: str, topic: str, shape: Shape, label: str) -> Sent:
    """Publish ``shape.commands`` commands over ``shape.keys`` keys, acknowledged before returning."""
    sent = Sent()
    producer = make_producer(bootstrap, linger_ms=20)
    try:
        await producer.start()
        pending = []
        for i in range(shape.commands):
            pending.append(await _send_one(producer, topic, f"{label}-{i}", key_of(i, shape.keys), sent))
            if len(pending) >= 2000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


async def _send_one(producer: AIOKafkaProducer, topic: str, cid: str, key: bytes, sent: Sent) -> Any:
    now = time.time()
    sent.at[cid] = now
    return await producer.send(topic, orjson.dumps(command(cid)), key=key, timestamp_ms=int(now * 1000))


async def paced(
    bootstrap: str, topic: str, shape: Shape, rate: float, label: str, sent: Sent, tick_s: float = 0.005
) -> float:
    """Publish ``shape.commands`` commands at ``rate`` per second; returns the achieved rate."""
    producer = make_producer(bootstrap, linger_ms=0)
    try:
        await producer.start()
        started = time.monotonic()
        pending = []
        for i in range(shape.commands):
            due = started + i / rate
            delay = due - time.monotonic()
            if delay > tick_s:
                await asyncio.sleep(delay)
            pending.append(await _send_one(producer, topic, f"{label}-{i}", key_of(i, shape.keys), sent))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return shape.commands / max(1e-9, time.monotonic() - started)


@dataclass
class Arrival:
    at: float
    """time.time() when the benchmark's consumer read the outcome"""
    duration_ms: float
    status: str
    key: bytes | None = None
    sent_ms: int = 0
    """the outcome record's timestamp: when the bridge handed it to its producer"""
    fetched_ms: float | None = None
    """from the ``bridge.timing`` header: when the bridge's fetch returned the command"""
    started_ms: float | None = None
    """from the ``bridge.timing`` header: when the command's key routine started it"""


def read_timing(headers: Any) -> tuple[float | None, float | None]:
    """``bridge.timing`` header -> (fetched_ms, started_ms); (None, None) without it."""
    for name, value in headers or ():
        if name == TIMING_HEADER and value:
            fetched, _, started = value.partition(b",")
            return float(fetched), float(started)
    return None, None


class OutcomeCollector:
    """Reads outcome and dead-letter topics from the beginning and keeps every arrival by command id."""

    def __init__(self, bootstrap: str, topics: TopicSettings) -> None:
        self._topics = topics
        self._consumer = AIOKafkaConsumer(
            topics.run_outcomes,
            topics.control_outcomes,
            topics.dead_letter,
            bootstrap_servers=bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,  # the embedded broker holds an empty fetch ~200 ms otherwise
            isolation_level="read_committed",  # what a consumer with the exactly-once guarantee sees
        )
        self.arrivals: dict[str, list[Arrival]] = {}
        self.outcomes = 0  # counted as taken: summing ``arrivals`` on every read costs O(n) (soak latency)
        self.dead_letters = 0
        self.unreadable = 0

    async def __aenter__(self) -> OutcomeCollector:
        await self._consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._consumer.stop()

    async def collect(self, expected: int, timeout_s: float, alive: Callable[[], bool] | None = None) -> bool:
        """Read until ``expected`` outcomes (and dead letters) arrived; False on timeout or when
        ``alive()`` turns false (the process that should produce them has exited)."""
        deadline = time.monotonic() + timeout_s
        while self.outcomes + self.dead_letters + self.unreadable < expected:
            if time.monotonic() > deadline or (alive is not None and not alive()):
                return False
            batch = await self._consumer.getmany(timeout_ms=100)
            now = time.time()
            for records in batch.values():
                for rec in records:
                    self._take(rec, now)
        return True

    async def settle(self, quiet_s: float = 0.5) -> None:
        """Keep reading for ``quiet_s`` to catch duplicates that arrive after the expected count."""
        await self.collect(10**12, quiet_s)

    def _take(self, rec: Any, now: float) -> None:
        if rec.topic == self._topics.dead_letter:
            self.dead_letters += 1
            return
        try:
            data = orjson.loads(rec.value)["data"]
            fetched, started = read_timing(rec.headers)
            duration = float(data.get("duration_ms") or 0.0)
            status = str(data.get("status"))
            arrival = Arrival(now, duration, status, rec.key, rec.timestamp, fetched, started)
            self.arrivals.setdefault(str(data["command_id"]), []).append(arrival)
            self.outcomes += 1
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.unreadable += 1

    def statuses(self) -> Counter[str]:
        return Counter(a.status for arrivals in self.arrivals.values() for a in arrivals)


@dataclass(frozen=True, slots=True)
class Latency:
    """The provider latency injected into the sandbox for the benchmark's target."""

    ms: float
    distribution: str = "fixed"


async def set_latency(sandbox_url: str, latency: Latency) -> None:
    """Reset the sandbox (forget executions and the request log), then set the target's latency."""
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{sandbox_url}/_sandbox/reset") as resp:
            resp.raise_for_status()
        body = {"latency_ms": latency.ms, "latency_distribution": latency.distribution}
        async with session.put(f"{sandbox_url}/_sandbox/faults/{PROVIDER}", json=body) as resp:
            resp.raise_for_status()
