"""The bridge's own CPU per command, without Kafka or HTTP: engine, processor, executor and the JSON
log line over the in-memory fakes of ``bridge.testing``. No broker, no sandbox, no other process,
so the figure is steady on a shared machine; the network clients' share is what the full benchmark
adds on top.

    python -m bench.inproc --commands 20000            # CPU µs per command, best of --repeat
    python -m bench.inproc --commands 20000 --profile  # plus the top functions (cProfile)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import logging
import os
import pstats
import sys
import time
from collections.abc import Sequence

import orjson
from aiokafka import TopicPartition

from bridge.app import build_targets
from bridge.http import Call, Response
from bridge.kafka.engine import Engine
from bridge.local.stack import local_settings
from bridge.observability.logs import configure_logging
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor
from bridge.pipeline.processor import Processor
from bridge.testing import FakeConsumer, FakeProducer, FakeTransport

# bench.workload's command, spelled out: this module must also run against a build from before it
COMMAND = {"target": "workfloo-sandbox", "operation": "workfloo.execute"}
DEFINITION = "657117e1d511b6e54fe2a970"  # the sandbox's WORKFLOO_DEFINITION_PLAIN (it has moved)
REPLY = Response(200, {"Content-Type": "application/json"}, orjson.dumps({"id": "exec-1"}))


def _answer(call: Call) -> Response:
    return REPLY


async def run_once(commands: int, keys: int) -> float:
    """CPU seconds to take ``commands`` commands from the fake log to acknowledged outcomes."""
    settings = local_settings("127.0.0.1:9", "http://127.0.0.1:9", metrics_port=None)
    metrics = Metrics()
    executor = Executor(FakeTransport(_answer), metrics, Redactor(), settings.engine.max_error_body_bytes)
    targets = build_targets(settings, None, metrics)  # type: ignore[arg-type]  # the fake needs no session
    processor = Processor(settings, targets, executor, metrics)
    consumer, producer = FakeConsumer(), FakeProducer()
    engine = Engine(consumer, producer, processor.process, processor.command_topics, settings.engine, metrics)
    topic = settings.topics.run_commands
    for i in range(commands):
        value = orjson.dumps({"id": f"inproc-{i}", **COMMAND, "definition_id": DEFINITION})
        consumer.add(topic, value, key=f"k{i % keys}".encode())
    task = asyncio.create_task(engine.run())
    await asyncio.sleep(0)
    started = time.process_time()
    await consumer.rebalance([TopicPartition(topic, 0)])
    while len(producer.sent) < commands:  # noqa: ASYNC110 - the fake producer has no event to await
        await asyncio.sleep(0.001)
    took = time.process_time() - started
    engine.request_stop()
    await task
    return took


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__.splitlines()[0])
    p.add_argument("--commands", type=int, default=20000)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--profile", action="store_true", help="cProfile one more run and print the top 30")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with open(os.devnull, "w") as sink:
        sys.stderr, stderr = sink, sys.stderr
        try:
            configure_logging("INFO", "json", Redactor())  # the production log line, into /dev/null
            runs = [asyncio.run(run_once(args.commands, args.keys)) for _ in range(args.repeat)]
            profile = _profiled(args) if args.profile else ""
        finally:
            sys.stderr = stderr
            logging.getLogger().handlers.clear()
    per = [r / args.commands * 1e6 for r in runs]
    print(f"CPU per command (µs): best {min(per):.1f}, all {', '.join(f'{p:.1f}' for p in per)}")
    print(profile, end="")
    return 0


def _profiled(args: argparse.Namespace) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, run_once(args.commands, args.keys))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    return out.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
