"""The spans of one command over fakes (in-memory exporter, FakeTransport); the end-to-end export
through the real broker and the sandbox is tests/integration/test_tracing.py."""

from __future__ import annotations

import subprocess
import sys

import orjson
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import ValidationError

from bridge.config.settings import Settings, TracingSettings
from bridge.errors import RetryableCallError
from bridge.local.commands import format_dead_letter, format_event
from bridge.local.otlp import OtlpReceiver
from bridge.messages.outcomes import ErrorKind
from bridge.messages.trace_context import parse_traceparent
from bridge.observability import tracing
from bridge.pipeline.processor import Incoming, Outgoing
from bridge.providers.settings import parse_settings
from bridge.testing import FakeTransport, json_response
from tests.unit.pipeline.test_processor import SETTINGS, processor, record, workfloo

UPSTREAM_TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
UPSTREAM_SPAN = 0x00F067AA0BA902B7
UPSTREAM = f"00-{UPSTREAM_TRACE:032x}-{UPSTREAM_SPAN:016x}-01".encode()


class Publisher:
    """Stands where Engine._publish stands: records what would go to the broker."""

    def __init__(self) -> None:
        self.sent: list[list[tuple[str, bytes]]] = []

    @tracing.traced_publish
    async def publish(self, outgoing: Outgoing) -> None:
        self.sent.append(list(outgoing.headers))


def with_headers(incoming: Incoming, *headers: tuple[str, bytes]) -> Incoming:
    return Incoming(
        incoming.topic, incoming.partition, incoming.offset, incoming.key, incoming.value, headers
    )


