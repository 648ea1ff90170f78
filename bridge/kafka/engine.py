"""The delivery engine: key-ordered concurrency over a consumer group with manual commits.

- Records with the same key run strictly in order; different keys of one partition run concurrently.
- At most ``max_in_flight`` records are held; fetching pauses at the limit (bounded memory).
- An offset is committed only when the outcome (or dead letter) of it and of every earlier offset of
  its partition has been acknowledged by the broker.
- On revocation and on stop: nothing more is fetched; every record below the highest offset already
  started is still run (queued records of a key included), so that the commit covers everything
  answered; records above it are abandoned at once. All of that within ``drain_grace_s``; what is
  still running then is cancelled, and everything uncommitted is redelivered to the next owner.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError

from bridge.config.settings import EngineSettings
from bridge.kafka.drain import drain
from bridge.kafka.fence import Fenced, confirm_owner, member_generation
from bridge.kafka.fetch import Fetcher
from bridge.kafka.offsets import may_start
from bridge.kafka.ownership import Ownership
from bridge.kafka.partitions import Partition, Rebalances, oldest_pending_age, to_commit, topic_name
from bridge.kafka.ports import ConsumedRecord, ConsumerPort, ProducerPort
from bridge.kafka.probe import probe_broker
from bridge.kafka.publisher import Publisher
from bridge.kafka.records import TargetShares, incoming_from, timing_header
from bridge.kafka.restores import PartitionState, Restores
from bridge.kafka.stats import EngineStats
from bridge.kafka.transactions import Transactions
from bridge.messages.records import Incoming, Outgoing
from bridge.observability.metrics import Metrics
from bridge.observability.repeats import COLLAPSE
from bridge.waits import log_crash

log = logging.getLogger("bridge.engine")

Handler = Callable[[Incoming], Awaitable[Outgoing]]


class Engine:
    def __init__(
        self,
        consumer: ConsumerPort,
        producer: ProducerPort,
        handler: Handler,
        topics: Mapping[str, str],
        settings: EngineSettings,
        metrics: Metrics,
        state: PartitionState | None = None,
        shares: TargetShares | None = None,
        transactions: Transactions | None = None,
    ) -> None:
        self._consumer = consumer
        self._handler = handler
        self._families = dict(topics)  # topic -> family label
        self._settings = settings
        self._metrics = metrics
        self._partitions: dict[TopicPartition, Partition] = {}
        self._fetcher = Fetcher(consumer, self._partitions)
        self._stopping = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self.stats = EngineStats()
        self._publisher = Publisher(producer, metrics, settings.publish_retry_backoff_s, self._publish_error)
        self._restores = Restores(state, self.stats) if state is not None else None
        self._shares = shares
        self._progress_at = 0.0  # time.time() of the last finished command
        # with transactions, a batch of finished commands and their offset commit together (transactions.py)
        self._txn = transactions
        self._background: set[asyncio.Task[None]] = set()  # opening partitions, resetting them
        self._reseek: list[tuple[TopicPartition, int]] = []  # partitions to read again, from these offsets
        if transactions is not None:
            transactions.bind(self._committed_together, self._transaction_failed)
        # without transactions, the broker confirms this member's generation (bridge/kafka/fence.py)
        ownership = Ownership(consumer, self._partitions, self._commit_lock, metrics)
        self._fence = None if transactions else ownership.fence
        # read when scraped, not written twice per command on the hot path
        metrics.watch_engine(lambda: self.stats.in_flight, lambda: self._progress_at, settings.max_in_flight)

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        """True while fetching is paused because ``max_in_flight`` commands are held."""
        return self._fetcher.paused

    def request_stop(self) -> None:
        """Signal-safe: stop fetching and drain. Idempotent."""
        if not self._stopping.is_set():
            log.info(
                "stop requested with %d key routine(s) holding %d command(s)",
                sum(len(p.tasks) for p in self._partitions.values()),
                self.stats.in_flight,
            )
        self._stopping.set()
        for p in self._partitions.values():  # at once: fetching may still be waiting for records
            p.close()

    async def run(self) -> None:
        self._consumer.subscribe(list(self._families), listener=Rebalances(self.on_revoked, self.on_assigned))
        next_commit = time.monotonic() + self._settings.commit_interval_s
        self.stats.broker_ok = True  # the clients started, so the broker answered a moment ago
        probe = asyncio.create_task(probe_broker(self._consumer, self.stats), name="broker-probe")
        try:
            while not self._stopping.is_set():
                await self._fetch_once()
                if self._reseek:
                    self._read_again()
                if time.monotonic() >= next_commit:
                    await self.commit()
                    self.update_gauges()
                    next_commit = time.monotonic() + self._settings.commit_interval_s
        finally:
            probe.cancel()
            await asyncio.gather(probe, return_exceptions=True)
            if self._fence is not None:
                await self._fence.close()
            for task in self._background:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            await self._drain(list(self._partitions.values()))
            if self._restores is not None:
                await self._restores.cancel()
            await self.commit(final=True)
            log.info(
                "engine stopped: accepted=%d finished=%d commits=%d",
                self.stats.accepted,
                self.stats.finished,
                self.stats.commits,
            )

    async def _fetch_once(self) -> None:
        records, fetched = await self._fetcher.fetch(self._settings.max_in_flight - self.stats.in_flight)
        self._accept_all(records, fetched)

    def _accept_all(self, records: Iterable[ConsumedRecord | Incoming], fetched: float) -> None:
        for record in records:
            partition = self._partitions.get(TopicPartition(record.topic, record.partition))
            if partition is None or partition.closing:
                continue  # revoked while the batch was in our hands: the new owner will read it
            if record.offset < partition.next_offset:
                continue  # the client re-read it (it rewinds after a decode error)
            partition.next_offset = record.offset + 1
            self._accept(
                partition, record if isinstance(record, Incoming) else incoming_from(record, fetched)
            )

    # -- scheduling ------------------------------------------------------------------------------

    def _accept(self, partition: Partition, record: Incoming) -> None:
        ts = record.timestamp_ms / 1000 if record.timestamp_ms and record.timestamp_ms > 0 else time.time()
        partition.tracker.add(record.offset, ts)
        if self._shares is not None:
            self._shares.accept(record)
        if partition.first_seen is None:
            partition.first_seen = record.offset
        self.stats.in_flight += 1
        self.stats.accepted += 1
        if record.key is None or (self._shares is not None and self._shares.out_of_turn(record)):
            # no key, no ordering promise; or parked at once (parking keeps the order): on its own
            self._spawn(partition, deque([record]), None)
            return
        queue = partition.keys.get(record.key)
        if queue is not None:
            queue.append(record)
            return
        queue = deque([record])
        partition.keys[record.key] = queue
        self._spawn(partition, queue, record.key)

    def _spawn(self, partition: Partition, queue: deque[Incoming], key: bytes | None) -> None:
        task = partition.adopt(self._key_routine(partition, queue, key), f"key:{partition.tp}")
        task.add_done_callback(log_crash(log, "key routine"))

    async def _key_routine(self, partition: Partition, queue: deque[Incoming], key: bytes | None) -> None:
        try:
            await partition.ready.wait()
            while queue and may_start(queue[0].offset, partition.drain_below) and not partition.fenced:
                record = queue[0]
                partition.started = max(partition.started, record.offset)
                started = time.time()
                outgoing = await self._handler(record)
                if self._fence is not None:
                    await confirm_owner()  # the answer is written only while the partition is ours
                if self._settings.timing_header:
                    outgoing.headers.append(timing_header(record.fetched_at, started))
                if self._txn is not None:  # published and committed with its batch (or given up)
                    partition.advance(queue, key)  # its answer is in the batch before any later one
                    together = () if outgoing.skip else (outgoing,)
                    committed = self._txn.add(partition, record, together + outgoing.then, urgent=bool(queue))
                    if committed is None:  # its transactions are closing or failed: it is read again
                        self._release(record)
                    # the key's next command (queued, or arriving meanwhile) starts once this one is
                    # committed: in order, and at most one command of a key in doubt after a crash
                    elif not await committed:
                        return  # aborted: the partition is read again; the rest of the queue is released
                    continue
                if not outgoing.skip:
                    await self._publisher.publish(outgoing)
                for extra in outgoing.then:  # the ledger's entry: acknowledged before the offset is committed
                    await self._publisher.publish(extra)
                # only now may a parked command of the key come back: its answer follows this one's
                partition.advance(queue, key)
                self._finish(partition, record)
        except Fenced:
            self._metrics.fenced("command")  # not answered here: the partition's next owner redoes it
        finally:
            if key is not None and partition.keys.get(key) is queue:
                partition.drop_key(key)
            if queue:  # abandoned: the records stay uncommitted and will be redelivered
                self._release(*queue)

    def _finish(self, partition: Partition, record: Incoming) -> None:
        partition.tracker.done(record.offset)
        self._finished(record)

    def _finished(self, record: Incoming) -> None:
        self.stats.finished += 1
        self.stats.last_progress_at = time.monotonic()
        self._progress_at = now = time.time()
        stamp = record.timestamp_ms
        if stamp and stamp > 0:
            self._metrics.command_latency(
                self._families.get(record.topic, "unknown"), max(0.0, now - stamp / 1000)
            )
        self._release(record)

    def _release(self, *records: Incoming) -> None:
        if self._shares is not None:
            for record in records:
                self._shares.release(record)
        self.stats.in_flight -= len(records)
        self._fetcher.capacity.set()

    def _publish_error(self, error: str | None) -> None:
        self.stats.publish_error = error

    # -- commits and rebalances ------------------------------------------------------------------

    async def commit(self, partitions: Iterable[Partition] | None = None, *, final: bool = False) -> None:
        """Commit what is committable; ``final``: the last chance before the partitions move."""
        chosen = list(self._partitions.values()) if partitions is None else list(partitions)
        if self._txn is not None:  # each partition's transactions commit its offsets
            if final:
                for p in chosen:
                    self._release(*await self._txn.close(p, flush=True))
            return
        offsets = to_commit(chosen)
        if not offsets:
            return
        async with self._commit_lock:
            try:
                await self._consumer.commit(offsets)
            except KafkaError as exc:  # CommitFailedError and IllegalStateError are KafkaErrors
                if isinstance(exc, CommitFailedError) and self._fence is not None:
                    self._fence.lose("an offset commit was refused: the group has moved on")
                self._commit_failed(offsets, exc, final)
                return
        for p in chosen:
            if p.tp in offsets:
                p.committed = offsets[p.tp]
        self._metrics.commit(ok=True)
        self.stats.commits += 1
        self.stats.last_commit_at = time.monotonic()

    def _commit_failed(self, offsets: Mapping[TopicPartition, int], exc: Exception, final: bool) -> None:
        self._metrics.commit(ok=False)
        if not final:
            log.warning("commit failed (will retry on the next interval): %s", exc, extra=COLLAPSE)
            return
        log.error(
            "final commit failed, the next owner will redo these partitions from their last commit: %s (%s)",
            ", ".join(f"{topic_name(tp)}@{offset}" for tp, offset in sorted(offsets.items())),
            exc,
        )

    def update_gauges(self) -> None:
        total = 0
        for p in self._partitions.values():
            lag = p.lag(self._consumer.highwater(p.tp))
            if lag is not None:
                total += lag
                self._metrics.lag(p.tp.topic, p.tp.partition, lag)
        self.stats.lag = total
        self._metrics.oldest_uncommitted(self.oldest_uncommitted_age_s())

    async def _drain(self, partitions: list[Partition]) -> None:
        self.stats.drained += await drain(partitions, self._settings.drain_grace_s)

    async def on_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        partitions = [p for tp in revoked if (p := self._partitions.get(tp)) is not None]
        if self._fence is not None and partitions and member_generation(self._consumer) == -1:
            self._fence.lose("a heartbeat was refused: the broker no longer knows this member")
        await self._drain(partitions)  # fenced ones at once: another member may own them already
        if not any(p.fenced for p in partitions):
            await self.commit(partitions, final=True)
        self._forget(partitions)

    def _forget(self, partitions: list[Partition]) -> None:
        if self._restores is not None:
            self._restores.state.forget([p.tp for p in partitions])
        for p in partitions:
            self._partitions.pop(p.tp, None)
            self._metrics.forget_partition(p.tp.topic, p.tp.partition)
        self.stats.assigned = frozenset(self._partitions)
        self._metrics.assigned(len(self._partitions))

    def on_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        assigned = sorted(assigned)
        log.info("assigned %d partition(s): %s", len(assigned), " ".join(map(topic_name, assigned)))
        new = [tp for tp in assigned if tp not in self._partitions]
        if self._fence is not None and new:
            self._fence.renew()
        for tp in new:
            self._partitions[tp] = Partition(tp, fence=self._fence)
        ready = {tp: self._partitions[tp].ready for tp in new}
        if self._stopping.is_set():
            # a rebalance while the member leaves: nothing of these runs here, so no restore or
            # producer starts that the stop, under way or already past them, would not wait for
            for tp in new:
                self._partitions[tp].close()
            log.info("stopping: %d newly assigned partition(s) left unopened", len(new))
        elif self._txn is not None:  # the partition's producer first: it fences the previous owner
            self._in_background(self._open_then_restore([self._partitions[tp] for tp in new], ready), "open")
        else:
            self._restore(ready)
        self.stats.assigned = frozenset(self._partitions)
        self._metrics.assigned(len(self._partitions))
        self._fetcher.pause_if_paused(list(assigned))

    def _restore(self, ready: dict[TopicPartition, asyncio.Event]) -> None:
        if self._restores is not None:
            self._restores.start(ready)  # records of these partitions are fetched but wait until then
        else:
            for event in ready.values():
                event.set()

    # -- transactions (kafka.transactions) -------------------------------------------------------

    def _in_background(self, work: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(work, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        task.add_done_callback(log_crash(log, name))

    async def _open_then_restore(
        self, partitions: list[Partition], ready: dict[TopicPartition, asyncio.Event]
    ) -> None:
        assert self._txn is not None
        for p in partitions:
            while self._current(p) and not self._txn.opened(p):
                try:
                    await self._txn.open(p, wanted=functools.partial(self._current, p))
                except Exception as exc:  # noqa: BLE001  not only KafkaError: after a broker outage
                    # aiokafka's producer start can fail an assertion ("Did we not perform bootstrap?")
                    # while its metadata is empty; the partition must not stay unopened for ever
                    log.warning(
                        "transactional producer for %s cannot start, retrying: %s: %s",
                        topic_name(p.tp),
                        type(exc).__name__,
                        exc,
                    )
                    await asyncio.sleep(1.0)
        self._restore(ready)

    def _current(self, p: Partition) -> bool:
        """``p`` is the partition's present assignment (not revoked, nor read again since)."""
        return self._partitions.get(p.tp) is p

    def _committed_together(self, partition: Partition, records: list[Incoming]) -> None:
        """A transaction committed: these commands are finished (their offsets were marked done)."""
        for record in records:
            self._finished(record)
        if not records:
            return  # a tracked workflow's lifecycle event alone
        self._metrics.commit(ok=True)
        self.stats.commits += 1
        self.stats.last_commit_at = time.monotonic()

    def _transaction_failed(self, partition: Partition, records: list[Incoming], fenced: bool) -> None:
        self._metrics.commit(ok=False)
        self._release(*records)
        self._in_background(self._reset(partition, fenced), "reset")

    async def _reset(self, p: Partition, fenced: bool) -> None:
        """After an aborted transaction: drop the partition's state and read it again from the last
        committed offset; the ledger, restored read_committed, finds the given-up commands in doubt.
        Fenced: another owner has the partition, and this member hears of the rebalance soon."""
        assert self._txn is not None
        p.close()
        await self._drain([p])
        self._release(*await self._txn.close(p, flush=False))
        if not self._current(p):
            return  # revoked meanwhile
        start = p.committed if p.committed is not None else p.first_seen
        self._forget([p])
        if fenced:
            await asyncio.sleep(self._txn.fenced_wait_s)
        if start is not None and p.tp not in self._partitions and p.tp in self._consumer.assignment():
            log.warning("reading %s again from offset %d", topic_name(p.tp), start)
            self._reseek.append((p.tp, start))

    def _read_again(self) -> None:
        """Between two fetches, so that no record fetched before the seek is taken for a later one."""
        chosen, self._reseek = self._reseek, []
        assigned = self._consumer.assignment()
        chosen = [(tp, offset) for tp, offset in chosen if tp in assigned and tp not in self._partitions]
        for tp, offset in chosen:
            self._consumer.seek(tp, offset)
        if chosen:
            self.on_assigned([tp for tp, _ in chosen])

    def partition(self, topic: str, partition: int) -> Partition | None:
        """An assigned partition that is not closing (parked commands come back as its routines)."""
        p = self._partitions.get(TopicPartition(topic, partition))
        return p if p is not None and not p.closing else None

    def oldest_uncommitted_age_s(self) -> float:
        return oldest_pending_age(self._partitions.values(), time.time())

    def committed_offsets(self) -> dict[TopicPartition, int | None]:
        return {tp: p.committed for tp, p in self._partitions.items()}
