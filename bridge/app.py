"""Composition root: build every part from settings, run until stopped, shut down in order.

Shutdown order: stop fetching -> drain in-flight work (grace) -> commit -> leave the group (at once,
so that the others rebalance while this process finishes) -> flush the producer -> close HTTP.
``Bridge.request_stop`` only flips state, so a signal handler may call it.

Example::

    bridge = Bridge(load_settings(path))
    await bridge.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from typing import TypeVar

import aiohttp
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from bridge.config.loading import secret_values
from bridge.config.settings import Settings
from bridge.errors import StartupError
from bridge.http import AiohttpTransport
from bridge.kafka.clients import make_consumer, make_producer, settle_before_cancel, stop_client
from bridge.kafka.delivery import resolved_delivery
from bridge.kafka.engine import Engine
from bridge.kafka.options import security_options
from bridge.kafka.partitions import Partition
from bridge.kafka.topics import missing_topics
from bridge.kafka.transactions import Transactions
from bridge.ledger.startup import verify_partitions
from bridge.ledger.store import Ledger, Recall
from bridge.observability import repeats, tracing
from bridge.observability.health import (
    Readiness,
    build_health_app,
    degraded,
    judge_readiness,
)
from bridge.observability.loop_lag import watch_loop_lag
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.parking.state import Parking
from bridge.parking.wiring import partition_state, replaying
from bridge.pipeline.bulkheads import TargetLoad, target_troubles
from bridge.pipeline.calls import CallsInFlight
from bridge.pipeline.executor import Executor, TargetRuntime
from bridge.pipeline.guards import CIRCUIT_GAUGE_VALUE, CircuitBreaker, CircuitState, TokenBucket
from bridge.pipeline.processor import Processor
from bridge.providers.catalog import CATALOG
from bridge.providers.oauth import ssl_context_for
from bridge.status.admin import start_admin
from bridge.status.live import OwnerView
from bridge.tracking.tracker import Tracker
from bridge.waits import within

log = logging.getLogger("bridge.app")
KafkaClient = TypeVar("KafkaClient", AIOKafkaConsumer, AIOKafkaProducer)


def build_targets(
    settings: Settings, session: aiohttp.ClientSession, metrics: Metrics
) -> dict[str, TargetRuntime]:
    targets = {}
    for name, target in settings.targets.items():
        share = target.bulkhead.max_in_flight or max(1, settings.engine.max_in_flight // 2)
        c = target.circuit
        calls = target.bulkhead.max_calls or share
        load = TargetLoad(name, share, calls, c.silent_s, c.max_unanswered)

        def on_refresh(ok: bool, name: str = name) -> None:
            metrics.token_refresh(name, ok)

        def on_circuit(state: CircuitState, name: str = name, load: TargetLoad = load) -> None:
            metrics.circuit(name, CIRCUIT_GAUGE_VALUE[state])
            load.circuit_changed(state is CircuitState.CLOSED)
            log.warning("circuit for target %s is now %s", name, state.value, extra={"target": name})

        tls = ssl_context_for(target.ca_file)  # the target's CA bundle, loaded once for all its calls
        provider = CATALOG.build(name, target, session, on_token_refresh=on_refresh, ssl_context=tls)
        targets[name] = TargetRuntime(
            name=name,
            settings=target,
            provider=provider,
            breaker=CircuitBreaker(target.circuit, on_change=on_circuit),
            bucket=TokenBucket(target.rate_limit),
            ssl=tls,
            load=load,
        )
        metrics.circuit(name, 0)
        metrics.unknown_outcome_target(name)
        if CATALOG.spec(target.provider).uses_tokens:
            metrics.token_target(name)
    return targets


class Bridge:
    def __init__(self, settings: Settings, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.metrics = metrics or Metrics()
        self.redactor = Redactor(secret_values(settings))
        self.engine: Engine | None = None
        self._targets: dict[str, TargetRuntime] = {}
        self._ledger: Ledger | None = None  # once started: the admin listener asks it about ids
        self._stop = asyncio.Event()
        self.health_port: int | None = None
        self.admin_port: int | None = None
        self.calls = CallsInFlight()

    def request_stop(self) -> None:
        self._stop.set()
        if self.engine is not None:
            self.engine.request_stop()

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)

    def readiness(self) -> Readiness:
        if self.engine is None:
            return Readiness(False, "connecting to the Kafka broker")
        verdict = judge_readiness(
            self.engine.stats, time.monotonic(), self.settings.observability.stall_after_s
        )
        troubles = target_troubles(self._targets.values())
        return degraded(verdict, troubles, parking=self.settings.parking.enabled)

    async def _readiness_routine(self) -> None:
        """Keep bridge_ready current between probes and log every change, with its reason."""
        was: bool | None = None
        while True:
            verdict = self.readiness()
            self.metrics.ready(verdict.ready)
            if verdict.ready != was and (was is not None or not verdict.ready):
                level = logging.INFO if verdict.ready else logging.WARNING
                log.log(
                    level, "readiness: %s (%s)", "ready" if verdict.ready else "NOT ready", verdict.reason
                )
            was = verdict.ready
            await asyncio.sleep(1.0)

    async def run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(repeats.uninstall, repeats.install())  # the client's repeats, collapsed
            await stack.enter_async_context(tracing.started(self.settings))  # closed last: flushes spans
            await self._start_health(stack)
            await self._start_admin(stack)
            watcher = asyncio.create_task(self._readiness_routine(), name="readiness")
            stack.push_async_callback(_cancel, watcher)
            lag = asyncio.create_task(watch_loop_lag(self.metrics.loop_lag), name="loop-lag")
            stack.push_async_callback(_cancel, lag)
            pool = self.settings.http.max_connections or self.settings.engine.max_in_flight
            connector = aiohttp.TCPConnector(
                limit=pool, limit_per_host=self.settings.http.max_connections_per_host
            )
            session = await stack.enter_async_context(aiohttp.ClientSession(connector=connector))
            targets = build_targets(self.settings, session, self.metrics)
            executor = Executor(
                AiohttpTransport(session),
                self.metrics,
                self.redactor,
                self.settings.engine.max_error_body_bytes,
                calls=self.calls,
            )
            producer = await self._start_client(lambda: make_producer(self.settings.kafka), "producer")
            if producer is None:
                return
            stack.push_async_callback(self._stop_client, producer, "producer")
            self.settings = await resolved_delivery(self.settings)  # ConfigError: transactions on, none here
            transactional = self.settings.kafka.transactions == "on"
            transactions = Transactions(self.settings.kafka, self.metrics) if transactional else None
            together = transactions.publish if transactions is not None else None
            tracker = Tracker(
                self.settings, targets, executor, producer, self.metrics, self.redactor, together=together
            )
            await self._verify_topics()
            await verify_partitions(self.settings)  # the ledger and parking topics: a ConfigError when not
            ledger = self._ledger = await self._start_ledger(producer, tracker)
            if ledger is not None:
                stack.push_async_callback(ledger.close)  # the local stores, after the engine stopped
                await stack.enter_async_context(tracker.running())  # stopped before the producer
            track = tracker.start if ledger is not None else None
            loads = {name: runtime.load for name, runtime in targets.items() if runtime.load is not None}
            parking = Parking(self.settings, self.metrics) if self.settings.parking.enabled else None
            if parking is not None:
                parking.recovery.watch(targets)
            processor = Processor(
                self.settings,
                targets,
                executor,
                self.metrics,
                ledger,
                track=track,
                loads=loads,
                parking=parking,
            )
            self._targets = targets
            consumer = await self._start_client(
                lambda: make_consumer(self.settings.kafka, self.settings.engine.drain_grace_s), "consumer"
            )
            if consumer is None:
                return
            stack.push_async_callback(self._stop_client, consumer, "consumer")
            self.engine = Engine(
                consumer,
                producer,
                processor.process,
                processor.command_topics,
                self.settings.engine,
                self.metrics,
                partition_state(ledger, parking),
                processor.bulkheads,
                transactions,
            )
            if self._stop.is_set():
                self.engine.request_stop()
            log.info("bridge running: topics=%s targets=%s", list(processor.command_topics), sorted(targets))
            home = self.engine.partition
            async with replaying(self.settings, parking, processor.replay, producer, self.metrics, home):
                await self.engine.run()

    async def _start_ledger(self, producer: AIOKafkaProducer, tracker: Tracker) -> Ledger | None:
        """The command ledger; the tracked workflows live in it too, so tracking is off without it."""
        if not self.settings.ledger.enabled:
            log.warning("the command ledger is off: a redelivered command calls its provider again")
            log.warning("tracking needs the ledger: no lifecycle events")
            return None
        return Ledger(self.settings, producer, self.metrics, sibling=tracker)

    async def _verify_topics(self) -> None:
        """A StartupError naming the command, outcome, dead-letter or lifecycle topics that do not exist.

        The ledger and parking topics are checked with their partition counts (verify_partitions).
        """
        kafka, topics = self.settings.kafka, self.settings.topics
        lifecycle = [topics.lifecycle] if self.settings.ledger.enabled else []  # tracking needs the ledger
        wanted = [*topics.routes, *topics.results, *lifecycle]
        try:
            missing = await missing_topics(kafka.bootstrap_servers, wanted, security_options(kafka.security))
        except KafkaError as exc:
            raise StartupError(f"cannot list the topics on {kafka.bootstrap_servers}: {exc}") from None
        if missing:
            raise StartupError(
                f"topic(s) {', '.join(missing)} do not exist on {kafka.bootstrap_servers}: "
                "create them with `bridge topics apply --config <this config>`"
            )

    async def _start_client(self, make: Callable[[], KafkaClient], name: str) -> KafkaClient | None:
        """Connect, retrying with backoff while the broker is unreachable. None if stopped first.

        After ``kafka.startup_timeout_s`` without a connection: a StartupError.
        """
        delay, bound = 0.5, self.settings.kafka.startup_timeout_s
        loop = asyncio.get_running_loop()
        deadline = None if bound is None else loop.time() + bound
        while not self._stop.is_set():
            client = make()  # a client whose start() failed is not reused
            try:
                await settle_before_cancel(client.start())
                return client
            except KafkaError as exc:
                await self._stop_client(client, name)
                if deadline is not None and loop.time() + delay > deadline:
                    where = self.settings.kafka.bootstrap_servers
                    raise StartupError(
                        f"cannot reach the Kafka broker at {where} within {bound:g}s "
                        f"(kafka.startup_timeout_s): {type(exc).__name__}"
                    ) from None
                log.warning("kafka %s cannot connect (%s); retrying in %.1fs", name, exc, delay)
            except BaseException:  # stopped (cancelled) while connecting: what it opened is closed
                await self._stop_client(client, name)
                raise
            await within(self._stop.wait(), delay)
            delay = min(delay * 2, 10.0)
        return None

    @staticmethod
    async def _stop_client(client: AIOKafkaConsumer | AIOKafkaProducer, name: str) -> None:
        try:
            await stop_client(client)
        except (KafkaError, OSError) as exc:
            log.warning("kafka %s did not stop cleanly: %s", name, exc)

    async def _start_health(self, stack: contextlib.AsyncExitStack) -> None:
        obs = self.settings.observability
        if obs.port is None:
            return
        runner = web.AppRunner(build_health_app(self.metrics, self.readiness), access_log=None)
        await runner.setup()
        stack.push_async_callback(runner.cleanup)
        site = web.TCPSite(runner, obs.host, obs.port)
        try:
            await site.start()
        except OSError as exc:
            raise StartupError(
                f"cannot serve health and metrics on {obs.host}:{obs.port} (observability.port): "
                f"{os.strerror(exc.errno) if exc.errno else exc}"
            ) from None
        self.health_port = runner.addresses[0][1] if runner.addresses else obs.port
        log.info("health and metrics on %s:%s", obs.host, self.health_port)

    async def _start_admin(self, stack: contextlib.AsyncExitStack) -> None:
        """``GET /v1/commands/{id}`` (bridge/status/admin.py); a ConfigError when it cannot start."""
        admin = self.settings.admin
        if admin.port is None:
            return
        member = self.settings.kafka.group_instance_id or f"{socket.gethostname()}:{os.getpid()}"
        owner = OwnerView(member, self._owned, lambda: self._targets, self.calls, self._recall)
        runner, self.admin_port = await start_admin(self.settings, owner)
        stack.push_async_callback(runner.cleanup)
        log.info("admin listener (GET /v1/commands/{id}) on %s:%s", admin.host, self.admin_port)

    def _recall(self, topic: str, partition: int, command_id: str) -> Recall | None:
        return self._ledger.recall(topic, partition, command_id) if self._ledger is not None else None

    def _owned(self, topic: str, partition: int) -> Partition | None:
        return self.engine.partition(topic, partition) if self.engine is not None else None


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
