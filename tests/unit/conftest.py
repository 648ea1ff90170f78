"""Shared fixtures: the sandbox providers over real loopback HTTP, a client session, and tracing
into memory."""

from collections.abc import AsyncIterator, Iterator

import aiohttp
import pytest
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bridge.config.settings import EngineSettings, TracingSettings
from bridge.observability import otel as tracing_otel
from bridge.observability import tracing
from bridge.sandbox import RunningSandbox, start_sandbox


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for the test; the finished spans are in the exporter."""
    exporter = InMemorySpanExporter()
    provider = tracing_otel.build_provider(TracingSettings(enabled=True), SimpleSpanProcessor(exporter))
    tracing.install(tracing_otel.OtelTracer(provider, EngineSettings().max_message_bytes))
    yield exporter
    tracing.install(None)
    provider.shutdown()


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox()
    yield running
    await running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def http(session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """The sandbox tests' name for the same client session."""
    return session