def named(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def header_ids(headers: list[tuple[str, bytes]]) -> tuple[int, int, int] | None:
    values = [value for name, value in headers if name == "traceparent"]
    return parse_traceparent(values[-1].decode()) if values else None


async def test_a_command_continues_the_upstream_trace_down_to_the_published_outcome(
    spans: InMemorySpanExporter,
) -> None:
    transport = FakeTransport.scripted([json_response(200, b'{"id": "exec-9"}')])
    out = await processor(transport).process(with_headers(record(workfloo()), ("traceparent", UPSTREAM)))
    publisher = Publisher()
    await publisher.publish(out)

    found = named(spans)
    command = found[f"process {SETTINGS.topics.run_commands}"]
    attempt = found["POST /api/v1/workfloo"]
    publish = found[f"publish {SETTINGS.topics.run_outcomes}"]
    assert command.parent is not None and command.parent.span_id == UPSTREAM_SPAN
    assert {s.context.trace_id for s in found.values()} == {UPSTREAM_TRACE}
    assert attempt.parent is not None and attempt.parent.span_id == command.context.span_id
    assert publish.parent is not None and publish.parent.span_id == command.context.span_id
    assert (
        dict(command.attributes or {}).items()
        >= {
            "bridge.command.id": "c-1",
            "bridge.target": "wf",
            "bridge.provider": "workfloo",
            "bridge.operation": "workfloo.execute",
            "bridge.status": "queued",
            "bridge.attempts": 1,
            "bridge.trace_context.source": "kafka",
        }.items()
    )
    assert (
        dict(attempt.attributes or {}).items()
        >= {
            "http.request.method": "POST",
            "url.template": "/api/v1/workfloo",
            "server.address": "wf.example",
            "http.response.status_code": 200,
        }.items()
    )
    # the CloudEvents extension names where the outcome was made; the header is the latest hop
    event = orjson.loads(out.value or b"")
    assert parse_traceparent(event["traceparent"]) == (UPSTREAM_TRACE, command.context.span_id, 1)
    assert header_ids(publisher.sent[0]) == (UPSTREAM_TRACE, publish.context.span_id, 1)


async def test_each_retry_is_its_own_span_and_says_why(spans: InMemorySpanExporter) -> None:
    transport = FakeTransport.scripted(
        [RetryableCallError(ErrorKind.TIMEOUT, "no answer"), json_response(503), json_response(200)]
    )
    out = await processor(transport).process(record(workfloo()))
    assert out.outcome is not None and out.outcome.attempts == 3
    attempts = [s for s in spans.get_finished_spans() if s.name == "POST /api/v1/workfloo"]
    described = [
        (
            a.attributes.get("bridge.retry.reason"),
            a.attributes.get("http.request.resend_count"),
            a.attributes.get("http.response.status_code"),
            a.attributes.get("error.type"),
        )
        for a in attempts
        if a.attributes is not None
    ]
    assert described == [
        (None, None, None, "timeout"),
        ("timeout", 1, 503, "provider_error"),
        ("provider_error", 2, 200, None),
    ]


async def test_a_malformed_context_starts_a_new_trace_and_the_command_still_runs(
    spans: InMemorySpanExporter,
) -> None:
    transport = FakeTransport.scripted([json_response(200, b'{"id": "exec-9"}')])
    incoming = with_headers(record(workfloo()), ("traceparent", b"\xff\x00not-a-context"))
    out = await processor(transport).process(incoming)
    assert out.outcome is not None and out.outcome.provider_ref == "exec-9"
    command = named(spans)[f"process {SETTINGS.topics.run_commands}"]
    assert command.parent is None and command.context.trace_id != UPSTREAM_TRACE
    assert (command.attributes or {}).get("bridge.trace_context.ignored") == ("kafka",)
    ids = header_ids(out.headers)
    assert ids is not None and ids[:2] == (command.context.trace_id, command.context.span_id)
    assert ids[2] & 0x01  # sampled (the SDK may also set W3C level 2's random-trace-id flag)


async def test_a_dead_letter_keeps_the_original_headers_and_carries_the_trace_last(
    spans: InMemorySpanExporter,
) -> None:
    broken = Incoming(SETTINGS.topics.run_commands, 1, 3, b"k", b"{not json", (("traceparent", UPSTREAM),))
    out = await processor(FakeTransport.scripted([])).process(broken)
    publisher = Publisher()
    await publisher.publish(out)
    sent = publisher.sent[0]
    assert sent[0] == ("traceparent", UPSTREAM)  # the original, first and unchanged
    publish = named(spans)[f"publish {SETTINGS.topics.dead_letter}"]
    assert header_ids(sent) == (UPSTREAM_TRACE, publish.context.span_id, 1)
    command = named(spans)[f"process {SETTINGS.topics.run_commands}"]
    assert (command.attributes or {}).get("bridge.dead_letter.reason") == "invalid_json"


async def test_a_parent_that_was_not_sampled_is_followed_and_nothing_is_recorded(
    spans: InMemorySpanExporter,
) -> None:
    unsampled = UPSTREAM[:-2] + b"00"
    transport = FakeTransport.scripted([json_response(200)])
    out = await processor(transport).process(with_headers(record(workfloo()), ("traceparent", unsampled)))
    assert spans.get_finished_spans() == ()
    ids = header_ids(out.headers)
    assert ids is not None and ids[0] == UPSTREAM_TRACE and ids[2] == 0


async def test_with_tracing_off_nothing_is_added() -> None:
    assert tracing.active() is None
    out = await processor(FakeTransport.scripted([json_response(200)])).process(record(workfloo()))
    assert header_ids(out.headers) is None and "traceparent" not in orjson.loads(out.value or b"")


def test_with_tracing_off_opentelemetry_is_never_imported() -> None:
    script = (
        "import asyncio, sys\n"
        "from tests.unit.pipeline.test_processor import processor, record, workfloo\n"
        "from bridge.testing import FakeTransport, json_response\n"
        "import bridge.app\n"
        "run = processor(FakeTransport.scripted([json_response(200)]))\n"
        "out = asyncio.run(run.process(record(workfloo())))\n"
        "assert out.outcome is not None\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


def test_the_shell_lines_show_the_trace_id_of_outcomes_and_dead_letters() -> None:
    event = {"traceparent": UPSTREAM.decode(), "data": {"status": "queued", "command_id": "c-1"}}
    assert f"trace={UPSTREAM_TRACE:032x}" in format_event(event)
    assert "trace=" not in format_event({"data": {"status": "queued"}})
    mine = b"00-" + b"ab" * 16 + b"-" + b"cd" * 8 + b"-01"
    line = format_dead_letter(
        b"x", [("traceparent", UPSTREAM), ("dlq.reason", b"invalid_json"), ("traceparent", mine)]
    )
    assert line.endswith(f"trace={'ab' * 16}")


def test_tracing_settings_are_off_by_default_and_refuse_a_non_http_endpoint() -> None:
    assert Settings().observability.tracing.enabled is False
    env = {
        "BRIDGE__OBSERVABILITY__TRACING__ENABLED": "true",
        "BRIDGE__OBSERVABILITY__TRACING__SAMPLE_RATIO": "0.25",
    }
    tracing_settings = parse_settings({}, env).observability.tracing
    assert (tracing_settings.enabled, tracing_settings.sample_ratio) == (True, 0.25)
    with pytest.raises(ValidationError, match="http"):
        TracingSettings(endpoint="grpc://collector:4317")
    with pytest.raises(ValidationError):
        TracingSettings(sample_ratio=1.5)


async def test_started_exports_over_otlp_http_and_flushes_what_is_buffered_on_exit() -> None:
    receiver = OtlpReceiver()
    await receiver.start()
    try:
        config = {"enabled": True, "endpoint": receiver.url, "service_name": "bridge-under-test"}
        settings = parse_settings({"observability": {"tracing": config}}, {})
        async with tracing.started(settings):
            assert tracing.active() is not None
            await processor(FakeTransport.scripted([json_response(200)])).process(record(workfloo()))
            assert receiver.spans == []  # batched: nothing is sent before the schedule delay (5 s)
        assert tracing.active() is None
    finally:
        await receiver.stop()
    assert {s.name for s in receiver.spans} == {"process workflow.run.commands", "POST /api/v1/workfloo"}
    assert {s.resource["service.name"] for s in receiver.spans} == {"bridge-under-test"}


async def test_disabled_in_the_configuration_means_no_tracer() -> None:
    async with tracing.started(Settings()):
        assert tracing.active() is None
