"""Tracing end to end: a real bridge process, the real broker, the sandbox over HTTP, and an in-process
OTLP/HTTP receiver that decodes what the bridge exports."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bridge.local.otlp import OtlpReceiver, ReceivedSpan
from bridge.messages.trace_context import parse_traceparent
from tests.integration.conftest import Stack, workfloo_command, zuora_command
from tests.integration.test_process import start_process

pytestmark = pytest.mark.integration


def upstream(n: int) -> tuple[str, str, bytes]:
    """(trace id, span id, traceparent) of a made-up sender span."""
    trace_id, span_id = f"{n:02x}" * 16, f"{n + 1:02x}" * 8
    return trace_id, span_id, f"00-{trace_id}-{span_id}-01".encode()


async def start_traced(
    stack: Stack,
    tmp_path: Path,
    receiver: OtlpReceiver,
    monkeypatch: Any,
    *,
    metrics_port: int | None = None,
    **observability: Any,
) -> asyncio.subprocess.Process:
    """A bridge process exporting its spans to ``receiver``."""
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "100")  # export every 100 ms instead of 5 s
    tracing = {"tracing": {"enabled": True, "endpoint": receiver.url}}
    # Publish spans come from the at-least-once publisher: a transactional publish has none yet
    # (docs/exactly-once.md), so the span tests run without transactions wherever the broker has them.
    return await start_process(
        stack,
        tmp_path,
        metrics_port=metrics_port,
        observability={**tracing, **observability},
        kafka={"transactions": "off"},
    )


async def produce(bootstrap: str, records: list[tuple[str, bytes, list[tuple[str, bytes]]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for topic, value, headers in records:
            await producer.send_and_wait(topic, value, key=uuid.uuid4().bytes, headers=headers)
    finally:
        await producer.stop()


async def collect_records(stack: Stack, count: int, within_s: float = 60.0) -> list[Any]:
    """Raw records (with headers) from the outcome topics and the dead-letter topic."""
    consumer = AIOKafkaConsumer(
        *stack.settings.topics.results,
        bootstrap_servers=stack.broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = asyncio.get_running_loop().time() + within_s
        while len(found) < count and asyncio.get_running_loop().time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            found += [record for records in batch.values() for record in records]
    finally:
        await consumer.stop()
    return found


async def wait_for_spans(
    receiver: OtlpReceiver, done: Callable[[list[ReceivedSpan]], bool], within_s: float = 30.0
) -> list[ReceivedSpan]:
    deadline = asyncio.get_running_loop().time() + within_s
    while not done(receiver.spans):
        assert asyncio.get_running_loop().time() < deadline, f"spans received: {receiver.spans}"
        await asyncio.sleep(0.1)
    return receiver.spans


def last_header(record: Any, name: str) -> bytes | None:
    values = [value for key, value in record.headers if key == name]
    return values[-1] if values else None


def ids(traceparent: bytes | str | None) -> tuple[str, str]:
    assert traceparent is not None
    text = traceparent.decode() if isinstance(traceparent, bytes) else traceparent
    parsed = parse_traceparent(text)
    assert parsed is not None, text
    return f"{parsed[0]:032x}", f"{parsed[1]:016x}"


def one(spans: list[ReceivedSpan], trace_id: str, prefix: str) -> ReceivedSpan:
    chosen = [s for s in spans if s.trace_id == trace_id and s.name.startswith(prefix)]
    assert len(chosen) == 1, (prefix, [s.name for s in spans if s.trace_id == trace_id])
    return chosen[0]


async def test_each_command_is_one_trace_from_its_sender_to_its_outcome(
    stack: Stack, tmp_path: Path, receiver: OtlpReceiver, monkeypatch: Any
) -> None:
    topics = stack.settings.topics
    prefix = f"trace-{uuid.uuid4().hex[:6]}"
    (a_trace, a_span, a_parent), (b_trace, b_span, b_parent) = upstream(0x11), upstream(0x22)
    (c_trace, c_span, c_parent), (e_trace, _, e_parent) = upstream(0x33), upstream(0x55)
    envelope = {
        "specversion": "1.0",
        "id": f"{prefix}-structured",
        "source": "urn:test",
        "type": "workflow.command.run",
        "traceparent": b_parent.decode(),
        "data": {k: v for k, v in workfloo_command("x").items() if k != "id"},
    }
    run, js = topics.run_commands, orjson.dumps
    # binary content mode: the CloudEvents attributes are ce_ headers, the command (without id) the value
    binary_data = {k: v for k, v in workfloo_command("x").items() if k != "id"}
    binary_attributes = [
        ("ce_specversion", b"1.0"),
        ("ce_id", f"{prefix}-binary".encode()),
        ("ce_source", b"urn:tracing-test"),
        ("ce_type", b"workflow.command.run"),
    ]
    sent = [  # Kafka header; CloudEvents structured; CloudEvents binary-mode header; garbage; dead letter
        (run, js(zuora_command(f"{prefix}-header")), [("traceparent", a_parent), ("tracestate", b"rojo=1")]),
        (run, js(envelope), []),
        (run, js(binary_data), [*binary_attributes, ("ce_traceparent", c_parent)]),
        (run, js(workfloo_command(f"{prefix}-garbage")), [("traceparent", b"\xff\xfe00-zz")]),
        (run, b"not json", [("traceparent", e_parent)]),
    ]
    process = await start_traced(stack, tmp_path, receiver, monkeypatch)
    try:
        await produce(stack.broker.bootstrap, sent)
        records = await collect_records(stack, len(sent))

        spans = await wait_for_spans(
            receiver, lambda got: sum(s.name.startswith("publish") for s in got) >= 5
        )
    finally:
        process.terminate()
        await process.wait()
    assert len(records) == len(sent)
    outcomes = {orjson.loads(r.value)["subject"]: r for r in records if r.topic != topics.dead_letter}
    dead = [r for r in records if r.topic == topics.dead_letter]
    assert {s.resource.get("service.name") for s in spans} == {"workflow-bridge"}

    # each upstream context is continued: same trace id, the sender's span is the parent
    for command_id, trace_id, span_id in (
        (f"{prefix}-header", a_trace, a_span),
        (f"{prefix}-structured", b_trace, b_span),
        (f"{prefix}-binary", c_trace, c_span),
    ):
        record = outcomes[command_id]
        command = one(spans, trace_id, "process ")
        publish = one(spans, trace_id, "publish ")
        assert command.parent_span_id == span_id
        assert command.attributes["bridge.command.id"] == command_id
        assert command.attributes["bridge.status"] == "queued" and command.attributes["bridge.attempts"] == 1
        assert publish.parent_span_id == command.span_id
        assert ids(last_header(record, "traceparent")) == (trace_id, publish.span_id)  # the latest hop
        assert ids(orjson.loads(record.value)["traceparent"]) == (trace_id, command.span_id)  # its maker

    # the Zuora command: one attempt span (route template, not the path) and the token fetch inside it
    command = one(spans, a_trace, "process ")
    attempt = one(spans, a_trace, "POST /workflows/")
    token = one(spans, a_trace, "POST token")
    assert attempt.name == "POST /workflows/{workflow_id}/run" and attempt.parent_span_id == command.span_id
    assert attempt.attributes["url.template"] == "/workflows/{workflow_id}/run"
    assert attempt.attributes["http.response.status_code"] == 200
    assert token.parent_span_id == attempt.span_id and token.attributes["bridge.token.provider"] == "Zuora"
    assert last_header(outcomes[f"{prefix}-header"], "tracestate") == b"rojo=1"
    assert one(spans, b_trace, "process ").attributes["bridge.trace_context.source"] == "ce_structured"
    assert one(spans, c_trace, "process ").attributes["bridge.trace_context.source"] == "ce_binary"

    # a non-UTF-8 traceparent: a new trace, and the command ran anyway
    garbage = outcomes[f"{prefix}-garbage"]
    assert orjson.loads(garbage.value)["data"]["status"] == "queued"
    new_trace, _ = ids(last_header(garbage, "traceparent"))
    root = one(spans, new_trace, "process ")
    assert root.parent_span_id == "" and root.attributes["bridge.trace_context.ignored"] == ["kafka"]

    # the dead letter keeps the original header first and carries the trace back last
    assert len(dead) == 1 and dead[0].headers[0] == ("traceparent", e_parent)
    assert ids(last_header(dead[0], "traceparent")) == (e_trace, one(spans, e_trace, "publish ").span_id)
    assert one(spans, e_trace, "process ").attributes["bridge.dead_letter.reason"] == "invalid_json"
