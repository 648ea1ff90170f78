"""Fixtures for integration tests: a real broker, the sandbox over real HTTP, and the bridge.

The broker is the embedded Tansu, or Apache Kafka with ``--broker kafka`` (or ``BRIDGE_TEST_BROKER=kafka``):
one per pytest process, so one per xdist worker. What the clients may use is asked of the broker
(``broker_abilities``), never decided by its name.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bridge.app import Bridge
from bridge.config.settings import Settings, TopicSettings
from bridge.contracts import load_specs
from bridge.kafka.topics import apply_topics
from bridge.local.abilities import BrokerAbilities, detect_abilities
from bridge.local.broker import RunningBroker, start_broker
from bridge.local.kafka_broker import SHORT_LIVED_JVM, kafka_available, start_kafka_broker
from bridge.local.otlp import OtlpReceiver
from bridge.local.stack import SANDBOX_ENV, local_config, local_settings, topic_layout
from bridge.sandbox import eightbyeight as eightbyeight_sandbox
from bridge.sandbox import start_sandbox
from bridge.sandbox import workfloo as workfloo_sandbox
from bridge.sandbox import zilliant as zilliant_sandbox
from bridge.sandbox import zuora as zuora_sandbox
from bridge.sandbox.eightbyeight import EIGHTBYEIGHT_DEFINITION
from bridge.sandbox.workfloo import WORKFLOO_DEFINITION_WITH_LINKS, WORKFLOO_SCENARIO
from bridge.sandbox.zuora_runs import ZUORA_DEFINITION_NO_PARAMS
from tests.integration import leaks

pytestmark = pytest.mark.integration


StartBroker = Callable[..., Awaitable[RunningBroker]]
TOPIC_SPECS = load_specs(Path(__file__).resolve().parents[2] / "topics")


leaks.install()  # an unclosed Kafka connection's warning names the test that opened it


@pytest.fixture(autouse=True)
async def no_stray_sockets(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    """Fails the test that left a socket open (and closes it), after every other fixture of the test
    has stopped: found later by the garbage collector, it would fail whichever test was running."""
    yield
    await asyncio.sleep(0.05)  # closes under way (a peer's end of stream, a close's callbacks) finish
    strays = leaks.stray_transports(request.node.nodeid, asyncio.get_running_loop())
    if strays:
        pytest.fail(f"{len(strays)} socket(s) left open:\n" + "\n".join(strays), pytrace=False)


async def create_spec_topics(bootstrap: str, topics: TopicSettings, partitions: int = 4) -> None:
    """A test's topics as ``bridge topics apply`` creates them from topics/*.yaml (configs, compaction,
    size limits), under the test's names and with ``partitions`` each (the dead-letter topic: one)."""
    layout = topic_layout(topics, partitions)
    names = topics.model_dump()
    specs = [
        spec.model_copy(update={"name": names[spec.role], "partitions": layout[names[spec.role]]})
        for spec in TOPIC_SPECS
    ]
    report = await apply_topics(bootstrap, specs)
    assert report.drift == [], report.render()


@pytest.fixture(scope="session")
def broker_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.config.getoption("--broker")
    if kind == "kafka" and (missing := kafka_available()) is not None:
        pytest.exit(f"--broker kafka: {missing}", returncode=4)
    return kind


@pytest.fixture(scope="session")
def start_test_broker(broker_kind: str, tmp_path_factory: pytest.TempPathFactory) -> StartBroker:
    """Starts another broker of the kind under test (``port``, ``advertised_port`` as start_broker)."""
    if broker_kind == "tansu":
        return start_broker

    async def start_kafka(**options: Any) -> RunningBroker:
        log = tmp_path_factory.mktemp("kafka") / "server.log"  # kept by pytest for a failed run's reader
        return await start_kafka_broker(log_path=log, jvm_options=SHORT_LIVED_JVM, **options)

    return start_kafka


@pytest.fixture(scope="session")
def broker(start_test_broker: StartBroker) -> Iterator[RunningBroker]:
    running = asyncio.run(start_test_broker())
    yield running
    running.kill()


