"""The ledger on local disk: one RocksDB store per owned ledger partition, a copy of its changelog.

A store holds the ledger partition's records as they are in the topic (key and value bytes, any kind
of entry: commands, dead letters, tracked workflows), and under a key no entry can have
(:data:`CHECKPOINT_KEY`) the checkpoint: the next changelog offset to apply. Records and checkpoint
are written in one atomic batch, so a crash leaves the store at some offset, never between. Only
records read back from the changelog are written into a store: what this process wrote but the
broker has not returned yet (an open transaction, a send not yet read back) stays in an in-memory
overlay, dropped entry by entry when the follower reads the same bytes back. A store therefore
never holds anything the changelog does not, and a crash cannot leave it ahead of the topic.

On assignment (:meth:`DiskLedger.restore`) a store is opened and its checkpoint judged by
:func:`bridge.ledger.checkpoint.decide`: kept, the changelog is read from the checkpoint (the tail);
otherwise it is wiped and rebuilt from offset 0. Lookups read the overlay, then the store (RocksDB's
block cache, ``ledger.store.cache_mb``, is the bounded in-memory cache). A follower task keeps the
stores of owned partitions up to date with the changelog while the bridge runs.

Example::

    disk = DiskLedger(settings, metrics)
    await disk.restore({3}, load_tracked)       # load_tracked(partition, key, value) for trk: entries
    value = disk.get(3, entry_key("workflow.run.commands", "cmd-1"))
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError

from bridge.config.settings import Settings
from bridge.errors import StartupError
from bridge.kafka.changelog import ChangelogReader
from bridge.kafka.clients import make_reader, raw_client, started
from bridge.kafka.ports import Record
from bridge.ledger.checkpoint import Identity, decide
from bridge.ledger.rocks import PartitionStore, StoreUnreadable, lock_directory, rocks_options
from bridge.observability.metrics import Metrics
from bridge.observability.repeats import COLLAPSE

log = logging.getLogger("bridge.ledger.disk")
SWEEP_INTERVAL_S = 600.0  # a sweep of every open store starts this often
CATCH_UP_S = 5.0  # on a clean stop, at most this long to catch the stores up with the changelog
FOLLOW_WAIT_MS = 200  # the follower's fetch waits this long at the broker while nothing is new
Load = Callable[[int, bytes | None, bytes | None], None]


class DiskLedger:
    """The stores of the ledger partitions this member owns, their overlays and their follower."""

    def __init__(
        self, settings: Settings, metrics: Metrics, *, clock: Callable[[], float] = time.time
    ) -> None:
        assert settings.ledger.store.path is not None
        self.topic = settings.topics.ledger
        self._root = Path(settings.ledger.store.path) / self.topic
        self._store_settings = settings.ledger.store
        self._kafka = settings.kafka
        self._batch = settings.ledger.restore_batch
        self._backoff_s = settings.engine.publish_retry_backoff_s
        self._clock = clock
        self._metrics = metrics
        self._options = rocks_options(settings.ledger.store.cache_mb)
        self._lock = lock_directory(self._root)
        self.stores: dict[int, PartitionStore] = {}
        self._overlay: dict[int, dict[bytes, bytes | None]] = {}
        self._follower: asyncio.Task[None] | None = None
        self._reseek: set[int] = set()
        self._retention_ms = int(settings.ledger.retention_s * 1000)
        self._sweeping: dict[int, bytes] = {}  # partition: the key the running sweep goes on from
        self._next_sweep = 0.0
        self.expired = 0
        self._source: dict[int, str] = {}  # partition: "tail" (store kept) or "rebuild", while restoring
        self.rebuilt = 0  # stores wiped and rebuilt

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    # -- the command path ------------------------------------------------------------------------

    def get(self, partition: int, key: bytes) -> bytes | None:
        overlay = self._overlay.get(partition)
        if overlay is not None and key in overlay:
            return overlay[key]
        store = self.stores.get(partition)
        return store.get(key) if store is not None else None

    def wrote(self, partition: int, key: bytes, value: bytes | None) -> None:
        """This process wrote (or is about to write) ``key`` in the changelog: seen at once, kept in
        memory until the follower reads it back."""
        if partition in self.stores:
            self._overlay.setdefault(partition, {})[key] = value

    @property
    def pending(self) -> int:
        return sum(len(o) for o in self._overlay.values())

    def estimate(self) -> int:
        """About how many entries the open stores hold (RocksDB's estimate, no scan)."""
        return sum(s.estimate() for s in self.stores.values())

    # -- assignment ------------------------------------------------------------------------------

    async def restore(self, partitions: set[int], load: Load) -> int:
        """Open, judge and catch up the stores of these ledger partitions; ``load`` gets every
        tracked-workflow entry they hold afterwards. Returns the records read from the changelog."""
        while True:
            try:
                return await self._restore_once(partitions, load)
            except KafkaError as exc:
                log.warning("ledger restore failed, retrying from the checkpoint: %s", exc, extra=COLLAPSE)
                await asyncio.sleep(self._backoff_s)

    async def _restore_once(self, partitions: set[int], load: Load) -> int:
        tps = {TopicPartition(self.topic, p) for p in partitions}
        async with started(make_reader(self._kafka, fetch_max_wait_ms=10)) as consumer:
            starts, ends = await self._bounds(consumer, tps)
            count = len(consumer.partitions_for_topic(self.topic) or ()) or len(
                await self._partitions(consumer)
            )
            for tp in sorted(tps):
                self._open(tp.partition, Identity(self.topic, tp.partition, count), starts.get(tp), ends[tp])
            rebuilt = {p for p in partitions if self._source.get(p) == "rebuild" and p in self.stores}
            self._bulk_load(rebuilt, True)
            try:
                read = await self._read_tail(consumer, tps)
            finally:
                self._bulk_load(rebuilt, False)
        for p in sorted(partitions):
            store = self.stores.get(p)  # None: revoked meanwhile
            for key, value in store.scan(b"trk:") if store is not None else ():
                load(p, key, value)
        self._ensure_follower()
        return read

    def _bulk_load(self, partitions: set[int], on: bool) -> None:
        for partition in partitions:
            store = self.stores.get(partition)  # None: revoked (and closed) meanwhile
            if store is not None:
                store.bulk_load(on)

    async def _read_tail(self, consumer: AIOKafkaConsumer, tps: set[TopicPartition]) -> int:
        """Apply each partition's records from its store's checkpoint to its end; returns how many."""
        partitions = {tp.partition for tp in tps if tp.partition in self.stores}
        if not partitions:
            return 0
        if consumer.assignment():
            consumer.pause(*consumer.assignment())  # read below the consumer: its fetcher stays idle
        snapshot = self._kafka.transactions == "on"
        reader = ChangelogReader(
            raw_client(consumer),
            self.topic,
            {p: self.stores[p].next_offset for p in sorted(partitions)},
            read_committed=self._kafka.transactions != "off",
            snapshot_end=snapshot,
            max_records=self._batch,
        )
        read = 0
        async for partition, records in reader.batches():
            read += len(records)
            self._metrics.ledger_restore_records(self._source.get(partition, "tail"), len(records))
            self._applied(partition, records)
        if not snapshot:  # every record before the position was read: the checkpoint may say so
            for partition, position in reader.positions.items():
                store = self.stores.get(partition)
                if store is not None:
                    store.mark(position, self._now_ms())
        return read

    async def _catch_up(self) -> None:
        """On a clean stop: the stores up to the changelog's end, so that the next start reads little."""
        tps = {TopicPartition(self.topic, p) for p in self.stores}
        self._source = {p: "tail" for p in self.stores}
        async with started(make_reader(self._kafka, fetch_max_wait_ms=10)) as consumer:
            await self._read_tail(consumer, tps)

    async def _bounds(
        self, consumer: AIOKafkaConsumer, tps: set[TopicPartition]
    ) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        """Each partition's first offset (ListOffsets) and end: the high watermark of a fetch, as
        the restore reads it (Tansu's ListOffsets for the end can lag what a fetch returns)."""
        try:
            starts: dict[TopicPartition, int] = await consumer.beginning_offsets(list(tps))
        except KafkaError:
            starts = {}  # unknown: only a store at offset 0 is kept
        consumer.assign(list(tps))
        await consumer.seek_to_beginning(*tps)
        ends: dict[TopicPartition, int] = {}
        while len(ends) < len(tps):
            await consumer.getmany(*(tps - set(ends)), timeout_ms=100, max_records=1)
            for tp in tps - set(ends):
                highwater = consumer.highwater(tp)
                if highwater is not None:
                    ends[tp] = highwater
        return starts, ends

    async def _partitions(self, consumer: AIOKafkaConsumer) -> set[int]:
        await consumer.topics()  # a metadata refresh
        return consumer.partitions_for_topic(self.topic) or set()

    def _open(self, partition: int, identity: Identity, log_start: int | None, log_end: int) -> None:
        store = self.stores.get(partition)
        if store is not None:
            return  # open already (the other command topic's partition p): the read catches it up
        path = self._root / str(partition)
        try:
            store = PartitionStore(path, identity, self._options)
        except StoreUnreadable as exc:
            if "lock" in str(exc).lower():  # held by someone else: never wipe it
                raise StartupError(f"ledger store {path}: {exc}") from None
            log.warning("ledger store %s: %s: wiped, rebuilding from the changelog", path, exc)
            shutil.rmtree(path, ignore_errors=True)
            store = PartitionStore(path, identity, self._options)
            self.rebuilt += 1
            self.stores[partition] = store
            self._source[partition] = "rebuild"
            self._reseek.add(partition)
            return
        decision = decide(
            store.checkpoint(),
            identity,
            log_start,
            log_end,
            now_ms=self._now_ms(),
            max_age_ms=int(self._store_settings.max_age_s * 1000),
        )
        if decision.resume is None:
            log.info("ledger store %s: %s: wiped, rebuilding from the changelog", path, decision.reason)
            store.wipe()
            self.rebuilt += 1
            self._source[partition] = "rebuild"
        else:
            log.info("ledger store %s: %s", path, decision.reason)
            store.next_offset = decision.resume
            self._source[partition] = "tail"
        self.stores[partition] = store
        self._reseek.add(partition)

    def forget(self, partitions: Iterable[int]) -> None:
        """Close these partitions' stores (kept on disk for the next assignment)."""
        for partition in partitions:
            store = self.stores.pop(partition, None)
            self._overlay.pop(partition, None)
            if store is not None:
                store.close()

    async def close(self, catch_up_s: float = CATCH_UP_S) -> None:
        """Stop following, catch the stores up (for at most ``catch_up_s``: the changelog has the
        rest), and close them."""
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None
        if self.stores:
            try:
                await asyncio.wait_for(self._catch_up(), catch_up_s)
            except (TimeoutError, KafkaError) as exc:
                log.info("ledger stores closed behind the changelog (%s): the next start reads more", exc)
        self.forget(list(self.stores))
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()

    # -- following the changelog -----------------------------------------------------------------

    def _applied(self, partition: int, records: Sequence[Record]) -> None:
        store = self.stores.get(partition)
        if store is None:
            return
        store.apply(records, self._now_ms(), self._overlay.get(partition))  # read back: off the overlay

    def _ensure_follower(self) -> None:
        if self._follower is None or self._follower.done():
            self._follower = asyncio.create_task(self._follow(), name="ledger-store-follower")

    async def _follow(self) -> None:
        while True:
            try:
                async with started(make_reader(self._kafka)) as consumer:
                    await self._follow_with(raw_client(consumer))
            except KafkaError as exc:
                log.warning("ledger store follower: %s; reconnecting", exc, extra=COLLAPSE)
                await asyncio.sleep(self._backoff_s)

    async def _follow_with(self, client: AIOKafkaClient) -> None:
        """Apply what the changelog receives to the owned partitions' stores, read as the restore
        reads it (raw fetches, no consumer record per entry)."""
        committed = self._kafka.transactions != "off"
        reader = ChangelogReader(client, self.topic, {}, read_committed=committed, max_records=self._batch)
        self._reseek |= set(self.stores)
        while True:
            owned = set(self.stores)
            for partition in set(reader.positions) - owned:
                del reader.positions[partition]
            for partition in (self._reseek | (owned - set(reader.positions))) & owned:
                reader.positions[partition] = self.stores[partition].next_offset
            self._reseek.clear()
            if not owned:
                await asyncio.sleep(0.2)
                continue
            async for partition, records in reader.follow(FOLLOW_WAIT_MS):
                if partition in self.stores and partition not in self._reseek:  # else moved meanwhile
                    self._applied(partition, records)
            self.sweep_step()

    def sweep_step(self) -> None:
        """One step of the expiry sweep: a new sweep of every open store every ``SWEEP_INTERVAL_S``,
        ``SWEEP_CHUNK`` keys of one store per step (minute slack: lookups judge by the minute)."""
        now = time.monotonic()
        if not self._sweeping:
            if now < self._next_sweep:
                return
            self._next_sweep = now + SWEEP_INTERVAL_S
            self._sweeping = {p: b"cmd:" for p in self.stores}
        partition, start = next(iter(self._sweeping.items()))
        store = self.stores.get(partition)
        after = None
        if store is not None:
            deleted, after = store.expire(start, self._now_ms() - self._retention_ms - 60_000)
            self.expired += deleted
        if after is None:
            del self._sweeping[partition]
        else:
            self._sweeping[partition] = after
