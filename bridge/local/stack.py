"""``bridge local``: broker, topics, sandbox and bridge in one process, plus the example commands."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from argparse import Namespace
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bridge.app import Bridge
from bridge.config.loading import parse_settings
from bridge.config.settings import Settings, TopicSettings
from bridge.kafka.clients import started
from bridge.local import examples
from bridge.local.broker import create_topics, start_broker
from bridge.local.commands import command_topic, render_record
from bridge.local.otlp import OtlpReceiver, ReceivedSpan
from bridge.sandbox import start_sandbox
from bridge.sandbox.catalog import SANDBOXES
from bridge.waits import within

# Credentials the sandbox accepts, handed to the bridge the way production does: environment variables.
SANDBOX_ENV = {name: value for sandbox in SANDBOXES for name, value in sandbox.local.env.items()}


def sandbox_targets(sandbox_url: str) -> dict[str, Any]:
    """Target configuration for every sandbox provider (and the extra targets a sandbox declares)."""
    common = {
        "allow_http": True,
        "timeouts": {"connect_s": 2, "total_s": 10},
        "retry": {"max_attempts": 3, "base_backoff_s": 0.05, "max_backoff_s": 0.5, "budget_s": 10},
    }
    return {
        name: {**common, **target}
        for sandbox in SANDBOXES
        for name, target in sandbox.local.targets(sandbox_url).items()
    }


def local_config(
    bootstrap: str,
    sandbox_url: str,
    *,
    metrics_port: int | None = 0,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The raw (YAML-shaped) configuration of a bridge talking to the embedded broker and sandbox."""
    raw: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "enable_idempotence": False,
            "group_id": "workflow-bridge-local",
            "session_timeout_ms": 4000,
            "heartbeat_interval_ms": 800,
            "fetch_max_wait_ms": 10,
            "linger_ms": 1,
        },
        "engine": {"commit_interval_s": 0.2, "drain_grace_s": 5},
        "observability": {"host": "127.0.0.1", "port": metrics_port},
        "targets": sandbox_targets(sandbox_url),
    }
    return deep_merge(raw, overrides or {})


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def local_settings(
    bootstrap: str,
    sandbox_url: str,
    *,
    metrics_port: int | None = 0,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    raw = local_config(bootstrap, sandbox_url, metrics_port=metrics_port, overrides=overrides)
    return parse_settings(raw, {**SANDBOX_ENV, **(environ or {})}, "<local stack>")


def topic_layout(topics: TopicSettings, partitions: int = 4) -> dict[str, int]:
    paired = [*topics.routes, *topics.routes.values()]
    # the ledger and the parking topic are co-partitioned with the command topics
    internal = dict.fromkeys((topics.ledger, topics.parked, topics.lifecycle), partitions)
    return {**dict.fromkeys(paired, partitions), topics.dead_letter: 1, **internal}


async def _print_outcomes(settings: Settings) -> None:
    t = settings.topics
    consumer = AIOKafkaConsumer(
        *t.results,
        t.lifecycle,
        bootstrap_servers=settings.kafka.bootstrap_servers,
        auto_offset_reset="earliest",
    )
    async with started(consumer):
        async for rec in consumer:
            print(render_record(rec, t.dead_letter), flush=True)


async def _send_examples(settings: Settings) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    async with started(producer):
        run_id = time.strftime("demo-%H%M%S")
        commands = examples.example_commands(run_id)
        for key, doc in [*commands, commands[0]]:  # the first one twice: the ledger absorbs the duplicate
            await producer.send_and_wait(command_topic(settings, doc), orjson.dumps(doc), key=key)
        await producer.send_and_wait(settings.topics.run_commands, examples.NOT_A_COMMAND, key=b"junk")


def print_traces(spans: list[ReceivedSpan]) -> None:
    """One line per trace of an export batch: its id and its spans."""
    traces: dict[str, list[str]] = {}
    for span in spans:
        traces.setdefault(span.trace_id, []).append(span.name)
    for trace_id, names in traces.items():
        print(f"{'TRACE':8}  {trace_id}  {' | '.join(names)}", flush=True)


async def run_local(args: Namespace) -> int:
    Path(".local").mkdir(exist_ok=True)  # noqa: ASYNC240 - one mkdir before anything runs
    broker = await start_broker(args.broker_port, log_path=Path(".local/broker.log"))
    sandbox = await start_sandbox("127.0.0.1", args.sandbox_port)
    receiver = OtlpReceiver(on_spans=print_traces)  # tracing on, into a receiver that prints each trace
    await receiver.start()
    tracing = {"observability": {"tracing": {"enabled": True, "endpoint": receiver.url}}}
    settings = local_settings(
        broker.bootstrap, sandbox.url, metrics_port=args.metrics_port, overrides=tracing
    )
    await create_topics(broker.bootstrap, topic_layout(settings.topics))
    logging.getLogger("bridge.outcome").setLevel(logging.WARNING)  # the outcome printer shows them
    bridge = Bridge(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"broker   {broker.bootstrap}\nsandbox  {sandbox.url}\nmetrics  http://127.0.0.1:{args.metrics_port}/metrics"
        f"\nsend more with: bridge send --bootstrap {broker.bootstrap} '<json>'\n",
        flush=True,
    )
    bridge_task = asyncio.create_task(bridge.run(), name="bridge")
    printer = asyncio.create_task(_print_outcomes(settings), name="outcome-printer")
    try:
        if not args.no_examples:
            await _send_examples(settings)
        if args.exit_after is None:
            await stop.wait()
        else:
            await within(stop.wait(), args.exit_after)
    finally:
        bridge.request_stop()
        await bridge_task
        printer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await printer
        await sandbox.stop()
        await broker.stop()
        await receiver.stop()
    return 0
