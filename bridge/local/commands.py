"""Shell helpers: ``bridge send``, ``bridge sandbox``, and the event lines ``bridge tail`` prints."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import ValidationError

from bridge.config.settings import Settings
from bridge.kafka.clients import stop_client
from bridge.kafka.options import client_options
from bridge.messages.commands import CommandFamily
from bridge.messages.parsing import DeadLetter, unwrap_cloudevent
from bridge.providers.catalog import CATALOG
from bridge.providers.parsing import describe_command_errors, parse_any


def read_command_text(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read()
    if source.startswith("@"):
        return Path(source[1:]).read_bytes()
    return source.encode()


def command_topic(settings: Settings, doc: dict[str, Any]) -> str:
    data = doc.get("data", {}) if "specversion" in doc else doc
    family = CATALOG.family_of(data["operation"])
    topics = settings.topics
    return topics.run_commands if family is CommandFamily.RUN else topics.control_commands


async def started(client: AIOKafkaProducer | AIOKafkaConsumer, settings: Settings, command: str) -> bool:
    """Start a one-shot client; when the broker cannot be reached say so in one line, no traceback."""
    try:
        await client.start()
    except KafkaError as exc:
        with contextlib.suppress(KafkaError, OSError):
            await stop_client(client)
        where = settings.kafka.bootstrap_servers
        print(
            f"bridge {command}: cannot reach the Kafka broker at {where} ({type(exc).__name__})",
            file=sys.stderr,
        )
        return False
    except BaseException:  # a timeout or a cancel half-way: the client is closed all the same
        with contextlib.suppress(KafkaError, OSError):
            await stop_client(client)
        raise
    return True


async def publish_commands(settings: Settings, docs: list[tuple[bytes | None, dict[str, Any]]]) -> bool:
    # a one-shot send gains nothing from an idempotent producer, and some brokers (Tansu) lack it
    producer = AIOKafkaProducer(**client_options(settings.kafka), enable_idempotence=False)
    if not await started(producer, settings, "send"):
        return False
    try:
        for key, doc in docs:
            await producer.send_and_wait(command_topic(settings, doc), orjson.dumps(doc), key=key)
    finally:
        await stop_client(producer)
    return True


async def send_command(settings: Settings, source: str, key: str | None) -> int:
    try:
        doc = orjson.loads(read_command_text(source))
        if not isinstance(doc, dict):
            raise ValueError(f"a command is a JSON object, not {type(doc).__name__}")
        data = unwrap_cloudevent(doc) if "specversion" in doc else doc
        if isinstance(data, DeadLetter):
            raise ValueError(data.detail)
        command = parse_any(data)
    except OSError as exc:
        print(f"bridge send: cannot read {source[1:]}: {exc.strerror}", file=sys.stderr)
        return 2
    except (orjson.JSONDecodeError, KeyError, AttributeError, ValueError) as exc:
        detail = describe_command_errors(exc) if isinstance(exc, ValidationError) else str(exc)
        print(f"bridge send: not a valid command: {detail}", file=sys.stderr)
        return 2
    if not await publish_commands(settings, [((key or command.id).encode(), doc)]):
        return 1
    print(f"sent {command.operation} {command.id} to {command_topic(settings, doc)}")
    return 0


async def send_raw(settings: Settings, source: str, key: str | None, topic: str | None) -> int:
    """``bridge send --raw``: publish bytes unchecked (the bridge dead-letters what it cannot read)."""
    try:
        value = read_command_text(source)
    except OSError as exc:
        print(f"bridge send: cannot read {source[1:]}: {exc.strerror}", file=sys.stderr)
        return 2
    destination = topic or settings.topics.run_commands
    producer = AIOKafkaProducer(**client_options(settings.kafka), enable_idempotence=False)
    if not await started(producer, settings, "send"):
        return 1
    try:
        sent = await producer.send_and_wait(destination, value, key=key.encode() if key else None)
    except KafkaError as exc:
        print(f"bridge send: {destination} refused the record: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        await stop_client(producer)
    print(
        f"sent {len(value)} raw byte(s) to {destination} (partition {sent.partition}, offset {sent.offset})"
    )
    return 0


def _head(data: dict[str, Any], width: int) -> list[str]:
    """Status, operation, command id and the provider reference: how every line starts."""
    parts = [f"{data.get('status', '?'):{width}}", f"{data.get('operation') or '-':22}"]
    parts.append(data.get("command_id", "?"))
    return parts + ([f"ref={data['provider_ref']}"] if data.get("provider_ref") else [])


def format_lifecycle(data: dict[str, Any]) -> str:
    parts = [*_head(data, 9), f"provider={data.get('provider_status')}"]
    if data.get("waiting_for"):
        parts.append(f"waiting_for={data['waiting_for']}")
    parts.append(f"after={data.get('tracked_for_s', 0):.1f}s")
    if data.get("detail"):
        parts.append(f"[{data['detail']}]")
    return "  ".join(str(p) for p in parts)


def format_event(event: dict[str, Any]) -> str:
    data = event.get("data", {})
    if str(event.get("type", "")).startswith("workflow.lifecycle."):
        return format_lifecycle(data)
    parts = _head(data, 8)
    if data.get("http_status"):
        parts.append(f"http={data['http_status']}")
    parts.append(f"attempts={data.get('attempts', 0)}")
    if isinstance(event.get("traceparent"), str):
        parts.append(f"trace={event['traceparent'][3:35]}")
    if data.get("error"):
        parts.append(f"[{data['error']['kind']}] {data['error']['message']}")
    return "  ".join(str(p) for p in parts)


def format_dead_letter(value: bytes | None, headers: list[tuple[str, bytes]]) -> str:
    meta = {k: v.decode(errors="replace") for k, v in headers if k.startswith("dlq.")}
    preview = (value or b"")[:60].decode(errors="replace")
    line = f"{'DLQ':8}  {meta.get('dlq.reason', '?'):22}  {meta.get('dlq.detail', '')}  value={preview!r}"
    traceparents = [v for k, v in headers if k == "traceparent"]  # the bridge's is the last one
    return line + (f"  trace={traceparents[-1][3:35].decode(errors='replace')}" if traceparents else "")


def render_record(rec: Any, dlq_topic: str, *, raw: bool = False) -> str:
    """One line for an outcome event or a dead letter (``raw``: the event's JSON as published)."""
    if rec.topic == dlq_topic:
        return format_dead_letter(rec.value, list(rec.headers or ()))
    return rec.value.decode() if raw else format_event(orjson.loads(rec.value))


async def serve_sandbox(host: str, port: int) -> int:
    from bridge.sandbox import start_sandbox

    sandbox = await start_sandbox(host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    for sig in stop_signals:  # also where SIGINT was ignored at start (a background job of a shell)
        loop.add_signal_handler(sig, stop.set)
    print(f"sandbox providers listening on {sandbox.url} (Ctrl-C to stop)", flush=True)
    try:
        await stop.wait()
    finally:
        for sig in stop_signals:
            loop.remove_signal_handler(sig)
        await sandbox.stop()
    return 0
