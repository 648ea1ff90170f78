"""W3C Trace Context read from a command record. Pure: no I/O, no OpenTelemetry import.

Where a command's trace context may travel, in the order they are tried (the first valid one wins):

1. the Kafka headers ``traceparent`` / ``tracestate`` (the latest hop);
2. the CloudEvents binary-mode headers ``ce_traceparent`` / ``ce_tracestate``;
3. the ``traceparent`` / ``tracestate`` attributes of a structured-mode CloudEvents envelope
   (the distributed-tracing extension).

A header that is repeated counts by its last occurrence (as Kafka clients' ``lastHeader``). A
malformed, non-ASCII or non-UTF-8 value is ignored: the command then starts a new trace. Nothing
here raises on any input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[ -~]*)?")
_KEY = r"(?:[a-z][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13})"
_VALUE = r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]"
_MEMBER = re.compile(rf"({_KEY})=({_VALUE})")
_MAX_TRACESTATE_MEMBERS = 32
_MAX_TRACESTATE_CHARS = 512
_OWS = " \t"
HEADER_SOURCES = (("traceparent", "tracestate", "kafka"), ("ce_traceparent", "ce_tracestate", "ce_binary"))
TraceState = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid remote parent: ids as integers, ``flags`` the W3C trace-flags byte."""

    trace_id: int
    span_id: int
    flags: int
    state: TraceState = ()
    source: str = ""
    """Where it was found: ``kafka``, ``ce_binary`` or ``ce_structured``."""

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 0x01)


@dataclass(frozen=True, slots=True)
class Extracted:
    """The parent to continue (None: start a new trace) and the sources that held an unusable value."""

    parent: TraceParent | None
    ignored: tuple[str, ...] = ()


def parse_traceparent(text: str) -> tuple[int, int, int] | None:
    """(trace id, span id, flags) of a W3C ``traceparent`` value, or None when it is not valid."""
    match = _TRACEPARENT.fullmatch(text.strip(_OWS))
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == "ff" or (version == "00" and rest is not None):
        return None
    trace_id, span_id = int(trace_hex, 16), int(span_hex, 16)
    if trace_id == 0 or span_id == 0:
        return None
    return trace_id, span_id, int(flags_hex, 16)


def parse_tracestate(text: str) -> TraceState:
    """The list members of a ``tracestate`` value; () when any member is invalid (W3C: discard it all)."""
    if len(text) > _MAX_TRACESTATE_CHARS:
        return ()
    members = [part.strip(_OWS) for part in text.split(",")]
    pairs: list[tuple[str, str]] = []
    for member in filter(None, members):
        match = _MEMBER.fullmatch(member)
        if match is None:
            return ()
        pairs.append((match.group(1), match.group(2)))
    keys = {key for key, _ in pairs}
    if len(pairs) > _MAX_TRACESTATE_MEMBERS or len(keys) != len(pairs):
        return ()
    return tuple(pairs)


def format_traceparent(trace_id: int, span_id: int, flags: int) -> str:
    return f"00-{trace_id:032x}-{span_id:016x}-{flags:02x}"


def format_tracestate(state: TraceState) -> str:
    return ",".join(f"{key}={value}" for key, value in state)


def extract(headers: Iterable[tuple[str, bytes | None]], value: bytes | None, max_bytes: int) -> Extracted:
    """The trace context of one command record (see the module docstring for the order)."""
    found = _last_values(headers)
    ignored: list[str] = []
    candidates = [(found.get(parent), found.get(state), source) for parent, state, source in HEADER_SOURCES]
    candidates.append((*_structured(value, max_bytes), "ce_structured"))
    for parent, state, source in candidates:
        if parent is None:
            continue
        chosen = _parent_of(parent, state, source)
        if chosen is not None:
            return Extracted(chosen, tuple(ignored))
        ignored.append(source)
    return Extracted(None, tuple(ignored))


def _last_values(headers: Iterable[tuple[str, bytes | None]]) -> dict[str, bytes | str | None]:
    wanted = {name for parent, state, _ in HEADER_SOURCES for name in (parent, state)}
    return {name: value for name, value in headers if name in wanted}


def _structured(value: bytes | None, max_bytes: int) -> tuple[Any, Any]:
    """``traceparent`` / ``tracestate`` of a structured CloudEvent; the value is parsed only if it has one."""
    if not value or len(value) > max_bytes or b'"traceparent"' not in value:
        return None, None
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None, None
    if not isinstance(doc, dict) or "specversion" not in doc:
        return None, None
    return doc.get("traceparent"), doc.get("tracestate")


def _text(raw: Any) -> str | None:
    if isinstance(raw, str):
        return raw if raw.isascii() else None
    if isinstance(raw, bytes):
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            return None
    return None


def _parent_of(raw_parent: Any, raw_state: Any, source: str) -> TraceParent | None:
    text = _text(raw_parent)
    ids = parse_traceparent(text) if text is not None else None
    if ids is None:
        return None
    state_text = _text(raw_state)
    state = parse_tracestate(state_text) if state_text else ()
    return TraceParent(*ids, state=state, source=source)
