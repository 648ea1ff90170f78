"""What the hot-path changes of issue 16 must keep: event ids, scraped gauges, the timing header."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import orjson
from aiokafka import TopicPartition
from hypothesis import given
from hypothesis import strategies as st

from bridge.config.settings import EngineSettings
from bridge.kafka.engine import Engine
from bridge.kafka.records import TIMING_HEADER
from bridge.messages.outcomes import _OUTCOME_NAMESPACE, SourceRecord, outcome_event_id
from bridge.messages.records import Incoming, Outgoing
from bridge.observability.logs import JsonFormatter, _timestamp
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.testing import FakeConsumer, FakeProducer

TOPIC = "cmd"
P0 = TopicPartition(TOPIC, 0)


@given(st.text(min_size=1, max_size=60), st.integers(0, 10_000), st.integers(0, 2**63 - 1))
def test_outcome_event_id_is_the_uuid5_of_the_source(topic: str, partition: int, offset: int) -> None:
    source = SourceRecord(topic=topic, partition=partition, offset=offset)
    assert outcome_event_id(source) == str(uuid.uuid5(_OUTCOME_NAMESPACE, f"{topic}/{partition}/{offset}"))


async def until(condition: Callable[[], bool], within_s: float = 2.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - polls state spread over several objects
            await asyncio.sleep(0.001)


async def run_engine(
    settings: EngineSettings, gate: asyncio.Event, count: int
) -> tuple[Metrics, FakeProducer]:
    """``count`` records through an engine whose handler waits for ``gate``; returns once all are out."""
    consumer, producer, metrics = FakeConsumer(), FakeProducer(), Metrics()

    async def handler(record: Incoming) -> Outgoing:
        await gate.wait()
        return Outgoing("out", record.key, b"x")

    engine = Engine(consumer, producer, handler, {TOPIC: "run"}, settings, metrics)
    task = asyncio.create_task(engine.run())
    await until(lambda: consumer.topics_subscribed == [TOPIC])
    for i in range(count):
        consumer.add(TOPIC, b"{}", key=f"k{i}".encode())
    await consumer.rebalance([P0])
    await until(lambda: engine.stats.in_flight == count)
    assert sample(metrics, "bridge_in_flight_commands") == count
    assert sample(metrics, "bridge_last_progress_timestamp_seconds") == 0
    gate.set()
    await until(lambda: len(producer.sent) == count)
    engine.request_stop()
    await asyncio.wait_for(task, 5)
    return metrics, producer


def sample(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


async def test_gauges_are_read_when_scraped() -> None:
    before = time.time()
    metrics, _ = await run_engine(EngineSettings(commit_interval_s=0.01), asyncio.Event(), 3)
    assert sample(metrics, "bridge_in_flight_commands") == 0
    progress = sample(metrics, "bridge_last_progress_timestamp_seconds")
    assert progress is not None and before <= progress <= time.time()


async def test_timing_header_carries_fetch_then_start() -> None:
    before_ms = time.time() * 1000
    settings = EngineSettings(commit_interval_s=0.01, timing_header=True)
    _, producer = await run_engine(settings, asyncio.Event(), 2)
    for sent in producer.sent:
        values = [v for k, v in sent.headers if k == TIMING_HEADER]
        assert len(values) == 1
        fetched, started = (float(x) for x in values[0].split(b","))
        assert before_ms - 0.1 <= fetched <= started <= time.time() * 1000


async def test_no_timing_header_by_default() -> None:
    _, producer = await run_engine(EngineSettings(commit_interval_s=0.01), asyncio.Event(), 2)
    assert all(k != TIMING_HEADER for sent in producer.sent for k, _ in sent.headers)


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_log_timestamps_match_datetime_isoformat(created: float) -> None:
    expected = datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")
    assert _timestamp(created) == expected


def test_the_json_line_keeps_its_fields_and_their_order() -> None:
    record = logging.LogRecord("bridge.outcome", logging.INFO, __file__, 1, "outcome %s", ("c-1",), None)
    record.__dict__.update(command_id="c-1", status="queued", _private="hidden", duration_ms=1.5)
    line = orjson.loads(JsonFormatter(Redactor()).format(record))
    assert list(line) == ["ts", "level", "logger", "msg", "command_id", "status", "duration_ms"]
    assert line["msg"] == "outcome c-1" and line["level"] == "info" and line["duration_ms"] == 1.5
