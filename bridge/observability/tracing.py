"""Tracing hooks: where the bridge opens spans, and what it writes back onto what it publishes.

The hooks are decorators on the four places that matter (a command, a provider attempt, a token
fetch, a publish) plus :func:`cloudevent_extensions` for the outcome envelope. With tracing off (the
default) each hook is one ``is None`` test and a plain call: OpenTelemetry is never imported. Off,
the caller's trace context still passes through (W3C Trace Context: a participant that records no
span forwards it unchanged): a command that carries a valid ``traceparent`` (see
:mod:`bridge.messages.trace_context`) gets it, with its ``tracestate``, on its outcome's
headers and envelope and on its lifecycle events.
:func:`started` turns tracing on for the life of a bridge; the spans themselves are
:mod:`bridge.observability.otel`.

Example::

    async with tracing.started(settings):
        await engine.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from bridge.messages.trace_context import TraceParent, extract, format_traceparent, format_tracestate
from bridge.observability.tracer import AttemptResult, CallRequest, CallTarget, Run, Tracer

if TYPE_CHECKING:
    import aiohttp

    from bridge.config.settings import Settings
    from bridge.http import FormEndpoint
    from bridge.messages.commands import Command
    from bridge.messages.records import Incoming, Outgoing

log = logging.getLogger("bridge.tracing")
S = TypeVar("S")
T = TypeVar("T")
X = TypeVar("X")
P = ParamSpec("P")
Process = Callable[[S, "Incoming"], Coroutine[Any, Any, "Outgoing"]]
Publish = Callable[[S, "Outgoing"], Coroutine[Any, Any, None]]
E = TypeVar("E", bound="FormEndpoint")
TokenFetch = Callable[["aiohttp.ClientSession", E, "Mapping[str, str]"], Coroutine[Any, Any, bytes]]


R = TypeVar("R", bound=CallTarget)
Q = TypeVar("Q", bound=CallRequest)
A = TypeVar("A", bound=AttemptResult)
Attempt = Callable[Concatenate[S, R, "Command", Q, P], Coroutine[Any, Any, A]]
_NO_EXTENSIONS: Mapping[str, str] = {}


_active: Tracer | None = None
_passed: contextvars.ContextVar[TraceParent | None] = contextvars.ContextVar("bridge_passed", default=None)
_max_bytes = 1_048_576  # the largest value searched for a structured traceparent (engine.max_message_bytes)
_HEADERS = frozenset({"traceparent", "ce_traceparent"})


def install(tracer: Tracer | None) -> None:
    """Route the hooks to ``tracer`` (None: tracing off). One tracer per process."""
    global _active  # like OpenTelemetry's global provider: decorators have no other handle
    _active = tracer


def active() -> Tracer | None:
    return _active


@contextlib.asynccontextmanager
async def started(settings: Settings) -> AsyncIterator[None]:
    """Tracing on for the block when ``observability.tracing.enabled``; spans are flushed on exit."""
    global _max_bytes
    _max_bytes = settings.engine.max_message_bytes
    config = settings.observability.tracing
    if not config.enabled:
        yield
        return
    # here, not at the top: the SDK is loaded only when tracing is on
    from bridge.observability import otel as tracing_otel

    running = tracing_otel.start(config, settings.engine.max_message_bytes)
    if running is None:
        yield
        return
    install(running.tracer)
    try:
        yield
    finally:
        install(None)
        await asyncio.to_thread(running.shutdown)


def cloudevent_extensions() -> Mapping[str, str]:
    """The distributed-tracing extension attributes for the outcome being built: the command span's
    when tracing is on, else the caller's context passed through (empty when it sent none)."""
    if _active is not None:
        return _active.cloudevent_extensions()
    parent = _passed.get()
    return _NO_EXTENSIONS if parent is None else dict(_context_headers(parent))


def traced_command(fn: Process[S]) -> Process[S]:
    @functools.wraps(fn)
    def wrapper(self: S, record: Incoming) -> Coroutine[Any, Any, Outgoing]:
        if _active is not None:
            return _active.process(lambda: fn(self, record), record)
        if not _may_carry(record):
            return fn(self, record)  # the hot path without a caller's trace context: no extra await
        return _passing_through(lambda: fn(self, record), record)

    return wrapper


def _may_carry(record: Incoming) -> bool:
    value = record.value
    return any(name in _HEADERS for name, _ in record.headers) or (
        value is not None and b'"traceparent"' in value
    )


async def _passing_through(run: Run[Outgoing], record: Incoming) -> Outgoing:
    """Tracing off: the caller's context goes onto the outcome, its envelope and its lifecycle."""
    parent = extract(record.headers, record.value, _max_bytes).parent
    if parent is None:
        return await run()
    token = _passed.set(parent)
    try:
        outgoing = await run()
    finally:
        _passed.reset(token)
    if outgoing.outcome is None:
        return outgoing  # a dead letter or a parked record keeps the command's own headers
    headers = [(name, value.encode()) for name, value in _context_headers(parent)]
    return replace(outgoing, headers=[*outgoing.headers, *headers])


def _context_headers(parent: TraceParent) -> list[tuple[str, str]]:
    found = [("traceparent", format_traceparent(parent.trace_id, parent.span_id, parent.flags))]
    if parent.state:
        found.append(("tracestate", format_tracestate(parent.state)))
    return found


def _method_hook(
    fn: Callable[[S, X], Coroutine[Any, Any, T]],
    pick: Callable[[Tracer], Callable[[Run[T], X], Coroutine[Any, Any, T]]],
) -> Callable[[S, X], Coroutine[Any, Any, T]]:
    """Wrap ``fn(self, item)`` in the active tracer's hook chosen by ``pick``."""

    @functools.wraps(fn)
    def wrapper(self: S, item: X) -> Coroutine[Any, Any, T]:
        if _active is None:
            return fn(self, item)
        return pick(_active)(lambda: fn(self, item), item)

    return wrapper


def traced_attempt(fn: Attempt[S, R, Q, P, A]) -> Attempt[S, R, Q, P, A]:
    @functools.wraps(fn)
    def wrapper(
        self: S, runtime: R, command: Command, request: Q, /, *a: P.args, **k: P.kwargs
    ) -> Coroutine[Any, Any, A]:
        if _active is None:
            return fn(self, runtime, command, request, *a, **k)
        return _active.attempt(lambda: fn(self, runtime, command, request, *a, **k), runtime, request)

    return wrapper


def traced_token_fetch(fn: TokenFetch[E]) -> TokenFetch[E]:
    @functools.wraps(fn)
    def wrapper(
        session: aiohttp.ClientSession, endpoint: E, form: Mapping[str, str]
    ) -> Coroutine[Any, Any, bytes]:
        if _active is None:
            return fn(session, endpoint, form)
        return _active.token_fetch(lambda: fn(session, endpoint, form), endpoint)

    return wrapper


def traced_publish(fn: Publish[S]) -> Publish[S]:
    return _method_hook(fn, lambda tracer: tracer.publish)
