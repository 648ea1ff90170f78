"""Kafka transactions, one per command partition: the outcomes (or dead letters), the ledger's ``done``
entries and the command offset of a batch of finished commands become visible together or not at all.

aiokafka's transactions predate KIP-447 (no group metadata in the offset commit), so fencing rests on
the transactional id alone: one producer per assigned command partition, its id derived from the group,
topic and partition (:func:`bridge.kafka.delivery.transactional_id`). It is created (InitProducerId:
the previous owner is fenced and its open transaction aborted) when the partition is assigned, before
the partition's ledger is restored, and closed when it is revoked.

A batch commits ``transaction_batch_ms`` after its first command finished, or at once when it holds
``transaction_batch_max`` commands. A failed commit aborts the batch and tells the engine, which reads
the partition again from its committed offset (see :meth:`bridge.kafka.engine.Engine`); its commands
come back in doubt, and their target's ``on_unknown`` decides.

Example::

    transactions = Transactions(settings.kafka, metrics)
    transactions.bind(on_committed, on_failed)
    await transactions.open(partition)
    transactions.add(partition, record, (outcome, done_entry))
    await transactions.close(partition, flush=True)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import InvalidProducerEpoch, KafkaError, ProducerFenced

from bridge.config.settings import KafkaSettings
from bridge.kafka.clients import make_producer, settle_before_cancel, stop_client
from bridge.kafka.delivery import transactional_id
from bridge.kafka.partitions import Partition, topic_name
from bridge.kafka.publisher import count_published, sendable_value
from bridge.messages.records import Incoming, Outgoing
from bridge.observability.metrics import Metrics
from bridge.waits import log_crash, within

log = logging.getLogger("bridge.engine")

FENCED = (ProducerFenced, InvalidProducerEpoch)
Committed = Callable[[Partition, list[Incoming]], None]
Failed = Callable[[Partition, list[Incoming], bool], None]  # (partition, records given up, fenced)


@dataclass(frozen=True, slots=True)
class _Item:
    """A finished command and what it publishes; or (no record) a tracked workflow's lifecycle event
    and entry, whose writer waits for ``committed``."""

    record: Incoming | None
    outgoing: Sequence[Outgoing]
    committed: asyncio.Future[bool] | None = None


@dataclass(eq=False)
class _Open:
    """One partition's producer and the finished commands of its next transaction."""

    producer: AIOKafkaProducer
    partition: Partition
    batch: list[_Item] = field(default_factory=list)
    first_at: float = 0.0
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    full: asyncio.Event = field(default_factory=asyncio.Event)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    broken: bool = False
    flusher: asyncio.Task[None] | None = None


