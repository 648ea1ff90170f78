"""The bridge's own CPU per command, without Kafka or HTTP: engine, processor, executor and the JSON
log line over the in-memory fakes of ``bridge.testing``. No broker, no sandbox, no other process,
so the figure is steady on a shared machine; the network clients' share is what the full benchmark
adds on top.

    python -m bench.inproc --commands 20000            # CPU µs per command, best of --repeat
    python -m bench.inproc --commands 20000 --profile  # plus the top functions (cProfile)
    python -m bench.inproc --commands 5000 --latency-ms 50 --max-calls 64   # commands wait for call slots
    python -m bench.inproc --commands 5000 --latency-ms 50 --max-calls 64 --count   # timers, wake-ups
    python -m bench.inproc --commands 20000 --ledger   # with the command ledger: three records a command

With ``--latency-ms`` every call is answered after that long (an ``asyncio.sleep`` in the fake
transport, no socket), so that commands wait: for a call slot when ``--max-calls`` is below
``engine.max_in_flight`` (``--in-flight``), otherwise only for their answer. Waiting should cost
nothing: compare CPU per command at a small and at a large ``--max-calls``. ``--count`` also counts,
for one more run, the timers and the event-loop callbacks scheduled per command: figures that
do not move with the machine's load.
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
from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import TopicPartition

from bridge.app import build_targets
from bridge.config.settings import Settings
from bridge.http import Call, Response
from bridge.kafka.engine import Engine
from bridge.ledger.store import Ledger
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


class _Delayed(FakeTransport):
    """Answers every call after ``delay_s`` (a provider's latency, without a socket)."""

    def __init__(self, delay_s: float) -> None:
        super().__init__(_answer)
        self.delay_s = delay_s

    async def __call__(self, call: Call) -> Response:
        await asyncio.sleep(self.delay_s)
        return REPLY


class _Counting(FakeProducer):
    """Sets ``done`` once ``expected`` records were sent: the bench waits without polling."""

    def __init__(self, expected: int) -> None:
        super().__init__()
        self.expected = expected
        self.done = asyncio.Event()

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[None]:
        kwargs.setdefault("headers", [])  # the ledger's records have none
        future = await super().send(topic, **kwargs)
        if len(self.sent) >= self.expected:
            self.done.set()
        return future


@dataclass(frozen=True)
class Setup:
    commands: int
    keys: int
    latency_ms: float = 0.0
    max_calls: int | None = None
    in_flight: int | None = None
    ledger: bool = False


async def run_once(setup: Setup) -> tuple[float, float]:
    """CPU and wall seconds to take the commands from the fake log to acknowledged outcomes."""
    commands, keys = setup.commands, setup.keys
    settings = local_settings("127.0.0.1:9", "http://127.0.0.1:9", metrics_port=None)
    settings = _tuned(settings, setup)
    metrics = Metrics()
    transport = _Delayed(setup.latency_ms / 1000) if setup.latency_ms > 0 else FakeTransport(_answer)
    executor = Executor(transport, metrics, Redactor(), settings.engine.max_error_body_bytes)
    targets = build_targets(settings, None, metrics)  # type: ignore[arg-type]  # the fake needs no session
    consumer, producer = FakeConsumer(), _Counting(commands * (3 if setup.ledger else 1))
    ledger = Ledger(settings, producer, metrics) if setup.ledger else None  # type: ignore[arg-type]
    processor = Processor(settings, targets, executor, metrics, ledger)
    engine = Engine(consumer, producer, processor.process, processor.command_topics, settings.engine, metrics)
    topic = settings.topics.run_commands
    for i in range(commands):
        value = orjson.dumps({"id": f"inproc-{i}", **COMMAND, "definition_id": DEFINITION})
        consumer.add(topic, value, key=f"k{i % keys}".encode())
    task = asyncio.create_task(engine.run())
    await asyncio.sleep(0)
    started, wall = time.process_time(), time.perf_counter()
    await consumer.rebalance([TopicPartition(topic, 0)])
    await producer.done.wait()
    took, wall = time.process_time() - started, time.perf_counter() - wall
    engine.request_stop()
    await task
    return took, wall


def _tuned(settings: Settings, setup: Setup) -> Settings:
    """``settings`` with the bench's in-flight cap and every target's ``max_calls``."""
    engine = settings.engine
    if setup.in_flight is not None:
        engine = engine.model_copy(update={"max_in_flight": setup.in_flight})
    targets = settings.targets
    if setup.max_calls is not None:
        targets = {
            name: t.model_copy(
                update={"bulkhead": t.bulkhead.model_copy(update={"max_calls": setup.max_calls})}
            )
            for name, t in targets.items()
        }
    return settings.model_copy(update={"engine": engine, "targets": targets})


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.inproc", description=__doc__.splitlines()[0])
    p.add_argument("--commands", type=int, default=20000)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--latency-ms", type=float, default=0.0, help="answer every call after this long")
    p.add_argument("--max-calls", type=int, default=None, help="every target's bulkhead.max_calls")
    p.add_argument("--in-flight", type=int, default=None, help="engine.max_in_flight")
    p.add_argument(
        "--ledger", action="store_true", help="with the command ledger (dispatched, outcome, done a command)"
    )
    p.add_argument("--count", action="store_true", help="count timers and callbacks of one more run")
    p.add_argument("--profile", action="store_true", help="cProfile one more run and print the top 30")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with open(os.devnull, "w") as sink:
        sys.stderr, stderr = sink, sys.stderr
        try:
            configure_logging("INFO", "json", Redactor())  # the production log line, into /dev/null
            runs = [asyncio.run(run_once(_setup(args))) for _ in range(args.repeat)]
            profile = _profiled(args) if args.profile else ""
            counted = _counted(args) if args.count else ""
        finally:
            sys.stderr = stderr
            logging.getLogger().handlers.clear()
    per = [cpu / args.commands * 1e6 for cpu, _ in runs]
    rates = [args.commands / wall for _, wall in runs]
    print(f"CPU per command (µs): best {min(per):.1f}, all {', '.join(f'{p:.1f}' for p in per)}")
    print(f"commands/s: {', '.join(f'{r:,.0f}' for r in rates)}")
    print(counted, end="")
    print(profile, end="")
    return 0


class _CountingLoop(asyncio.SelectorEventLoop):
    """Counts the timers and the callbacks scheduled (task steps and wake-ups included)."""

    timers = 0
    callbacks = 0

    def call_at(self, when: float, callback: Any, *args: Any, **kw: Any) -> Any:  # type: ignore[override]
        self.timers += 1
        return super().call_at(when, callback, *args, **kw)

    def call_soon(self, callback: Any, *args: Any, **kw: Any) -> Any:  # type: ignore[override]
        self.callbacks += 1
        return super().call_soon(callback, *args, **kw)


def _counted(args: argparse.Namespace) -> str:
    with asyncio.Runner(loop_factory=_CountingLoop) as runner:
        runner.run(run_once(_setup(args)))
        loop = runner.get_loop()
        assert isinstance(loop, _CountingLoop)
        timers, callbacks = loop.timers, loop.callbacks
    n = args.commands
    return f"per command: {timers / n:.2f} timers scheduled, {callbacks / n:.2f} callbacks scheduled\n"


def _setup(args: argparse.Namespace) -> Setup:
    return Setup(args.commands, args.keys, args.latency_ms, args.max_calls, args.in_flight, args.ledger)


def _profiled(args: argparse.Namespace) -> str:
    profiler = cProfile.Profile()
    profiler.runcall(asyncio.run, run_once(_setup(args)))
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("tottime").print_stats(30)
    return out.getvalue()


if __name__ == "__main__":
    raise SystemExit(main())
