"""Run the bridge as a separate process over preloaded or paced commands and measure it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from bench.baselines import World
from bench.decompose import breakdown, order_violations
from bench.procs import (
    Child,
    ProcSample,
    cpu_between,
    machine_busy_s,
    python_module,
    read_proc,
    sample_until,
    wait_http,
)
from bench.profile import start_py_spy
from bench.stats import Row
from bench.workload import Latency, OutcomeCollector, Sent, Shape, make_topics, paced, preload, set_latency
from bridge.config.presets import PRESETS
from bridge.config.settings import TopicSettings
from bridge.local.abilities import detect_abilities
from bridge.local.broker import RunningBroker, free_port, start_broker
from bridge.local.kafka_broker import start_kafka_broker
from bridge.local.stack import SANDBOX_ENV, local_config

CPUS = os.cpu_count() or 1


@dataclass
class Bench:
    """The broker and the sandbox process shared by every scenario, and a folder for logs."""

    world: World
    workdir: Path
    sandbox: Child
    broker_pid: int
    bridge_log_level: str = "INFO"
    bridge_overrides: dict[str, Any] = field(default_factory=dict)
    """Extra configuration, e.g. ``{"kafka": {"linger_ms": 0}}``, merged over the bench's own."""
    bridge_cmd: tuple[str, ...] = ()
    """How to start the bridge (``run --config PATH`` is appended); default ``python -m bridge``."""
    broker: str = "tansu"
    """``tansu`` (the embedded broker) or ``kafka`` (Apache Kafka, bridge.local.kafka_broker)"""
    idempotent: bool = False
    """the broker grants InitProducerId: the bridge runs with the idempotent producer, as deployed"""


async def start_bench_broker(kind: str, log_path: Path) -> RunningBroker:
    """The embedded Tansu, or Apache Kafka from ``tools/kafka/lib`` (``make kafka-jars``)."""
    if kind == "kafka":
        return await start_kafka_broker(log_path=log_path)
    return await start_broker(log_path=log_path)


@contextlib.asynccontextmanager
async def started(workdir: Path, broker_kind: str = "tansu") -> AsyncIterator[Bench]:
    """Start the broker and the sandbox (its own process); stop both whatever happens."""
    broker: RunningBroker | None = None
    port = free_port()
    sandbox = Child.spawn(
        "sandbox",
        python_module("bridge", "sandbox", "--host", "127.0.0.1", "--port", str(port)),
        workdir / "sandbox.log",
    )
    try:
        broker = await start_bench_broker(broker_kind, workdir / f"broker-{broker_kind}.log")
        url = f"http://127.0.0.1:{port}"
        await wait_http(sandbox, f"{url}/_sandbox/faults")
        abilities = await detect_abilities(broker.bootstrap)
        world = World(broker.bootstrap, url)
        bench = Bench(world, workdir, sandbox, broker.process.pid, broker=broker_kind)
        bench.idempotent = abilities.idempotent_producer
        yield bench
    finally:
        await asyncio.to_thread(sandbox.stop, 5.0)
        if broker is not None:
            await broker.stop()


@dataclass
class Check:
    """Exactly one outcome per command: what was missing, doubled or unexpected."""

    expected: int
    missing: int
    duplicates: int
    unknown: int
    dead_letters: int
    unreadable: int
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not (self.missing or self.duplicates or self.unknown or self.dead_letters or self.unreadable)

    @classmethod
    def of(cls, collector: OutcomeCollector, expected_ids: set[str]) -> Check:
        seen = set(collector.arrivals)
        return cls(
            expected=len(expected_ids),
            missing=len(expected_ids - seen),
            duplicates=sum(1 for a in collector.arrivals.values() if len(a) > 1),
            unknown=len(seen - expected_ids),
            dead_letters=collector.dead_letters,
            unreadable=collector.unreadable,
            statuses=dict(collector.statuses()),
        )


