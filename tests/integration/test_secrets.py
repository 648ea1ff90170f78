"""No configured secret reaches logs, outcome events, dead letters, /metrics or exported spans, across a
full run of every example command, including an authentication failure, at DEBUG log level."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import aiohttp
import orjson
import pytest

from bridge.local import examples
from bridge.local.broker import free_port
from bridge.local.otlp import OtlpReceiver, ReceivedSpan
from bridge.local.stack import SANDBOX_ENV
from tests.integration.conftest import Stack
from tests.integration.test_tracing import start_traced, wait_for_spans

pytestmark = pytest.mark.integration


def span_text(spans: list[ReceivedSpan]) -> bytes:
    """Everything a span carries that a person could read: names, attributes, status messages."""
    return orjson.dumps([(s.name, s.attributes, s.status_message, s.resource) for s in spans])


async def test_no_secret_leaves_the_process(
    stack: Stack, tmp_path: Path, receiver: OtlpReceiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    logging = {"log_level": "DEBUG", "log_format": "json"}
    process = await start_traced(stack, tmp_path, receiver, monkeypatch, metrics_port=port, **logging)
    assert process.stderr is not None
    logs = bytearray()

    async def drain_logs() -> None:
        assert process.stderr is not None
        while chunk := await process.stderr.read(65536):
            logs.extend(chunk)

    reader = asyncio.create_task(drain_logs())
    try:
        commands = examples.example_commands(f"secrets-{uuid.uuid4().hex[:6]}")
        await stack.send(*commands)
        await stack.send((b"junk", b"not json"), topic=stack.settings.topics.run_commands)
        events = await stack.collect(len(commands) + 1, within_s=60)
        assert len(events) == len(commands) + 1
        published = lambda got: sum(s.name.startswith("publish") for s in got) >= len(events)  # noqa: E731
        spans = span_text(await wait_for_spans(receiver, published))
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            metrics = await resp.text()
    finally:
        process.terminate()
        await process.wait()
        await reader
    statuses = {e["data"]["status"] for e in events if isinstance(e, dict)}
    assert {"queued", "applied", "conflict", "rejected", "error"} <= statuses  # auth failure included
    published = b"".join(
        orjson.dumps(e) if isinstance(e, dict) else (e.value or b"") + b"".join(v for _, v in e.headers)
        for e in events
    )
    assert b'"level":"debug"' in logs or b'"level":"info"' in logs  # the logs were really captured
    for name, secret in SANDBOX_ENV.items():
        places = (
            ("logs", bytes(logs)),
            ("events", published),
            ("metrics", metrics.encode()),
            ("spans", spans),
        )
        for where, text in places:
            assert secret.encode() not in text, f"{name} leaked into {where}"
    # no token, no credential header and no provider URL (with its ids or userinfo) in any span
    assert b"token" in spans  # the token fetches were traced: the text below was really searched
    for forbidden in (b"Bearer ", b"OAuth ", b"Basic ", b"://", stack.sandbox.url.encode(), b"access_token"):
        assert forbidden not in spans, forbidden