@pytest.fixture(scope="session")
def broker_abilities(broker: RunningBroker) -> BrokerAbilities:
    return asyncio.run(detect_abilities(broker.bootstrap))


@pytest.fixture
async def receiver() -> AsyncIterator[OtlpReceiver]:
    """An OTLP/HTTP trace receiver on 127.0.0.1 (point ``observability.tracing.endpoint`` at its url)."""
    running = OtlpReceiver()
    await running.start()
    yield running
    await running.stop()


@pytest.fixture
async def sandbox() -> AsyncIterator[Any]:
    running = await start_sandbox("127.0.0.1", 0)
    yield running
    await running.stop()


STOP_MARGIN_S = 40.0  # a bridge stops within its drain grace and this (commit, leave the group, close)


@dataclass
class Stack:
    """One test's world: unique topics and group on the shared broker, its own sandbox."""

    broker: RunningBroker
    sandbox: Any
    settings: Settings
    bridges: list[tuple[Bridge, asyncio.Task[None]]] = field(default_factory=list)
    # ``bridge run`` processes of start_process: killed at teardown if the test left them running (a
    # failed assertion), so that they do not outlive the test and load the machine for hours
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    _consumer: AIOKafkaConsumer | None = None
    # with --ledger-store: the directory under which every bridge started here keeps its ledger store
    store_root: Path | None = None

    def configure(self, **overrides: Any) -> Settings:
        base = self.settings
        merged = {
            "topics": base.topics.model_dump(),
            "kafka": {"group_id": base.kafka.group_id, "enable_idempotence": base.kafka.enable_idempotence},
        }
        for key, value in overrides.items():
            merged[key] = {**merged.get(key, {}), **value}
        self.settings = local_settings(self.broker.bootstrap, self.sandbox.url, overrides=merged)
        return self.settings

    def store_for(self, member: str) -> str | None:
        """With --ledger-store: member ``member``'s store directory, the same across its restarts."""
        return None if self.store_root is None else str(self.store_root / member)

    def _with_store(self, settings: Settings) -> Settings:
        """``settings`` with a ledger store of its own unless the test chose one (or none is asked for):
        an in-process member takes the first directory no running member holds, so a restart is warm."""
        store = settings.ledger.store
        if self.store_root is None or store.path is not None:
            return settings
        held = {b.settings.ledger.store.path for b, task in self.bridges if not task.done()}
        path = next(p for n in itertools.count() if (p := self.store_for(f"in-process-{n}")) not in held)
        ledger = settings.ledger.model_copy(update={"store": store.model_copy(update={"path": path})})
        return settings.model_copy(update={"ledger": ledger})

    async def start_bridge(self, settings: Settings | None = None) -> Bridge:
        bridge = Bridge(self._with_store(settings or self.settings))
        task = asyncio.create_task(bridge.run())
        self.bridges.append((bridge, task))
        return bridge

    async def stop_bridge(self, bridge: Bridge) -> None:
        for b, task in list(self.bridges):
            if b is bridge:
                b.request_stop()
                await asyncio.wait_for(task, 30)
                self.bridges.remove((b, task))

    async def send(
        self,
        *commands: tuple[bytes | None, Any],
        topic: str | None = None,
        timestamp_ms: int | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> None:
        producer = AIOKafkaProducer(bootstrap_servers=self.broker.bootstrap)
        try:
            await producer.start()
            for key, doc in commands:
                value = doc if isinstance(doc, bytes) or doc is None else orjson.dumps(doc)
                await producer.send_and_wait(
                    topic or self.topic_for(doc), value, key=key, timestamp_ms=timestamp_ms, headers=headers
                )
        finally:
            await producer.stop()

    def topic_for(self, doc: Any) -> str:
        from bridge.local.commands import command_topic

        if isinstance(doc, dict):
            with contextlib.suppress(KeyError, ValueError):
                return command_topic(self.settings, doc)
        return self.settings.topics.run_commands

    async def collect(self, count: int, within_s: float = 30.0, *, include_dlq: bool = True) -> list[Any]:
        """Read ``count`` events (outcomes as dicts, DLQ records as raw records) from the result topics."""
        t = self.settings.topics
        if self._consumer is None:
            names = [t.run_outcomes, t.control_outcomes] + ([t.dead_letter] if include_dlq else [])
            self._consumer = AIOKafkaConsumer(
                *names,
                bootstrap_servers=self.broker.bootstrap,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                isolation_level="read_committed",  # as docs/exactly-once.md tells a downstream consumer
            )
            await self._consumer.start()
        found: list[Any] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while len(found) < count and loop.time() < deadline:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for rec in records:
                    found.append(rec if rec.topic == t.dead_letter else orjson.loads(rec.value))
        return found

    async def fault(self, provider: str, spec: dict[str, Any]) -> None:
        """Set the sandbox fault entry of one provider (an empty spec clears it)."""
        async with (
            aiohttp.ClientSession() as session,
            session.put(f"{self.sandbox.url}/_sandbox/faults/{provider}", json=spec) as resp,
        ):
            assert resp.status == 200, await resp.text()

    async def requests(self, provider: str) -> list[dict[str, Any]]:
        """What the sandbox received for one provider, in arrival order."""
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{self.sandbox.url}/_sandbox/requests", params={"provider": provider}) as resp,
        ):
            result: list[dict[str, Any]] = await resp.json()
            return result

    async def close(self) -> None:
        for process in self.processes:
            if process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await asyncio.wait_for(process.wait(), 10)  # killed: a full stderr pipe cannot hold it
        for bridge, _ in self.bridges:
            bridge.request_stop()
        stopping = {task for _, task in self.bridges}
        grace = max((b.settings.engine.drain_grace_s for b, _ in self.bridges), default=0.0) + STOP_MARGIN_S
        done, hung = await asyncio.wait(stopping, timeout=grace) if stopping else (set(), set())
        for task in done:
            if not task.cancelled():
                task.exception()  # a bridge that failed is the test's business, not the teardown's
        if self._consumer is not None:
            await self._consumer.stop()
        if hung:  # cancelled, a bridge stops half-way and leaks its clients: say so here, not in a later test
            for task in hung:
                task.cancel()
            await asyncio.gather(*hung, return_exceptions=True)
            pytest.fail(f"{len(hung)} bridge(s) still running {grace:.0f}s after request_stop()")