@dataclass(frozen=True, slots=True)
class Variant:
    """A bridge build or configuration compared with the default in the same run."""

    kind: str
    """the row's name, e.g. ``bridge[latency]``"""
    preset: str | None = None
    """``latency`` or ``throughput``: the bench's own kafka values give way to the preset's"""
    cmd: tuple[str, ...] = ()
    """start it with this instead of ``--bridge-cmd`` (e.g. the code before this branch)"""
    timing: bool = True
    """set ``engine.timing_header`` (a build from before issue 16 does not know it)"""
    peer: tuple[str, ...] = ()
    """``bench.peers`` arguments: run that process in the bridge's place (same config file)"""
    field_defaults: bool = False
    """drop the bench's own ``linger_ms`` / ``fetch_max_wait_ms``: the settings' defaults apply"""
    settings: tuple[tuple[str, object], ...] = ()
    """configuration set on top, as dotted paths (``*`` for every key there), e.g.
    ``(("ledger.enabled", False),)`` or ``(("targets.*.tracking.enabled", False),)``"""


def set_path(raw: dict[str, Any], path: str, value: object) -> None:
    """Set ``a.b.c`` in nested dicts (creating them); a ``*`` part means every key at that level."""
    head, _, rest = path.partition(".")
    if head == "*":
        for child in raw.values():
            if isinstance(child, dict):
                set_path(child, rest, value)
        return
    if not rest:
        raw[head] = value
        return
    child = raw.setdefault(head, {})
    set_path(child, rest, value)


DEFAULT = Variant("bridge")


def bridge_config(
    bench: Bench, topics: TopicSettings, in_flight: int, metrics_port: int | None, variant: Variant = DEFAULT
) -> Any:
    engine: dict[str, Any] = {"max_in_flight": in_flight, "timing_header": True}
    if not variant.timing:
        del engine["timing_header"]
    raw = local_config(
        bench.world.bootstrap,
        bench.world.sandbox_url,
        metrics_port=metrics_port,
        overrides={
            "topics": topics.model_dump(),
            "kafka": {"group_id": f"bench-bridge-{uuid.uuid4().hex[:8]}"},
            "engine": engine,
            "observability": {"log_level": bench.bridge_log_level},
        },
    )
    # the defaults a user deploys (idempotent producer, acks all) wherever the broker grants them
    raw["kafka"]["enable_idempotence"] = bench.idempotent
    if variant.preset is not None:
        raw["preset"] = variant.preset
    if variant.preset is not None or variant.field_defaults:
        for key in PRESETS["latency"]["kafka"]:  # both presets set the same keys
            raw["kafka"].pop(key, None)
    for section, values in bench.bridge_overrides.items():
        raw[section] = {**raw.get(section, {}), **values}
    for path, value in variant.settings:
        set_path(raw, path, value)
    return raw


def spawn_bridge(bench: Bench, label: str, config: Any, variant: Variant = DEFAULT) -> Child:
    """The bridge (as ``variant`` says), or with ``peer`` the ``bench.peers`` process doing its job."""
    name = f"{label}.{variant.kind}"
    path = bench.workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    bridge = [*(variant.cmd or bench.bridge_cmd or python_module("bridge")), "run", "--config", str(path)]
    return Child.spawn(
        f"{variant.kind}[{label}]",
        python_module("bench.peers", *variant.peer, "--config", str(path)) if variant.peer else bridge,
        bench.workdir / f"{name}.log",
        env={**os.environ, **SANDBOX_ENV},
    )


