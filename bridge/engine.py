"""The delivery engine: key-ordered concurrency over a consumer group with manual commits.

- Records with the same key run strictly in order; different keys of one partition run concurrently.
- At most ``max_in_flight`` records are held; fetching pauses at the limit (bounded memory).
- An offset is committed only when the outcome (or dead letter) of it and of every earlier offset of
  its partition has been acknowledged by the broker.
- On revocation and on stop: no new work starts, in-flight work gets ``drain_grace_s`` to finish,
  what is done is committed, the rest is abandoned and will be redelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from bridge.metrics import Metrics
from bridge.offsets import OffsetTracker
from bridge.partition_state import PartitionState, Restores
from bridge.processor import Incoming, Outgoing
from bridge.settings import EngineSettings

log = logging.getLogger("bridge.engine")

Handler = Callable[[Incoming], Awaitable[Outgoing]]
BROKER_PROBE_INTERVAL_S = 5.0
BROKER_PROBE_TIMEOUT_S = 5.0


@dataclass(eq=False)
class _Partition:
    tp: TopicPartition
    tracker: OffsetTracker = field(default_factory=OffsetTracker)
    keys: dict[bytes, deque[Incoming]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    committed: int | None = None
    first_seen: int | None = None
    closing: bool = False
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once the partition's state is restored


@dataclass
class EngineStats:
    """Progress counters for health checks and tests."""

    accepted: int = 0
    finished: int = 0
    commits: int = 0
    last_commit_at: float = 0.0
    last_progress_at: float = field(default_factory=time.monotonic)
    assigned: frozenset[TopicPartition] = frozenset()
    broker_ok: bool = False
    lag: int = 0
    in_flight: int = 0  # accepted and not finished: the engine's own count, read by readiness
    publish_error: str | None = None
    drained: int = 0  # key routines waited for at revocations and shutdown
    restoring: int = 0  # assigned partitions whose state is still being restored


class Engine:
    def __init__(
        self,
        consumer: AIOKafkaConsumer,
        producer: AIOKafkaProducer,
        handler: Handler,
        topics: Mapping[str, str],
        settings: EngineSettings,
        metrics: Metrics,
        state: PartitionState | None = None,
    ) -> None:
        self._consumer = consumer
        self._producer = producer
        self._handler = handler
        self._families = dict(topics)  # topic -> family label
        self._settings = settings
        self._metrics = metrics
        self._partitions: dict[TopicPartition, _Partition] = {}
        self._capacity = asyncio.Event()
        self._stopping = asyncio.Event()
        self._paused = False
        self._commit_lock = asyncio.Lock()
        self.stats = EngineStats()
        self._restores = Restores(state, self.stats) if state is not None else None
        metrics.max_in_flight.set(settings.max_in_flight)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True while fetching is paused because ``max_in_flight`` commands are held."""
        return self._paused

    def request_stop(self) -> None:
        """Signal-safe: stop fetching and drain. Idempotent."""
        self._stopping.set()

    async def run(self) -> None:
        self._consumer.subscribe(list(self._families), listener=_Listener(self))
        next_commit = time.monotonic() + self._settings.commit_interval_s
        self.stats.broker_ok = True  # the clients started, so the broker answered a moment ago
        probe = asyncio.create_task(self._broker_probe_routine(), name="broker-probe")
        try:
            while not self._stopping.is_set():
                await self._fetch_once()
                if time.monotonic() >= next_commit:
                    await self.commit()
                    self.update_gauges()
                    next_commit = time.monotonic() + self._settings.commit_interval_s
        finally:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
            await self._drain(list(self._partitions.values()))
            if self._restores is not None:
                await self._restores.cancel()
            await self.commit()
            log.info(
                "engine stopped: accepted=%d finished=%d commits=%d",
                self.stats.accepted,
                self.stats.finished,
                self.stats.commits,
            )

    async def _fetch_once(self) -> None:
        room = self._settings.max_in_flight - self.stats.in_flight
        self._set_paused(room <= 0)
        if room <= 0:
            self._capacity.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._capacity.wait(), timeout=0.2)
            # getmany keeps the group membership alive (max_poll_interval) while paused
            await self._consumer.getmany(timeout_ms=0)
            return
        try:
            batch = await self._consumer.getmany(timeout_ms=100, max_records=room)
        except KafkaError as exc:
            log.warning("fetch failed, retrying: %s", exc)
            await asyncio.sleep(1.0)
            return
        for tp, records in batch.items():
            partition = self._partitions.get(tp)
            if partition is None or partition.closing:
                continue  # revoked while the batch was in our hands: the new owner will read it
            for record in records:
                self._accept(partition, _incoming(record))

    async def _broker_probe_routine(self) -> None:
        """Ask the cluster for metadata now and then: getmany() stays silent when the broker is gone."""
        while True:
            await asyncio.sleep(BROKER_PROBE_INTERVAL_S)
            try:
                await asyncio.wait_for(self._consumer.topics(), BROKER_PROBE_TIMEOUT_S)
            except (KafkaError, OSError, TimeoutError) as exc:
                if self.stats.broker_ok:
                    log.warning("the Kafka broker does not answer (%s)", type(exc).__name__)
                self.stats.broker_ok = False
            else:
                if not self.stats.broker_ok:
                    log.info("the Kafka broker answers again")
                self.stats.broker_ok = True

    def _set_paused(self, paused: bool) -> None:
        assigned = self._consumer.assignment()
        if paused:
            self._consumer.pause(*assigned)
        elif self._paused:
            self._consumer.resume(*assigned)
        self._paused = paused

    # -- scheduling ------------------------------------------------------------------------------

    def _accept(self, partition: _Partition, record: Incoming) -> None:
        ts = record.timestamp_ms / 1000 if record.timestamp_ms and record.timestamp_ms > 0 else time.time()
        partition.tracker.add(record.offset, ts)
        if partition.first_seen is None:
            partition.first_seen = record.offset
        self.stats.in_flight += 1
        self.stats.accepted += 1
        self._metrics.in_flight.set(self.stats.in_flight)
        if record.key is None:  # no key, no ordering promise: run it on its own
            self._spawn(partition, deque([record]), None)
            return
        queue = partition.keys.get(record.key)
        if queue is not None:
            queue.append(record)
            return
        queue = deque([record])
        partition.keys[record.key] = queue
        self._spawn(partition, queue, record.key)

    def _spawn(self, partition: _Partition, queue: deque[Incoming], key: bytes | None) -> None:
        task = asyncio.create_task(self._key_routine(partition, queue, key), name=f"key:{partition.tp}")
        partition.tasks.add(task)
        task.add_done_callback(partition.tasks.discard)
        task.add_done_callback(_log_crash)

    async def _key_routine(self, partition: _Partition, queue: deque[Incoming], key: bytes | None) -> None:
        try:
            await partition.ready.wait()
            while queue and not partition.closing and not self._stopping.is_set():
                record = queue[0]
                outgoing = await self._handler(record)
                if not outgoing.skip:
                    await self._publish(outgoing)
                for extra in outgoing.then:  # the ledger's entry: acknowledged before the offset is committed
                    await self._publish(extra)
                queue.popleft()
                self._finish(partition, record)
        finally:
            if key is not None and partition.keys.get(key) is queue:
                del partition.keys[key]
            if queue:  # abandoned: the records stay uncommitted and will be redelivered
                self._release(len(queue))

    def _finish(self, partition: _Partition, record: Incoming) -> None:
        partition.tracker.done(record.offset)
        self.stats.finished += 1
        self.stats.last_progress_at = time.monotonic()
        self._metrics.last_progress.set(time.time())
        if record.timestamp_ms and record.timestamp_ms > 0:
            family = self._families.get(record.topic, "unknown")
            self._metrics.child(self._metrics.command_latency, family).observe(
                max(0.0, time.time() - record.timestamp_ms / 1000)
            )
        self._release(1)

    def _release(self, count: int) -> None:
        self.stats.in_flight -= count
        self._metrics.in_flight.set(self.stats.in_flight)
        self._capacity.set()

    async def _publish(self, outgoing: Outgoing) -> None:
        """Publish until the broker acknowledges; a failing broker is retried, never skipped."""
        while True:
            try:
                future = await self._producer.send(
                    outgoing.topic,
                    value=outgoing.value,
                    key=outgoing.key,
                    headers=outgoing.headers,
                    partition=outgoing.partition,
                )
                await future
            except KafkaError as exc:
                self.stats.publish_error = f"{type(exc).__name__}: {exc}"[:200]
                self._metrics.publish_failures.inc()
                log.warning("publish to %s failed, will retry: %s", outgoing.topic, exc)
                await asyncio.sleep(self._settings.publish_retry_backoff_s)
                continue
            self.stats.publish_error = None
            self._count(outgoing)
            return

    def _count(self, outgoing: Outgoing) -> None:
        if outgoing.outcome is not None:
            self._metrics.child(self._metrics.outcomes, *outgoing.labels).inc()
        elif outgoing.dead_letter is not None:
            self._metrics.child(self._metrics.dead_letters, outgoing.dead_letter.reason.value).inc()

    # -- commits and rebalances ------------------------------------------------------------------

    async def commit(self, partitions: Iterable[_Partition] | None = None) -> None:
        chosen = list(self._partitions.values()) if partitions is None else list(partitions)
        offsets = {
            p.tp: p.tracker.committable()
            for p in chosen
            if p.tracker.committable() is not None and p.tracker.committable() != p.committed
        }
        if not offsets:
            return
        async with self._commit_lock:
            try:
                await self._consumer.commit(offsets)
            except (CommitFailedError, KafkaError) as exc:
                self._metrics.commits.labels("failed").inc()
                log.warning("commit failed (will retry on the next interval): %s", exc)
                return
        for p in chosen:
            if p.tp in offsets:
                p.committed = offsets[p.tp]
        self._metrics.commits.labels("ok").inc()
        self.stats.commits += 1
        self.stats.last_commit_at = time.monotonic()

    def update_gauges(self) -> None:
        total = 0
        for p in self._partitions.values():
            highwater = self._consumer.highwater(p.tp)
            base = p.committed if p.committed is not None else p.first_seen
            if highwater is not None and base is not None:
                lag = max(0, highwater - base)
                total += lag
                self._metrics.consumer_lag.labels(p.tp.topic, str(p.tp.partition)).set(lag)
        self.stats.lag = total
        self._metrics.oldest_uncommitted_age.set(self.oldest_uncommitted_age_s())

    async def _drain(self, partitions: list[_Partition]) -> None:
        """Let in-flight work finish within the grace period, then abandon the rest."""
        for p in partitions:
            p.closing = True
            p.ready.set()  # a key routine still waiting for the restore leaves at once
        tasks = [t for p in partitions for t in p.tasks]
        self.stats.drained += len(tasks)
        if tasks:
            log.info(
                "draining %d in-flight command(s) for up to %.1fs", len(tasks), self._settings.drain_grace_s
            )
            _, pending = await asyncio.wait(tasks, timeout=self._settings.drain_grace_s)
            for task in pending:
                task.cancel()
            if pending:
                log.warning(
                    "abandoned %d command(s) after the grace period; they will be redelivered", len(pending)
                )
                await asyncio.wait(pending)

    async def on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        partitions = [p for tp in revoked if (p := self._partitions.get(tp)) is not None]
        await self._drain(partitions)
        await self.commit(partitions)
        if self._restores is not None:
            self._restores.state.forget([p.tp for p in partitions])
        for p in partitions:
            self._partitions.pop(p.tp, None)
            with contextlib.suppress(KeyError):  # a revoked partition's lag is its new owner's to report
                self._metrics.consumer_lag.remove(p.tp.topic, str(p.tp.partition))
        self.stats.assigned = frozenset(self._partitions)
        self._metrics.assigned_partitions.set(len(self._partitions))

    def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        new = [tp for tp in assigned if tp not in self._partitions]
        for tp in new:
            self._partitions[tp] = _Partition(tp)
        ready = {tp: self._partitions[tp].ready for tp in new}
        if self._restores is not None:
            self._restores.start(ready)  # records of these partitions are fetched but wait until then
        else:
            for event in ready.values():
                event.set()
        self.stats.assigned = frozenset(self._partitions)
        self._metrics.assigned_partitions.set(len(self._partitions))
        if self._paused:
            self._consumer.pause(*assigned)

    def oldest_uncommitted_age_s(self) -> float:
        starts = [s for p in self._partitions.values() if (s := p.tracker.oldest_pending_since()) is not None]
        return max(0.0, time.time() - min(starts)) if starts else 0.0

    def committed_offsets(self) -> dict[TopicPartition, int | None]:
        return {tp: p.committed for tp, p in self._partitions.items()}


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self._engine.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self._engine.on_assigned(assigned)


def _incoming(record: Any) -> Incoming:
    return Incoming(
        topic=record.topic,
        partition=record.partition,
        offset=record.offset,
        key=record.key,
        value=record.value,
        headers=tuple(record.headers or ()),
        timestamp_ms=record.timestamp,
    )


def _log_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("key routine crashed", exc_info=task.exception())