@pytest.fixture
async def stack(
    broker: RunningBroker,
    broker_abilities: BrokerAbilities,
    sandbox: Any,
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[Stack]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    overrides = {
        "topics": {
            "run_commands": f"{prefix}.run.commands",
            "control_commands": f"{prefix}.control.commands",
            "run_outcomes": f"{prefix}.run.outcomes",
            "control_outcomes": f"{prefix}.control.outcomes",
            "dead_letter": f"{prefix}.dlq",
            "ledger": f"{prefix}.ledger",
            "lifecycle": f"{prefix}.lifecycle",
            "parked": f"{prefix}.parked",
        },
        # the defaults a user deploys (idempotent producer, acks all) wherever the broker grants them
        "kafka": {"group_id": f"{prefix}-bridge", "enable_idempotence": broker_abilities.idempotent_producer},
    }
    settings = local_settings(broker.bootstrap, sandbox.url, overrides=overrides)
    await create_spec_topics(broker.bootstrap, settings.topics)
    world = Stack(broker, sandbox, settings)
    if request.config.getoption("--ledger-store"):
        world.store_root = tmp_path_factory.mktemp("ledger-stores")
    yield world
    await world.close()
    leaks.note_still_open(request.node.nodeid)


async def parked_records(stack: Stack) -> list[Any]:
    """Every record of the parking topic so far (read to the fetch high watermark)."""
    topic = stack.settings.topics.parked
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.broker.bootstrap,
        auto_offset_reset="earliest",
        isolation_level="read_committed",
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()] or [
            TopicPartition(topic, p) for p in range(4)
        ]
        consumer.assign(tps)
        found: list[Any] = []
        for _ in range(10):
            batch = await consumer.getmany(timeout_ms=300)
            found += [r for records in batch.values() for r in records]
        return found
    finally:
        await consumer.stop()