@dataclass
class BridgeRun:
    """One bridge process over one scenario's topics."""

    bench: Bench
    label: str
    shape: Shape
    latency: Latency
    in_flight: int
    timeout_s: float
    watch_in_flight: bool = False
    peak_in_flight: float | None = None
    offered_rate: float | None = None
    profile_dir: Path | None = None
    warm: Sent = field(default_factory=Sent)
    variant: Variant = DEFAULT

    async def prepare(self) -> TopicSettings:
        await set_latency(self.bench.world.sandbox_url, self.latency)
        return await make_topics(self.bench.world.bootstrap, self.label, self.shape.partitions)

    async def preloaded(self) -> tuple[Row, Check]:
        """Preload every command, then start the bridge and wait for every outcome."""
        topics = await self.prepare()
        sent = await preload(self.bench.world.bootstrap, topics.run_commands, self.shape, self.label)
        return await self._run(topics, sent, self._wait_all(sent))

    async def paced(self, rate: float, warmup: int = 20) -> tuple[Row, Check]:
        """Start the bridge, warm it up, then feed commands at ``rate`` per second while it runs."""
        topics = await self.prepare()
        sent = Sent()

        async def feed(collector: OutcomeCollector, alive: Callable[[], bool]) -> None:
            bootstrap, topic = self.bench.world.bootstrap, topics.run_commands
            self.warm = await preload(bootstrap, topic, Shape(warmup, warmup, 1), f"{self.label}-warm")
            await collector.collect(warmup, self.timeout_s, alive)
            feeding = paced(bootstrap, topic, self.shape, rate, self.label, sent)
            offered, _ = await asyncio.gather(
                feeding, collector.collect(warmup + self.shape.commands, self.timeout_s, alive)
            )
            self.offered_rate = offered

        return await self._run(topics, sent, feed)

    def _wait_all(self, sent: Sent) -> Callable[[OutcomeCollector, Callable[[], bool]], Any]:
        async def wait(collector: OutcomeCollector, alive: Callable[[], bool]) -> None:
            await collector.collect(len(sent.at), self.timeout_s, alive)

        return wait

    async def _run(
        self,
        topics: TopicSettings,
        sent: Sent,
        drive: Callable[[OutcomeCollector, Callable[[], bool]], Any],
    ) -> tuple[Row, Check]:
        # the bridge serves its metrics, scraped once at the end for its HTTP calls (and in iv while it runs)
        metrics_port = None if self.variant.peer else free_port()
        config = bridge_config(self.bench, topics, self.in_flight, metrics_port, self.variant)
        others = {"sandbox": self.bench.sandbox.pid, "broker": self.bench.broker_pid, "bench": os.getpid()}
        before = {name: read_proc(pid) for name, pid in others.items()}
        busy_before = machine_busy_s()
        async with OutcomeCollector(self.bench.world.bootstrap, topics) as collector:
            bridge = spawn_bridge(self.bench, self.label, config, self.variant)
            spy: Child | None = None
            stop = asyncio.Event()
            watchers = [asyncio.create_task(sample_until(bridge, stop))]
            try:
                spy = self._profile(bridge)
                if metrics_port is not None and self.watch_in_flight:
                    watchers.append(asyncio.create_task(self._watch_in_flight(metrics_port, stop)))
                spawned = time.time()
                await drive(collector, bridge.alive)
                final = bridge.sample()
                http_calls = await http_calls_of(metrics_port) if metrics_port is not None else None
                await collector.settle()
            finally:
                stop.set()
                await asyncio.gather(*watchers, return_exceptions=True)
                exit_code = await asyncio.to_thread(bridge.stop)
                if spy is not None:
                    await asyncio.to_thread(_finish_py_spy, spy)
        row = self._row(collector, sent, bridge.samples, final)
        other_cpu = {name: _cpu_delta(before[name], read_proc(pid)) for name, pid in others.items()}
        busy = machine_busy_s() - busy_before
        ours = sum(v or 0.0 for v in other_cpu.values()) + (bridge.samples[-1].cpu_s if bridge.samples else 0)
        if exit_code not in (0, None):  # it ended on its own (a refused config, a crash): what it said
            row.extra["bridge_log_tail"] = bridge.log_tail(5)
        row.extra.update(
            wall_s=round(max((a[0].at for a in collector.arrivals.values()), default=spawned) - spawned, 3),
            bridge_exit_code=exit_code,
            other_cpu_s=other_cpu,
            machine_busy_cpu_s=round(busy, 2),
            foreign_cpu_s=round(max(0.0, busy - ours), 2),
            foreign_share=round(max(0.0, busy - ours) / max(1e-9, (time.time() - spawned) * CPUS), 3),
            peak_in_flight=self.peak_in_flight,
            offered_rate=self.offered_rate,
            http_calls=http_calls,
            load_average=os.getloadavg(),
        )
        if exit_code != 0 or len(collector.arrivals) < len(sent.at):
            print(f"--- {bridge.name} log tail (exit {exit_code}) ---\n{bridge.log_tail()}", flush=True)
        return row, Check.of(collector, set(sent.at) | set(self.warm.at))

    def _row(
        self, collector: OutcomeCollector, sent: Sent, samples: list[ProcSample], final: ProcSample | None
    ) -> Row:
        firsts = {cid: a[0] for cid, a in collector.arrivals.items() if cid in sent.at}
        e2e = [(a.at - sent.at[cid]) * 1000 for cid, a in firsts.items()]
        service = [a.duration_ms for a in firsts.values()]
        start = min((a.at - a.duration_ms / 1000 for a in firsts.values()), default=0.0)
        end = max((a.at for a in firsts.values()), default=0.0)
        row = Row(self.label, self.variant.kind, len(firsts), end - start, self.latency.ms)
        if final is not None:
            row.peak_rss_mb = final.peak_rss_mb
            row.cpu_s = cpu_between(samples, start, end)
            row.extra["cpu_total_s"] = final.cpu_s
        row.extra["in_flight"] = self.in_flight
        row.extra["shape"] = asdict(self.shape)
        row.extra["phases"] = breakdown(sent.at, firsts)
        row.extra["order_violations"] = order_violations(firsts)
        return row.with_latencies(e2e).with_service(service)

    def _profile(self, bridge: Child) -> Child | None:
        if self.profile_dir is None:
            return None
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        return start_py_spy(bridge.pid, self.profile_dir / f"{self.label}.txt")

    async def _watch_in_flight(self, port: int, stop: asyncio.Event) -> None:
        """Scrape ``bridge_in_flight_commands`` to show how many commands the bridge held at once."""
        url = f"http://127.0.0.1:{port}/metrics"
        async with aiohttp.ClientSession() as session:
            while not stop.is_set():
                with contextlib.suppress(aiohttp.ClientError, OSError, ValueError):
                    async with session.get(url) as resp:
                        for line in (await resp.text()).splitlines():
                            if line.startswith("bridge_in_flight_commands "):
                                value = float(line.split()[1])
                                self.peak_in_flight = max(self.peak_in_flight or 0.0, value)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.2)


