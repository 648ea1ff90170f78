"""``bridge local``'s screen: it reads the command, outcome, lifecycle and dead-letter topics from
the beginning and prints one line per event (formatted by :mod:`bridge.local.screen`), in time order
within each fetch, while keeping the tally the summaries are made of.

Example::

    watcher = Watcher(settings, Console(), prefix="demo-101010-", expected=16)
    task = asyncio.create_task(watcher.run())
    await watcher.settled.wait()          # every example answered and every queued run ended
    print("\\n".join(watcher.tally.summary()))
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from typing import Any, TextIO

import orjson
from aiokafka import AIOKafkaConsumer

from bridge.config.settings import Settings
from bridge.kafka.clients import started
from bridge.local.otlp import ReceivedSpan
from bridge.local.screen import (
    Tally,
    command_fields,
    dead_letter_line,
    lifecycle_line,
    outcome_line,
    repeat_line,
    short_id,
    trace_line,
)

TRACE_QUIET_S = 0.5
"""A trace is printed once no span of it arrived for this long."""


class Console:
    """Lines to a stream (stdout). Once the terminal is gone (EIO after a hang-up, EPIPE) it stops
    writing rather than failing the shutdown that follows."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream or sys.stdout
        self.broken = False

    def print(self, *lines: str) -> None:
        if self.broken:
            return
        try:
            self._stream.write("".join(f"{text}\n" for text in lines))
            self._stream.flush()
        except OSError:
            self.broken = True
            # Python flushes stdout once more at exit: aim it at /dev/null so that cannot fail either
            with contextlib.suppress(OSError, ValueError, AttributeError):
                os.dup2(os.open(os.devnull, os.O_WRONLY), self._stream.fileno())


class Watcher:
    def __init__(self, settings: Settings, console: Console, prefix: str = "", expected: int = 0) -> None:
        self._settings = settings
        self._console = console
        self.prefix = prefix
        self.expected = expected
        """How many command records make the examples (0: nothing to wait for, never settles)."""
        self.tally = Tally()
        self.settled = asyncio.Event()
        self._commands = set(settings.topics.routes)
        self._dead_letter = settings.topics.dead_letter
        self._lifecycle = settings.topics.lifecycle
        self._spans: dict[str, list[ReceivedSpan]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    async def run(self) -> None:
        t = self._settings.topics
        consumer = AIOKafkaConsumer(
            *t.routes,
            *t.results,
            t.lifecycle,
            bootstrap_servers=self._settings.kafka.bootstrap_servers,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        async with started(consumer):
            while True:
                batch = await consumer.getmany(timeout_ms=500)
                records = sorted((r for rs in batch.values() for r in rs), key=lambda r: r.timestamp)
                lines = [text for rec in records if (text := self.see(rec)) is not None]
                if lines:
                    self._console.print(*lines)
                if self.expected and self.tally.settled(self.expected):
                    self.settled.set()

    def see(self, rec: Any) -> str | None:
        """Count one record; the line to print for it (None: a command seen the first time)."""
        source = (rec.topic, rec.partition, rec.offset)
        if rec.topic in self._commands:
            command_id, operation = command_fields(rec.value)
            if self.tally.command(source, command_id) and command_id is not None:
                return repeat_line(command_id, operation, self.prefix)
            return None
        if rec.topic == self._dead_letter:
            headers = {k: v.decode(errors="replace") for k, v in rec.headers or () if k.startswith("dlq.")}
            partition, offset = _ints(headers)
            topic = headers.get("dlq.source.topic", "")
            self.tally.dead_letter((topic, partition, offset) if partition >= 0 else None)
            return dead_letter_line(rec.key, headers, self.prefix)
        data = orjson.loads(rec.value).get("data", {})
        if rec.topic == self._lifecycle:
            self.tally.lifecycle(data)
            return lifecycle_line(data, self.prefix)
        self.tally.outcome(data)
        return outcome_line(data, self.prefix)

    def show_traces(self, spans: list[ReceivedSpan]) -> None:
        """``--traces``: one line per trace, once its spans stop arriving (a trace's spans can come in
        two export batches: the publish ends after the command span), named by the command it read."""
        loop = asyncio.get_running_loop()
        for span in spans:
            self._spans.setdefault(span.trace_id, []).append(span)
            if timer := self._timers.pop(span.trace_id, None):
                timer.cancel()
            self._timers[span.trace_id] = loop.call_later(TRACE_QUIET_S, self._flush_trace, span.trace_id)

    def _flush_trace(self, trace_id: str) -> None:
        self._timers.pop(trace_id, None)
        self._console.print(self._trace_line(trace_id, self._spans.pop(trace_id, [])))

    def _trace_line(self, trace_id: str, spans: list[ReceivedSpan]) -> str:
        name = "?"
        for span in spans:
            attrs = span.attributes
            if "messaging.kafka.offset" in attrs and span.name.startswith("process "):
                partition = int(attrs.get("messaging.destination.partition.id", -1))
                source = (
                    str(attrs.get("messaging.destination.name")),
                    partition,
                    int(attrs["messaging.kafka.offset"]),
                )
                name = self.tally.commands.get(source) or "(not a command)"
        return trace_line(short_id(name, self.prefix), trace_id, [s.name for s in spans])


def _ints(headers: dict[str, str]) -> tuple[int, int]:
    try:
        return int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"])
    except (KeyError, ValueError):
        return -1, -1
