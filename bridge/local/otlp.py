"""A small OTLP/HTTP trace receiver (protobuf encoding) for the local stack, the benchmark and tests.

It decodes what an OpenTelemetry exporter posts to ``/v1/traces`` and keeps the spans in memory.

Example::

    receiver = OtlpReceiver()
    await receiver.start()           # 127.0.0.1, a free port
    settings = {"observability": {"tracing": {"enabled": True, "endpoint": receiver.url}}}
    ...
    await receiver.stop()
"""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

PROTOBUF = "application/x-protobuf"
_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {"gzip": gzip.decompress, "deflate": zlib.decompress}


@dataclass(frozen=True, slots=True)
class ReceivedSpan:
    """One exported span; ids are lower-case hex, ``parent_span_id`` is "" for a root span."""

    name: str
    trace_id: str
    span_id: str
    parent_span_id: str
    kind: int
    attributes: dict[str, Any]
    status_code: int
    status_message: str
    resource: dict[str, Any] = field(default_factory=dict)


def decode_spans(body: bytes) -> list[ReceivedSpan]:
    request = ExportTraceServiceRequest.FromString(body)
    spans = []
    for resource_spans in request.resource_spans:
        resource = attributes_of(resource_spans.resource.attributes)
        for scope_spans in resource_spans.scope_spans:
            spans += [
                ReceivedSpan(
                    name=span.name,
                    trace_id=span.trace_id.hex(),
                    span_id=span.span_id.hex(),
                    parent_span_id=span.parent_span_id.hex(),
                    kind=span.kind,
                    attributes=attributes_of(span.attributes),
                    status_code=span.status.code,
                    status_message=span.status.message,
                    resource=resource,
                )
                for span in scope_spans.spans
            ]
    return spans


def attributes_of(pairs: Any) -> dict[str, Any]:
    return {pair.key: value_of(pair.value) for pair in pairs if isinstance(pair, KeyValue)}


def value_of(value: AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(item) for item in value.array_value.values]
    if kind == "kvlist_value":
        return attributes_of(value.kvlist_value.values)
    return getattr(value, kind)


class OtlpReceiver:
    """Accepts ``POST /v1/traces``; ``spans`` holds every span received, in arrival order."""

    def __init__(self, on_spans: Callable[[list[ReceivedSpan]], None] | None = None) -> None:
        self.spans: list[ReceivedSpan] = []
        self.exports = 0
        self._on_spans = on_spans
        self._runner: web.AppRunner | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/traces"

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_post("/v1/traces", self._export)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _export(self, request: web.Request) -> web.Response:
        body = await request.read()
        decompress = _DECOMPRESS.get(request.headers.get("Content-Encoding", ""))
        spans = decode_spans(decompress(body) if decompress else body)
        self.exports += 1
        self.spans.extend(spans)
        if self._on_spans is not None:
            self._on_spans(spans)
        reply = ExportTraceServiceResponse().SerializeToString()
        return web.Response(body=reply, content_type=PROTOBUF)