CALL_COUNTS = ("bridge_provider_request_duration_seconds_count{", "bridge_tracking_polls_total{")
"""The metrics that count the bridge's HTTP calls: the commands' calls and tracking's status reads."""


async def http_calls_of(port: int) -> dict[str, float] | None:
    """The bridge's HTTP calls so far, by kind (``calls``, ``status_reads``), from its metrics."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/metrics") as resp,
        ):
            text = await resp.text()
    except (aiohttp.ClientError, OSError):
        return None
    return count_calls(text)


def count_calls(text: str) -> dict[str, float]:
    """Pure: the sums of :data:`CALL_COUNTS` in a Prometheus exposition."""
    found = {"calls": 0.0, "status_reads": 0.0}
    for line in text.splitlines():
        for name, prefix in zip(found, CALL_COUNTS, strict=True):
            if line.startswith(prefix):
                found[name] += float(line.rsplit(" ", 1)[1])
    return found


def _finish_py_spy(spy: Child) -> None:
    """py-spy writes its file and exits once the bridge has exited; stop it if it does not."""
    try:
        spy.process.wait(30)
    except subprocess.TimeoutExpired:
        spy.stop(5)


def _cpu_delta(before: ProcSample | None, after: ProcSample | None) -> float | None:
    return round(after.cpu_s - before.cpu_s, 3) if before and after else None
