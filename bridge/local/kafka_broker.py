"""Start a single-node Apache Kafka broker (KRaft, combined mode) on loopback, for tests and benchmarks.

The jars come from Maven Central through ``tools/kafka/pom.xml`` (``make kafka-jars``); nothing is
downloaded here. Each start formats fresh storage in a temporary directory (removed on stop), listens
on a free loopback port (the controller on another), and writes the broker's log to ``log_path`` (or
``<that directory>.log`` beside it, removed on stop too but kept when the start fails: the error names
it). Settings fit for tests: replication factor 1 for the internal topics,
no initial rebalance delay, a log cleaner that runs every few hundred milliseconds, and no topic
auto-creation (as in production).

Example::

    broker = await start_kafka_broker()
    ...  # use broker.bootstrap, as with the Tansu broker of bridge.local.broker
    await broker.stop()
"""

from __future__ import annotations

import asyncio
import atexit
import base64
import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from aiokafka import AIOKafkaClient
from aiokafka.errors import KafkaError

from bridge.local.broker import RunningBroker, free_port, wait_accepting

JARS_ENV = "BRIDGE_KAFKA_JARS"
JAVA_ENV = "BRIDGE_KAFKA_JAVA"
# tools/kafka/lib beside the package's source tree (an editable install, as in development and CI)
DEFAULT_JARS = Path(__file__).resolve().parents[2] / "tools" / "kafka" / "lib"
HEAP = "-Xmx512m"
# For brokers that live a few minutes (the tests): the client compiler only and the serial collector
# take about half the CPU of the defaults to start and to idle (measured: 5.5 s against 10.7 s for a
# start, storage formatting included). Not for benchmarks: peak throughput wants the defaults.
SHORT_LIVED_JVM = ("-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
START_TIMEOUT_S = 90.0

BROKER_SETTINGS = {
    "process.roles": "broker,controller",
    "node.id": "1",
    "controller.listener.names": "CONTROLLER",
    "inter.broker.listener.name": "PLAINTEXT",
    "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
    "num.partitions": "1",
    "default.replication.factor": "1",
    "min.insync.replicas": "1",
    "offsets.topic.replication.factor": "1",
    "offsets.topic.num.partitions": "4",
    "transaction.state.log.replication.factor": "1",
    "transaction.state.log.min.isr": "1",
    "transaction.state.log.num.partitions": "4",
    "share.coordinator.state.topic.replication.factor": "1",
    "share.coordinator.state.topic.min.isr": "1",
    "group.initial.rebalance.delay.ms": "0",
    "auto.create.topics.enable": "false",
    # compaction observable within a test: the cleaner wakes often, and rolls small segments
    "log.cleaner.backoff.ms": "200",
    "log.cleaner.min.compaction.lag.ms": "0",
    "log.cleaner.min.cleanable.ratio": "0.01",
    "log.cleaner.threads": "1",
    "log.cleaner.dedupe.buffer.size": "16777216",
    "log.retention.check.interval.ms": "1000",
    # the broker's own short waits, so that a test's clients do not sit on defaults meant for clusters
    "group.min.session.timeout.ms": "1000",
    "num.network.threads": "2",
    "num.io.threads": "2",
    "background.threads": "2",
}

LOG4J2 = """\
status = warn
appender.file.type = File
appender.file.name = file
appender.file.fileName = {log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = INFO
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaUnavailable(RuntimeError):
    """Java or the broker's jars are missing: the message says how to get them."""


@dataclass
class RunningKafka(RunningBroker):
    """A started Kafka broker; ``workdir`` (storage, config, log) is removed when it stops (``stop()``,
    ``kill()``), not when its process dies otherwise: ``restart()`` then starts it again on the same
    port and log directory, with its data."""

    workdir: Path | None = None
    find_coordinator: bool = True  # False behind a proxy that is not up yet (see start_kafka_broker)
    own_log: bool = False  # the log is ours (no log_path given): removed with the workdir

    async def wait_serving(self) -> None:
        assert self.log_path is not None
        await _wait_ready(self, self.log_path, find_coordinator=self.find_coordinator)

    async def stop(self) -> None:
        await super().stop()
        self._remove_workdir()

    def kill(self) -> None:
        super().kill()
        self._remove_workdir()

    def _remove_workdir(self, *, keep_log: bool = False) -> None:
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        if self.own_log and not keep_log and self.log_path is not None:
            self.log_path.unlink(missing_ok=True)


def kafka_jars() -> Path:
    jars = Path(os.environ.get(JARS_ENV) or DEFAULT_JARS)
    if not any(jars.glob("kafka_2.13-*.jar")):
        raise KafkaUnavailable(f"no Kafka broker jars in {jars}: run `make kafka-jars` (needs mvn)")
    return jars


def java_binary() -> str:
    java = shutil.which(os.environ.get(JAVA_ENV) or "java")
    if not java:
        raise KafkaUnavailable("no `java` found: the Kafka broker needs Java 17 or newer on PATH")
    return java


def kafka_available() -> str | None:
    """None when a Kafka broker can be started here, else the one line that says what is missing."""
    try:
        java_binary()
        kafka_jars()
    except KafkaUnavailable as exc:
        return str(exc)
    return None


def cluster_id() -> str:
    """A KRaft cluster id: 16 random bytes, URL-safe base64 without padding (the storage tool's form).

    Never one that starts with "-" (1 start in 64 otherwise): the storage tool reads ``-t -xyz`` as a
    missing id and an unknown option, and exits 1. Kafka's own ``Uuid.randomUuid`` skips those too."""
    while (found := base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()).startswith("-"):
        pass
    return found


def server_properties(workdir: Path, port: int, controller_port: int, advertised_port: int) -> str:
    settings = {
        **BROKER_SETTINGS,
        "listeners": f"PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://127.0.0.1:{advertised_port}",
        "controller.quorum.bootstrap.servers": f"127.0.0.1:{controller_port}",
        "log.dirs": str(workdir / "data"),
    }
    return "".join(f"{key}={value}\n" for key, value in settings.items())


async def start_kafka_broker(
    port: int = 0,
    log_path: Path | None = None,
    advertised_port: int | None = None,
    jvm_options: Sequence[str] = (),
) -> RunningKafka:
    """Format storage and start the broker; returns once it serves metadata and group coordination.

    ``advertised_port`` lets clients reach the broker through a proxy (fault-injection tests);
    ``jvm_options`` go to both JVMs (``SHORT_LIVED_JVM`` for tests).
    """
    java, jars = java_binary(), kafka_jars()
    port = port or free_port()
    controller_port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="bridge-kafka-"))
    log = log_path or workdir.with_suffix(".log")  # beside the workdir: kept when the start fails
    config = workdir / "server.properties"
    config.write_text(server_properties(workdir, port, controller_port, advertised_port or port))
    (workdir / "log4j2.properties").write_text(LOG4J2.format(log=log))
    classpath = f"{jars}/*"
    jvm = [
        java,
        HEAP,
        *jvm_options,
        f"-Dlog4j2.configurationFile={workdir / 'log4j2.properties'}",
        "-cp",
        classpath,
    ]
    try:
        with log.open("ab") as out:
            fmt = [
                *jvm,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id(),
                "-c",
                str(config),
            ]
            done = await asyncio.to_thread(subprocess.run, fmt, stdout=out, stderr=out, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"formatting Kafka storage failed (exit {done.returncode}); see {log}")
            argv = [*jvm, "-Xms128m", "kafka.Kafka", str(config)]
            process = subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once; we never wait on it here
                argv,
                stdout=out,
                stderr=out,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    # through a proxy that is not up yet, only the bootstrap address answers: wait for metadata alone
    find_coordinator = advertised_port in (None, port)
    broker = RunningKafka(process, port, argv, None, log, workdir, find_coordinator, own_log=log_path is None)
    atexit.register(_kill_and_remove, broker)
    try:
        await broker.wait_serving()
    except BaseException:
        await RunningBroker.stop(broker)
        broker._remove_workdir(keep_log=True)  # the error names the log: it says why
        raise
    return broker


