"""What a record carries besides the command: Schema Registry framing and Kafka headers. Pure.

Confluent's serializers put a magic byte ``0`` and a 4-byte big-endian schema id before the JSON.
No JSON text can start with a zero byte, so the frame is recognised without a registry.

Header values are untrusted bytes: they may be absent (null), empty, repeated, not UTF-8 or as large
as the broker allows. Nothing here copies one unbounded into a log line or an outcome.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MAGIC_BYTE = 0
FRAME_BYTES = 5
Header = tuple[str, bytes | None]


def split_frame(value: bytes) -> tuple[int | None, bytes] | None:
    """(schema id, JSON payload); ``(None, value)`` when unframed; None for a frame cut short."""
    if value[:1] != bytes([MAGIC_BYTE]):
        return None, value
    if len(value) < FRAME_BYTES:
        return None
    return int.from_bytes(value[1:FRAME_BYTES], "big"), value[FRAME_BYTES:]


def schema_id_of(value: bytes | None) -> int | None:
    """The Schema Registry id a record value was framed with, if any."""
    framed = split_frame(value) if value else None
    return framed[0] if framed else None


def header_size(headers: Iterable[Header]) -> int:
    """Bytes the headers take in a produce request (names and values, without framing)."""
    return sum(len(name.encode("utf-8", "replace")) + len(value or b"") for name, value in headers)


def copyable_headers(headers: Sequence[Header], budget: int) -> tuple[list[Header], int]:
    """The headers to copy into a dead letter, and the bytes omitted (all or nothing, to keep them whole)."""
    size = header_size(headers)
    if size <= budget:
        return list(headers), 0
    return [], size


def header_text(value: bytes | None) -> str | None:
    """A header value as text, or None when it is not UTF-8."""
    try:
        return (value or b"").decode("utf-8")
    except UnicodeDecodeError:
        return None
