"""The spans, with the OpenTelemetry SDK, exported over OTLP/HTTP. Imported only when tracing is on.

Span tree of one command (names follow the OpenTelemetry messaging and HTTP conventions)::

    process <command topic>            CONSUMER  parent: the record's trace context, if valid
    ├── <METHOD> <route template>      CLIENT    one per provider attempt
    │   └── POST token                 CLIENT    a token fetch the attempt waited for
    └── publish <result topic>         PRODUCER  the outcome or dead letter, until acknowledged

Attributes carry configuration names, enum values and the command id only: never a URL with ids,
a header, a token or a credential.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.environment_variables import OTEL_SDK_DISABLED, OTEL_SERVICE_NAME
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags, TraceState

from bridge import __version__
from bridge.errors import AuthError
from bridge.messages.outcomes import Status
from bridge.messages.parsing import DeadLetterReason
from bridge.messages.trace_context import TraceParent, extract, format_traceparent
from bridge.messages.wire import Header

if TYPE_CHECKING:
    from bridge.config.settings import TracingSettings
    from bridge.http import FormEndpoint
    from bridge.messages.records import Incoming, Outgoing
    from bridge.observability.tracer import A, CallRequest, CallTarget, Run

log = logging.getLogger("bridge.tracing")
SERVICE_NAME = "workflow-bridge"
INSTRUMENTATION = "workflow_bridge"


@dataclass
class _Attempts:
    """Per command: attempts so far and why the next one would be a retry."""

    count: int = 0
    reason: str | None = None


_attempts: ContextVar[_Attempts | None] = ContextVar("bridge_attempts", default=None)


@dataclass(frozen=True, slots=True)
class Running:
    tracer: OtelTracer
    shutdown: Callable[[], None]
    """Blocking: exports what is buffered (bounded by the exporter's timeout)."""


def start(config: TracingSettings, max_message_bytes: int) -> Running | None:
    """A tracer exporting over OTLP/HTTP; None when ``OTEL_SDK_DISABLED=true``."""
    if os.environ.get(OTEL_SDK_DISABLED, "").strip().lower() == "true":
        log.warning("tracing is enabled in the configuration but OTEL_SDK_DISABLED=true: tracing stays off")
        return None
    exporter = OTLPSpanExporter(endpoint=config.endpoint)
    provider = build_provider(config, BatchSpanProcessor(exporter))
    log.info("tracing on: OTLP/HTTP export to %s", _endpoint_for_log(config.endpoint))
    return Running(OtelTracer(provider, max_message_bytes), provider.shutdown)


def build_provider(config: TracingSettings, processor: SpanProcessor) -> TracerProvider:
    """Sampling: ``sample_ratio`` (parent-based) if set, else ``OTEL_TRACES_SAMPLER``; the SDK's default
    is parent-based always-on."""
    sampler: Sampler | None = None
    if config.sample_ratio is not None:
        sampler = ParentBased(TraceIdRatioBased(config.sample_ratio))
    service = config.service_name or os.environ.get(OTEL_SERVICE_NAME) or SERVICE_NAME
    resource = Resource.create({"service.name": service, "service.version": __version__})
    provider = TracerProvider(resource=resource, sampler=sampler)
    provider.add_span_processor(processor)
    return provider


def _endpoint_for_log(endpoint: str | None) -> str:
    if endpoint is None:
        return "the OTEL_EXPORTER_OTLP_* endpoint"
    parts = urlsplit(endpoint)  # no userinfo, no query: they may hold credentials
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path}"