async def start_process(
    stack: Stack, tmp_path: Path, *, metrics_port: int | None = None, name: str = "config", **overrides: Any
) -> asyncio.subprocess.Process:
    """``python -m bridge run`` on this test's topics and group; stderr (the logs) is a pipe. With
    --ledger-store its store is the directory of member ``name`` unless ``overrides`` choose one."""
    store = stack.store_for(name)
    if store is not None and "store" not in overrides.get("ledger", {}):
        overrides = {**overrides, "ledger": {**overrides.get("ledger", {}), "store": {"path": store}}}
    raw = local_config(
        stack.broker.bootstrap,
        stack.sandbox.url,
        metrics_port=metrics_port,
        overrides={
            "topics": stack.settings.topics.model_dump(),
            **overrides,
            "kafka": {
                "group_id": stack.settings.kafka.group_id,
                "enable_idempotence": stack.settings.kafka.enable_idempotence,
                **overrides.get("kafka", {}),
            },
        },
    )
    process = await bridge_run(raw, tmp_path / f"{name}.yaml", SANDBOX_ENV)
    stack.processes.append(process)
    return process


async def bridge_run(
    raw: dict[str, Any], config: Path, env: Mapping[str, str], stdout: int = asyncio.subprocess.DEVNULL
) -> asyncio.subprocess.Process:
    """``python -m bridge run --config CONFIG`` with ``raw`` written there and ``env`` added; stderr (the
    logs) is a pipe."""
    await asyncio.to_thread(config.write_text, yaml.safe_dump(raw))
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "run",
        "--config",
        str(config),
        env={**os.environ, **env},
        stdout=stdout,
        stderr=asyncio.subprocess.PIPE,
    )


SANDBOX_TARGETS = (
    zilliant_sandbox.LOCAL_TARGET,
    zuora_sandbox.LOCAL_TARGET,
    workfloo_sandbox.LOCAL_TARGET,
    workfloo_sandbox.LOCAL_BAD_KEY_TARGET,
    eightbyeight_sandbox.LOCAL_TARGET,
)
# For tests of the calls commands make: tracking's status reads would join them in the sandbox log
# (tests/integration/test_tracking.py tests those).
NO_TRACKING = {name: {"tracking": {"enabled": False}} for name in SANDBOX_TARGETS}


def workfloo_command(command_id: str, target: str = workfloo_sandbox.LOCAL_TARGET) -> dict[str, Any]:
    """A workfloo run command the sandbox accepts (unless ``target`` says otherwise)."""
    return {
        "id": command_id,
        "target": target,
        "operation": "workfloo.execute",
        "definition_id": WORKFLOO_DEFINITION_WITH_LINKS,
        "scenario_id": WORKFLOO_SCENARIO,
    }


def zilliant_command(command_id: str, **extra: Any) -> dict[str, Any]:
    """A Zilliant job the sandbox queues."""
    return {
        "id": command_id,
        "target": zilliant_sandbox.LOCAL_TARGET,
        "operation": "zilliant.queue_job",
        "automation_id": "PublishListPrices",
        **extra,
    }


def eight_command(command_id: str, **fields: Any) -> dict[str, Any]:
    """A suspend of an 8x8 instance of the sandbox's definition."""
    return {
        "id": command_id,
        "target": eightbyeight_sandbox.LOCAL_TARGET,
        "operation": "8x8.update_instance",
        "action": "suspend",
        "definition_id": EIGHTBYEIGHT_DEFINITION,
        "instance_id": "60dbe307fe55d99fc083db61",
        **fields,
    }


def zuora_command(command_id: str, **extra: Any) -> dict[str, Any]:
    """A Zuora run of the definition without required parameters: the sandbox queues it."""
    return {
        "id": command_id,
        "target": zuora_sandbox.LOCAL_TARGET,
        "operation": "zuora.run_workflow",
        "workflow_id": ZUORA_DEFINITION_NO_PARAMS,
        **extra,
    }


def by_command(events: list[Any]) -> dict[str, dict[str, Any]]:
    return {e["data"]["command_id"]: e["data"] for e in events if isinstance(e, dict)}