class Transactions:
    def __init__(
        self,
        kafka: KafkaSettings,
        metrics: Metrics,
        make: Callable[[KafkaSettings, str], AIOKafkaProducer] | None = None,
    ) -> None:
        self._kafka = kafka
        self._metrics = metrics
        self._make = make or _transactional_producer
        self._open: dict[TopicPartition, _Open] = {}
        self._opening: dict[TopicPartition, asyncio.Lock] = {}
        self._on_committed: Committed = lambda _p, _r: None
        self._on_failed: Failed = lambda _p, _r, _f: None

    def bind(self, on_committed: Committed, on_failed: Failed) -> None:
        self._on_committed, self._on_failed = on_committed, on_failed

    # -- partitions ------------------------------------------------------------------------------

    async def open(self, partition: Partition, wanted: Callable[[], bool] = lambda: True) -> bool:
        """A producer for this partition, started: InitProducerId fences the previous owner. True once
        open; False when ``wanted()`` no longer holds after the producer started (the partition was
        revoked or read again meanwhile): that producer is stopped, nothing is opened.

        One open per partition at a time, since they share a transactional id: the open of a partition
        read again must neither be fenced by its previous self's open, still starting, nor be replaced
        by it (whose producer would then never be stopped, and whose partition would be left without
        transactions)."""
        tp = partition.tp
        async with self._opening.setdefault(tp, asyncio.Lock()):
            if self.opened(partition):
                return True
            if not wanted():
                return False
            producer = self._make(self._kafka, transactional_id(self._kafka.group_id, tp.topic, tp.partition))
            try:
                await settle_before_cancel(producer.start())
            except BaseException:
                with contextlib.suppress(KafkaError, OSError):
                    await stop_client(producer)
                raise
            if not wanted():
                with contextlib.suppress(KafkaError, OSError):
                    await stop_client(producer)
                return False
            stale = self._open.get(tp)
            if stale is not None:  # not closed when its partition moved on: fenced now by this producer
                log.error("transactions of %s were still open for a previous assignment", topic_name(tp))
                self._on_failed(stale.partition, await self.close(stale.partition, flush=False), True)
            state = _Open(producer, partition)
            self._open[tp] = state
            state.flusher = asyncio.create_task(self._flusher(partition, state), name=f"txn:{topic_name(tp)}")
            state.flusher.add_done_callback(log_crash(log, "transaction flusher"))
            return True

    def add(
        self, partition: Partition, record: Incoming, outgoing: Sequence[Outgoing], *, urgent: bool = False
    ) -> asyncio.Future[bool] | None:
        """Batch a finished command; the future tells whether its transaction committed. None when the
        partition's transactions are gone (closed, failed): the command is then given up, uncommitted.
        ``urgent``: the next command of its key waits for this commit, so the batch commits at once."""
        state = self._open.get(partition.tp)
        if state is None or state.partition is not partition:
            return None
        committed = asyncio.get_running_loop().create_future()
        if not self._add(partition.tp, _Item(record, outgoing, committed), urgent=urgent):
            return None
        return committed

    async def publish(self, tp: TopicPartition, outgoing: Sequence[Outgoing]) -> bool:
        """Publish records that belong to command partition ``tp`` (a tracked workflow's lifecycle event
        and its entry) in its next transaction; True once committed, False when it was not (the
        partition moved, or its transaction aborted: the workflow is read again from the ledger)."""
        committed = asyncio.get_running_loop().create_future()
        if not self._add(tp, _Item(None, outgoing, committed)):
            return False
        return bool(await committed)

    def _add(self, tp: TopicPartition, item: _Item, *, urgent: bool = False) -> bool:
        state = self._open.get(tp)
        if state is None or state.broken:
            return False
        if not state.batch:
            state.first_at = time.monotonic()
            state.wake.set()
        state.batch.append(item)
        if urgent or len(state.batch) >= self._kafka.transaction_batch_max:
            state.full.set()
        return True

    async def close(self, partition: Partition, *, flush: bool) -> list[Incoming]:
        """Commit what is batched (``flush``), then stop the partition's producer; returns the commands
        left uncommitted (the next owner runs them again)."""
        state = self._open.get(partition.tp)
        if state is None or state.partition is not partition:
            return []
        if flush:
            await self.flush(partition)
        self._open.pop(partition.tp, None)
        if state.flusher is not None:
            state.flusher.cancel()
            await asyncio.gather(state.flusher, return_exceptions=True)
        leftover = _settle(state.batch, committed=False)
        state.batch.clear()
        with contextlib.suppress(KafkaError, OSError):
            await stop_client(state.producer)
        return leftover

    def opened(self, partition: Partition) -> bool:
        state = self._open.get(partition.tp)
        return state is not None and state.partition is partition

    @property
    def fenced_wait_s(self) -> float:
        """How long a fenced member waits to hear of the rebalance before it reads the partition again."""
        return (self._kafka.session_timeout_ms + self._kafka.heartbeat_interval_ms) / 1000

    # -- commits ---------------------------------------------------------------------------------

    async def _flusher(self, partition: Partition, state: _Open) -> None:
        linger_s = self._kafka.transaction_batch_ms / 1000
        while not state.broken:
            await state.wake.wait()
            state.wake.clear()
            remaining = state.first_at + linger_s - time.monotonic()
            if remaining > 0:
                await within(state.full.wait(), remaining)
            await self.flush(partition)

    async def flush(self, partition: Partition) -> None:
        """Commit the batched commands and their partition's offset in one transaction."""
        state = self._open.get(partition.tp)
        if state is None:
            return
        async with state.lock:
            if state.broken or not state.batch:
                return
            batch, state.batch = state.batch, []
            state.full.clear()
            started = time.perf_counter()
            try:
                offset = await self._commit(partition, state.producer, batch)
            except KafkaError as exc:
                await self._failed(partition, state, batch, exc)
                return
            if offset is not None:
                partition.committed = offset
            self._metrics.transaction("committed", time.perf_counter() - started, len(batch))
            for item in batch:
                for out in item.outgoing:
                    count_published(self._metrics, out)
            self._on_committed(partition, _settle(batch, committed=True))

    async def _commit(
        self,
        partition: Partition,
        producer: AIOKafkaProducer,
        batch: list[_Item],
    ) -> int | None:
        await producer.begin_transaction()
        sent = [
            await producer.send(
                out.topic,
                value=sendable_value(out),
                key=out.key,
                headers=out.headers,
                partition=out.partition,
            )
            for item in batch
            for out in item.outgoing
        ]
        await asyncio.gather(*sent)
        for item in batch:
            if item.record is not None:
                partition.tracker.done(item.record.offset)
        offset = partition.tracker.committable()
        if offset is not None and offset != partition.committed:
            await producer.send_offsets_to_transaction({partition.tp: offset}, self._kafka.group_id)
        else:
            offset = None
        await producer.commit_transaction()
        return offset

    async def _failed(
        self,
        partition: Partition,
        state: _Open,
        batch: list[_Item],
        exc: KafkaError,
    ) -> None:
        state.broken = True
        fenced = isinstance(exc, FENCED)
        if not fenced:
            try:
                await state.producer.abort_transaction()
            except KafkaError as abort_exc:  # the producer is unusable: the broker aborts on timeout
                log.warning("abort of %s's transaction failed: %s", topic_name(partition.tp), abort_exc)
        self._metrics.transaction("fenced" if fenced else "aborted")
        given_up = _settle(batch + state.batch, committed=False)
        state.batch.clear()
        log.warning(
            "transaction of %s %s (%s): %d command(s) not committed; the partition is read again "
            "from its committed offset, and they come back in doubt",
            topic_name(partition.tp),
            "fenced: another owner took the partition" if fenced else "aborted",
            type(exc).__name__,
            len(given_up),
        )
        self._on_failed(partition, given_up, fenced)


def _settle(items: list[_Item], *, committed: bool) -> list[Incoming]:
    """Tell the waiting writers how their records fared; the commands among the items."""
    for item in items:
        if item.committed is not None and not item.committed.done():
            item.committed.set_result(committed)
    return [item.record for item in items if item.record is not None]


def _transactional_producer(kafka: KafkaSettings, txn_id: str) -> AIOKafkaProducer:
    return make_producer(kafka, transactional_id=txn_id, transaction_timeout_ms=kafka.transaction_timeout_ms)