def _kill_and_remove(broker: RunningKafka) -> None:
    if broker.process.poll() is None:
        broker.process.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            broker.process.wait(10)
    broker._remove_workdir()


async def _wait_ready(
    broker: RunningKafka, log: Path, *, find_coordinator: bool, timeout_s: float = START_TIMEOUT_S
) -> None:
    """Metadata answered and the group coordinator found (which creates ``__consumer_offsets``)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: BaseException | None = None
    while loop.time() < deadline:
        try:
            await wait_accepting(broker.process, broker.port, deadline, interval_s=0.1)
        except RuntimeError as exc:  # the process exited
            raise RuntimeError(f"Kafka {exc}; see {log}") from None
        except TimeoutError as exc:
            last = exc
            break
        client = AIOKafkaClient(bootstrap_servers=f"127.0.0.1:{broker.port}", request_timeout_ms=5000)
        try:
            await client.bootstrap()
            if find_coordinator:
                await client.coordinator_lookup(0, "bridge-kafka-ready")  # 0: a group coordinator
            return
        except (KafkaError, OSError, AssertionError) as exc:
            last = exc
            await asyncio.sleep(0.2)
        finally:
            await client.close()
    raise RuntimeError(f"Kafka broker not ready within {timeout_s:.0f}s ({last!r}); see {log}")
