"""What parked commands cost while they wait, in-process: no broker, no HTTP, no other process.

    python -m bench.parked_wait --commands 5000 --seconds 5
    python -m bench.parked_wait --commands 5000 --seconds 5 --against /work/main   # before/after ratio

The replay routine (bridge/parking/replay.py) is handed ``--commands`` parked records at once, one
key each, and they wait for ``--seconds`` while nothing can bring them back, in three ways:

- ``recovery``: their target is down (its circuit open for longer than the window), due in an hour;
- ``key``: due long ago, but an earlier command of each one's key is still in the engine;
- ``due``: due in an hour, for a provider's own ``Retry-After`` (no recovery brings them back).

For each, it prints the CPU seconds spent, the event-loop callbacks and timers scheduled during the
window (wake-ups, figures that do not move with the machine's load), and the load average.
``--against PATH`` also runs the same measurement with the ``bridge`` package of another checkout
(``PATH/bridge``, e.g. the main branch before a change) and prints before, after and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from bridge.app import build_targets
from bridge.config.settings import Settings
from bridge.kafka.partitions import Partition
from bridge.kafka.publisher import Publisher
from bridge.local.stack import local_settings
from bridge.messages.wire import Header
from bridge.observability.metrics import Metrics
from bridge.parking.records import ParkedAt, parked_headers
from bridge.parking.replay import Replayer
from bridge.parking.state import Parking
from bridge.testing import FakeProducer

try:  # where the records live once messages holds what crosses the topics; --against an older checkout
    from bridge.messages.records import Incoming, Outgoing  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    from bridge.kafka.records import Incoming, Outgoing  # type: ignore[assignment, unused-ignore]

SCENARIOS = ("recovery", "key", "due")
HOUR_MS = 3_600_000
SETTLE_S = 0.5  # after the records are handed over, before the window: every waiter has begun


@dataclass(frozen=True)
class Figures:
    scenario: str
    commands: int
    seconds: float
    cpu_s: float
    callbacks: int
    timers: int
    came_back: int

    def line(self) -> str:
        rate = self.callbacks / self.commands / self.seconds
        return (
            f"{self.scenario}: {self.commands} parked for {self.seconds:.1f} s: {self.cpu_s:.3f} CPU s, "
            f"{self.callbacks} callbacks ({rate:.2f} per command per second), {self.timers} timers, "
            f"{self.came_back} came back"
        )


class _CountingLoop(asyncio.SelectorEventLoop):
    timers = 0
    callbacks = 0

    def call_at(self, when: float, callback: Any, *args: Any, **kw: Any) -> Any:  # type: ignore[override]
        self.timers += 1
        return super().call_at(when, callback, *args, **kw)

    def call_soon(self, callback: Any, *args: Any, **kw: Any) -> Any:  # type: ignore[override]
        self.callbacks += 1
        return super().call_soon(callback, *args, **kw)


@dataclass
class _Record:
    offset: int
    key: bytes
    value: bytes
    headers: list[Header]


class _Fetcher:
    """The replay consumer: hands out the parked records once, commits nowhere."""

    def __init__(self, records: list[_Record], tp: TopicPartition) -> None:
        self._records, self._tp = records, tp

    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def highwater(self, tp: TopicPartition) -> int | None:
        return len(self._records)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]:
        records, self._records = self._records, []
        return {self._tp: records} if records else {}


def _settings() -> Settings:
    """Local settings whose targets' circuits stay open and unprobed for longer than any window."""
    settings = local_settings("127.0.0.1:9", "http://127.0.0.1:9", metrics_port=None)
    targets = {
        name: t.model_copy(
            update={
                "circuit": t.circuit.model_copy(update={"open_s": 3600.0}),
                "parking": t.parking.model_copy(update={"probe_s": 3600.0}),
            }
        )
        for name, t in settings.targets.items()
    }
    return settings.model_copy(update={"targets": targets})


