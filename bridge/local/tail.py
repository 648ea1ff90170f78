"""``bridge tail``: the outcome, lifecycle and dead-letter topics as one stream, in time order.

Every record becomes a :class:`Row` (pure decoding, no I/O); rows are printed in record-timestamp
order across topics and partitions:

- ``--from-beginning``: the history up to the end offsets seen at start is read whole, sorted,
  then printed; after that, as below.
- live records are held for :data:`HOLD_S` after they arrive and printed sorted, so records that
  arrive within that window of each other come out in timestamp order.

Reads with ``isolation_level="read_committed"``: an aborted transaction's records never show.
``--count N`` prints exactly N rows (those the filters let through) and exits; ``--json`` prints
every row as one JSON object per line, dead letters included.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from argparse import Namespace
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.config.settings import Settings
from bridge.kafka.clients import stop_client
from bridge.kafka.options import client_options
from bridge.local.commands import format_dead_letter, format_event, started

HOLD_S = 0.5
DEAD_LETTER = "dead_letter"  # the status a dead letter answers to in --status
UNDECODABLE = "undecodable"  # a record on an event topic that is not a JSON object


@dataclass(frozen=True, order=True)
class Row:
    """One record, decoded; rows sort by record time, then topic, partition and offset."""

    timestamp_ms: int
    topic: str
    partition: int
    offset: int
    status: str = field(compare=False)
    command_id: str | None = field(compare=False)
    target: str | None = field(compare=False)
    text: str = field(compare=False)  # the human line, without the time
    doc: dict[str, Any] = field(compare=False)  # the JSON line

    @property
    def time(self) -> str:
        return datetime.fromtimestamp(self.timestamp_ms / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]

    def render(self, *, as_json: bool) -> str:
        return orjson.dumps(self.doc).decode() if as_json else f"{self.time}  {self.text}"


@dataclass(frozen=True)
class Filters:
    """``--id``, ``--target``, ``--status``: a row passes when it matches one value of each given filter."""

    ids: frozenset[str] = frozenset()
    targets: frozenset[str] = frozenset()
    statuses: frozenset[str] = frozenset()

    @classmethod
    def of(cls, args: Namespace) -> Filters:
        def values(given: Sequence[str] | None) -> frozenset[str]:
            return frozenset(v.strip() for item in given or () for v in item.split(",") if v.strip())

        return cls(values(args.id), values(args.target), values(args.status))

    def accepts(self, row: Row) -> bool:
        return (
            (not self.ids or row.command_id in self.ids)
            and (not self.targets or row.target in self.targets)
            and (not self.statuses or row.status in self.statuses)
        )


def decode(rec: Any, dead_letter_topic: str) -> Row:
    """A consumer record as a row: an event, a dead letter, or an undecodable record (never raises)."""
    where = (rec.timestamp, rec.topic, rec.partition, rec.offset)
    if rec.topic == dead_letter_topic:
        return _dead_letter(rec, where)
    try:
        event = orjson.loads(rec.value)
    except (orjson.JSONDecodeError, TypeError):
        event = None
    if not isinstance(event, dict) or not isinstance(event.get("data"), dict):
        doc = {"type": f"bridge.{UNDECODABLE}", **_place(rec), **_value(rec.value)}
        return Row(*where, UNDECODABLE, None, None, f"{UNDECODABLE.upper()}  {_preview(rec.value)}", doc)
    data = event["data"]
    return Row(
        *where,
        str(data.get("status", "?")),
        data.get("command_id"),
        data.get("target"),
        format_event(event),
        event,
    )


def _dead_letter(rec: Any, where: tuple[int, str, int, int]) -> Row:
    headers = list(rec.headers or ())
    meta = {k: v.decode("utf-8", errors="replace") for k, v in headers if k.startswith("dlq.")}
    try:  # an invalid command may still say who it is
        original = orjson.loads(rec.value) if rec.value else None
    except orjson.JSONDecodeError:
        original = None
    named = original.get("data", original) if isinstance(original, dict) else {}
    named = named if isinstance(named, dict) else {}
    command_id = _text(original.get("id") if isinstance(original, dict) else None)
    doc = {
        "type": f"bridge.{DEAD_LETTER}",
        **_place(rec),
        "key": rec.key.decode("utf-8", errors="replace") if rec.key is not None else None,
        "reason": meta.get("dlq.reason"),
        "detail": meta.get("dlq.detail"),
        "headers": meta,
        **_value(rec.value),
    }
    text = format_dead_letter(rec.value, headers)
    return Row(*where, DEAD_LETTER, command_id, _text(named.get("target")), text, doc)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _place(rec: Any) -> dict[str, Any]:
    time = datetime.fromtimestamp(rec.timestamp / 1000, UTC).isoformat(timespec="milliseconds")
    return {"time": time, "topic": rec.topic, "partition": rec.partition, "offset": rec.offset}


def _value(value: bytes | None) -> dict[str, Any]:
    """The record value as text when it is UTF-8, else base64."""
    if value is None:
        return {"value": None}
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode()}


def _preview(value: bytes | None) -> str:
    return repr((value or b"")[:60].decode("utf-8", errors="replace"))


# -- reading --------------------------------------------------------------------------------------


class Printer:
    """Prints rows that pass the filters until ``limit`` rows were printed."""

    def __init__(self, filters: Filters, limit: int | None, as_json: bool) -> None:
        self.filters, self.limit, self.as_json = filters, limit, as_json
        self.printed = 0

    @property
    def done(self) -> bool:
        return self.limit is not None and self.printed >= self.limit

    def emit(self, rows: Iterable[Row]) -> None:
        for row in sorted(rows):
            if self.done:
                return
            if self.filters.accepts(row):
                print(row.render(as_json=self.as_json), flush=True)
                self.printed += 1


async def tail_events(settings: Settings, args: Namespace) -> int:
    """0: done (count reached, idle timeout, or interrupted); 1: the timeout came before --count rows."""
    t = settings.topics
    consumer = AIOKafkaConsumer(
        *t.results,
        t.lifecycle,
        **client_options(settings.kafka),
        auto_offset_reset="earliest" if args.from_beginning else "latest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    if not await started(consumer, settings, "tail"):
        return 1
    printer = Printer(Filters.of(args), args.count, args.json)
    try:
        if args.from_beginning:
            stall_s = (
                None if args.timeout is None else max(args.timeout, settings.kafka.request_timeout_ms / 1000)
            )
            printer.emit(await _history(consumer, t.dead_letter, args.timeout, stall_s))
        if not printer.done:
            await _live(consumer, t.dead_letter, printer, args.timeout)
    finally:
        await stop_client(consumer)
    if args.count is not None and not printer.done:
        print(f"bridge tail: {printer.printed} of {args.count} event(s) before the timeout", file=sys.stderr)
        return 1
    return 0


async def _assignment(
    consumer: AIOKafkaConsumer, rows: list[Row], dlq: str, idle_s: float | None
) -> set[TopicPartition]:
    """Wait until the consumer has its partitions (records fetched meanwhile go to ``rows``).

    Empty when ``idle_s`` passes first (the topics do not exist and the broker does not create them).
    """
    loop = asyncio.get_running_loop()
    began = loop.time()
    while not consumer.assignment() and (idle_s is None or loop.time() - began < idle_s):
        rows += [decode(r, dlq) for recs in (await consumer.getmany(timeout_ms=100)).values() for r in recs]
    return set(consumer.assignment())


async def _history(
    consumer: AIOKafkaConsumer, dlq: str, idle_s: float | None, stall_s: float | None
) -> list[Row]:
    """Every record up to the end offsets as they were at start (sorted by the caller). Those records
    exist, so ``--timeout`` does not cut their reading short: only a broker that answers no fetch for
    ``stall_s`` (a request timeout at least) does."""
    rows: list[Row] = []
    partitions = await _assignment(consumer, rows, dlq, idle_s)
    if not partitions:
        return rows
    end = await consumer.end_offsets(list(partitions))
    loop = asyncio.get_running_loop()
    last = loop.time()
    while pending := [tp for tp in partitions if await consumer.position(tp) < end[tp]]:
        batch = await consumer.getmany(*pending, timeout_ms=200)
        if batch:
            last = loop.time()
        rows += [decode(r, dlq) for recs in batch.values() for r in recs]
        if stall_s is not None and loop.time() - last > stall_s:
            break  # the broker stopped answering: print what there is
    return rows


async def _live(consumer: AIOKafkaConsumer, dlq: str, printer: Printer, idle_s: float | None) -> None:
    loop = asyncio.get_running_loop()
    held: list[tuple[float, Row]] = []
    last = loop.time()
    while not printer.done:
        batch = await consumer.getmany(timeout_ms=int(HOLD_S * 1000 / 2))
        now = loop.time()
        arrived = [decode(r, dlq) for recs in batch.values() for r in recs]
        if arrived:
            last = now
        held += [(now, row) for row in arrived]
        printer.emit(row for at, row in held if now - at >= HOLD_S)
        held = [(at, row) for at, row in held if now - at < HOLD_S]
        if idle_s is not None and not held and now - last >= idle_s:
            return