class OtelTracer:
    """The :class:`bridge.observability.tracer.Tracer` of a running bridge."""

    def __init__(self, provider: trace.TracerProvider, max_message_bytes: int) -> None:
        self._tracer = provider.get_tracer(INSTRUMENTATION, __version__)
        self._max_bytes = max_message_bytes

    async def process(self, run: Run[Outgoing], record: Incoming) -> Outgoing:
        found = extract(record.headers, record.value, self._max_bytes)
        parent = trace.set_span_in_context(NonRecordingSpan(_span_context(found.parent, remote=True)))
        attributes = _record_attributes(record, found.parent, found.ignored)
        with self._tracer.start_as_current_span(
            f"process {record.topic}", parent, SpanKind.CONSUMER, attributes, record_exception=False
        ) as span:
            token = _attempts.set(_Attempts())
            try:
                outgoing = await run()
            finally:
                _attempts.reset(token)
            _describe(span, outgoing)
            if not span.get_span_context().is_valid:
                return outgoing
            headers = [*outgoing.headers, *_propagation_headers(span)]
            return replace(outgoing, headers=headers, trace=_traced(span))

    async def attempt(self, run: Run[A], runtime: CallTarget, request: CallRequest) -> A:
        if not trace.get_current_span().is_recording():
            return await run()  # children of a command that is not sampled would not be either
        attempts = _attempts.get() or _Attempts()
        attributes = _attempt_attributes(runtime, request, attempts)
        route = request.route or "provider"
        with self._tracer.start_as_current_span(
            f"{request.method} {route}", kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            result = await run()
            verdict, response, _ = result
            if response is not None:
                span.set_attribute("http.response.status_code", response.status)
            kind = verdict.error_kind.value if verdict.error_kind else None
            if kind is not None:
                span.set_attribute("error.type", kind)
                span.set_status(StatusCode.ERROR, kind)
            attempts.count += 1
            attempts.reason = kind
            return result

    async def token_fetch(self, run: Run[bytes], endpoint: FormEndpoint) -> bytes:
        if not trace.get_current_span().is_recording():
            return await run()
        url = urlsplit(endpoint.url)
        attributes = {
            "http.request.method": "POST",
            "url.template": url.path or "/",
            "server.address": url.hostname or "",
            "bridge.token.provider": endpoint.label,
        }
        with self._tracer.start_as_current_span(
            "POST token", kind=SpanKind.CLIENT, attributes=attributes, record_exception=False
        ) as span:
            try:
                return await run()
            except AuthError as exc:
                span.set_attribute("error.type", "auth")
                span.set_status(StatusCode.ERROR, exc.message)  # messages name the provider and status only
                raise

    async def publish(self, run: Run[None], outgoing: Outgoing) -> None:
        parent = outgoing.trace
        if parent is None or not parent.sampled:
            return await run()  # the header keeps the command span's (unsampled) context
        context = trace.set_span_in_context(NonRecordingSpan(_span_context(parent, remote=False)))
        attributes = {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": outgoing.topic,
        }
        with self._tracer.start_as_current_span(
            f"publish {outgoing.topic}", context, SpanKind.PRODUCER, attributes, record_exception=False
        ) as span:
            _replace_header(outgoing.headers, _propagation_headers(parent), _propagation_headers(span))
            await run()
        return None

    def cloudevent_extensions(self) -> Mapping[str, str]:
        return {name: value.decode() for name, value in _propagation_headers(trace.get_current_span())}


def _span_context(parent: TraceParent | None, *, remote: bool) -> SpanContext:
    if parent is None:
        return trace.INVALID_SPAN_CONTEXT
    return SpanContext(
        parent.trace_id,
        parent.span_id,
        is_remote=remote,
        trace_flags=TraceFlags(parent.flags & 0xFF),
        trace_state=TraceState(list(parent.state)),
    )


def _propagation_headers(source: trace.Span | TraceParent) -> list[tuple[str, bytes]]:
    context = (
        source.get_span_context() if isinstance(source, trace.Span) else _span_context(source, remote=False)
    )
    if not context.is_valid:
        return []
    value = format_traceparent(context.trace_id, context.span_id, int(context.trace_flags))
    headers = [("traceparent", value.encode())]
    if context.trace_state:
        headers.append(("tracestate", context.trace_state.to_header().encode()))
    return headers


def _replace_header(
    headers: list[Header], old: list[tuple[str, bytes]], new: list[tuple[str, bytes]]
) -> None:
    """The command span's traceparent becomes the publish span's (copied originals stay as they were)."""
    if old and new and old[0] in headers:
        headers[len(headers) - 1 - headers[::-1].index(old[0])] = new[0]


def _traced(span: trace.Span) -> TraceParent:
    context = span.get_span_context()
    state = tuple(context.trace_state.items())
    return TraceParent(context.trace_id, context.span_id, int(context.trace_flags), state=state)


def _record_attributes(
    record: Incoming, parent: TraceParent | None, ignored: tuple[str, ...]
) -> dict[str, str | int | list[str]]:
    attributes: dict[str, str | int | list[str]] = {
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": record.topic,
        "messaging.destination.partition.id": str(record.partition),
        "messaging.kafka.offset": record.offset,
        "bridge.trace_context.source": parent.source if parent else "none",
    }
    if ignored:
        attributes["bridge.trace_context.ignored"] = list(ignored)
    return attributes


def _attempt_attributes(
    runtime: CallTarget, request: CallRequest, attempts: _Attempts
) -> dict[str, str | int]:
    base = urlsplit(runtime.base_url)
    attributes: dict[str, str | int] = {
        "http.request.method": request.method,
        "url.template": request.route,
        "server.address": base.hostname or "",
        "bridge.target": runtime.name,
        "bridge.attempt": attempts.count + 1,
    }
    if attempts.count:
        attributes["http.request.resend_count"] = attempts.count
    if attempts.reason:
        attributes["bridge.retry.reason"] = attempts.reason
    return attributes


def _describe(span: trace.Span, outgoing: Outgoing) -> None:
    """The command's result on its span; labels are the bounded metric labels, not raw input."""
    if outgoing.outcome is not None:
        data = outgoing.outcome
        target, provider, operation, status = outgoing.labels
        span.set_attributes(
            {
                "bridge.command.id": data.command_id,
                "bridge.target": target,
                "bridge.provider": provider,
                "bridge.operation": operation,
                "bridge.status": status,
                "bridge.attempts": data.attempts,
            }
        )
        if data.error is not None:
            span.set_attribute("error.type", data.error.kind.value)
        if data.status is Status.ERROR:
            span.set_status(StatusCode.ERROR, data.error.kind.value if data.error else "error")
    elif outgoing.dead_letter is not None:
        reason = outgoing.dead_letter.reason
        span.set_attributes({"bridge.status": "dead_letter", "bridge.dead_letter.reason": reason.value})
        if reason is DeadLetterReason.INTERNAL_ERROR:
            span.set_status(StatusCode.ERROR, reason.value)