async def measure(scenario: str, commands: int, seconds: float) -> Figures:
    settings = _settings()
    metrics = Metrics()
    targets = build_targets(settings, None, metrics)  # type: ignore[arg-type]  # no call is made
    target = next(iter(targets))
    parking = Parking(settings, metrics)
    parking.recovery.watch(targets)
    topic = settings.topics.run_commands
    parking.owned.add((topic, 0))
    home = Partition(TopicPartition(topic, 0))
    home.ready.set()
    came_back = 0

    async def handler(command: Incoming) -> Outgoing:
        nonlocal came_back
        came_back += 1
        return Outgoing("out", command.key, b"x")

    def partition_of(topic: str, partition: int) -> Partition | None:
        return home

    publisher = Publisher(FakeProducer(), metrics, 0.01)
    replayer = Replayer(
        settings.kafka, topic, parking, handler, publisher, partition_of, max_held=commands + 1
    )
    now_ms = int(time.time() * 1000)
    records = []
    for n in range(commands):
        key = f"k{n}".encode()
        due, recovers = (
            (now_ms - 1000, False) if scenario == "key" else (now_ms + HOUR_MS, scenario == "recovery")
        )
        if scenario == "key":  # an earlier command of its key is in the engine (queued or running)
            home.keys[key] = deque([Incoming(topic, 0, n, key, b"{}")])
        reason = "circuit_open" if recovers else "retry_after"
        at = ParkedAt(
            topic, commands + n, None, due, now_ms + 2 * HOUR_MS, 1, reason, target, now_ms - 1000, recovers
        )
        records.append(_Record(n, key, b"{}", parked_headers(at, [])))
    targets[target].breaker.trip()  # down: open for an hour, never probed in the window
    fetcher = _Fetcher(records, TopicPartition(settings.topics.parked, 0))
    await replayer.round(fetcher)
    await asyncio.sleep(SETTLE_S)
    loop = asyncio.get_running_loop()
    assert isinstance(loop, _CountingLoop)
    callbacks, timers, cpu = loop.callbacks, loop.timers, time.process_time()
    await asyncio.sleep(seconds)
    figures = Figures(
        scenario,
        commands,
        seconds,
        time.process_time() - cpu,
        loop.callbacks - callbacks - 1,  # the window's own sleep
        loop.timers - timers - 1,
        came_back,
    )
    replayer.stop()
    await asyncio.sleep(0)
    return figures


def run(scenario: str, commands: int, seconds: float) -> Figures:
    with asyncio.Runner(loop_factory=_CountingLoop) as runner:
        return runner.run(measure(scenario, commands, seconds))


def _elsewhere(path: Path, argv: list[str]) -> list[Figures]:
    """The same measurement with ``path``'s ``bridge`` package (its own bench need not exist)."""
    env = {**os.environ, "PYTHONPATH": str(path)}
    done = subprocess.run(
        [sys.executable, __file__, *argv, "--json"], cwd=path, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"error: the run against {path} failed: {done.stderr.strip().splitlines()[-1:]}")
    return [Figures(**row) for row in json.loads(done.stdout)]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.parked_wait", description=__doc__.splitlines()[0])
    p.add_argument("--commands", type=int, default=5000)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    p.add_argument("--against", type=Path, help="another checkout: its bridge is 'before'")
    p.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.getLogger("bridge").setLevel(logging.ERROR)  # the targets' circuits open on purpose
    if args.commands < 1 or args.seconds <= 0:
        print("error: --commands must be at least 1 and --seconds above 0", file=sys.stderr)
        return 2
    if args.against is not None and not (args.against / "bridge" / "__init__.py").is_file():
        print(f"error: --against {args.against}: no bridge package there", file=sys.stderr)
        return 2
    chosen = SCENARIOS if args.scenario == "all" else (args.scenario,)
    common = ["--commands", str(args.commands), "--seconds", str(args.seconds)]
    before = {}
    if args.against is not None:
        for scenario in chosen:
            (figures,) = _elsewhere(args.against.resolve(), [*common, "--scenario", scenario])
            before[scenario] = figures
    after = [run(scenario, args.commands, args.seconds) for scenario in chosen]
    if args.json:
        print(json.dumps([asdict(f) for f in after]))
        return 0
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    for figures in after:
        old = before.get(figures.scenario)
        if old is None:
            print(figures.line())
            continue
        print(f"before {old.line()}")
        print(f"after  {figures.line()}")
        print(
            f"{figures.scenario}: before / after: callbacks {_ratio(old.callbacks, figures.callbacks)}, "
            f"CPU {_ratio(old.cpu_s, figures.cpu_s)}"
        )
    return 0


def _ratio(before: float, after: float) -> str:
    return f"{before / after:,.0f}" if after > 0 else f"{before:,.3g} / 0"


if __name__ == "__main__":
    raise SystemExit(main())
