"""With tracing off (the default) the caller's W3C trace context still passes through (issue 25.5):
a command sent with ``traceparent`` / ``tracestate`` (a Kafka header, or the attributes of a
structured CloudEvent) gets them, unchanged, on its outcome's headers and envelope and on every
lifecycle event of the workflow it started; a command without them gets none. Real broker, sandbox
over real HTTP."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from tests.integration.conftest import Stack, workfloo_command
from tests.integration.test_tracking import TERMINAL, fast, sandbox  # noqa: F401 - the fast sandbox

pytestmark = pytest.mark.integration

PARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
STATE = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
OTHER = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"


async def read(stack: Stack, topic: str, done: Any, within_s: float = 60) -> list[Any]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=stack.broker.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        async with asyncio.timeout(within_s):
            while not done(found):
                batch = await consumer.getmany(timeout_ms=200)
                found += [r for records in batch.values() for r in records]
    finally:
        await consumer.stop()
    return found


def header(record: Any, name: str) -> str | None:
    values = [value for key, value in record.headers if key == name]
    return values[-1].decode() if values else None


async def test_trace_context_passes_through_to_outcomes_and_lifecycle_with_tracing_off(stack: Stack) -> None:
    fast(stack)
    assert not stack.settings.observability.tracing.enabled  # the default
    await stack.start_bridge()
    run = uuid.uuid4().hex[:6]
    by_header, structured, plain = f"{run}-header", f"{run}-structured", f"{run}-plain"
    await stack.send(
        (b"a", workfloo_command(by_header)),
        headers=[("traceparent", PARENT.encode()), ("tracestate", STATE.encode())],
    )
    envelope = {
        "specversion": "1.0",
        "id": structured,
        "source": "/tests",
        "type": "workflow.command.run",
        "traceparent": OTHER,
        "data": {k: v for k, v in workfloo_command(structured).items() if k != "id"},
    }
    await stack.send((b"b", orjson.dumps(envelope)), topic=stack.settings.topics.run_commands)
    await stack.send((b"c", workfloo_command(plain)))

    ids = {by_header, structured, plain}
    outcomes = await read(
        stack,
        stack.settings.topics.run_outcomes,
        lambda rs: {orjson.loads(r.value)["subject"] for r in rs} >= ids,
    )
    by_id = {orjson.loads(r.value)["subject"]: r for r in outcomes}
    for command_id, parent, state in (
        (by_header, PARENT, STATE),
        (structured, OTHER, None),
        (plain, None, None),
    ):
        record = by_id[command_id]
        event = orjson.loads(record.value)
        assert event["data"]["status"] == "queued", event
        assert (header(record, "traceparent"), header(record, "tracestate")) == (parent, state), command_id
        assert (event.get("traceparent"), event.get("tracestate")) == (parent, state), command_id

    def ended(records: list[Any]) -> bool:
        events = [orjson.loads(r.value) for r in records]
        return all(any(e["subject"] == i and e["data"]["status"] in TERMINAL for e in events) for i in ids)

    lifecycle = await read(stack, stack.settings.topics.lifecycle, ended)
    for record in lifecycle:
        event = orjson.loads(record.value)
        expected = {by_header: (PARENT, STATE), structured: (OTHER, None), plain: (None, None)}[
            event["subject"]
        ]
        assert (header(record, "traceparent"), header(record, "tracestate")) == expected
        assert (event.get("traceparent"), event.get("tracestate")) == expected
    assert {orjson.loads(r.value)["subject"] for r in lifecycle} == ids
