"""The ledger's I/O: restore partitions from the ledger topic, write entries, and admit commands.

The ledger topic is co-partitioned with the command topics: the entries of command partition p
live in ledger partition p, written with an explicit partition number. Whoever owns command
partition p reads ledger partition p to its end (the fetch high watermark: Tansu's ListOffsets is
not reliable) before the engine processes p's records.

Example::

    ledger = Ledger(settings, producer, metrics)
    await ledger.restore([TopicPartition("workflow.run.commands", 3)])
    ticket = await ledger.admit(record, command)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.config.settings import Settings
from bridge.kafka.changelog import ChangelogReader
from bridge.kafka.clients import make_reader, raw_client, started
from bridge.ledger.disk import DiskLedger
from bridge.ledger.entries import (
    COMMAND_PREFIX,
    DEAD_LETTER_PREFIX,
    DoneFields,
    EntryState,
    command_of,
    dead_letter_key,
    decode,
    decode_dead_letter,
    encode_dead_letter,
    encode_dispatched,
    encode_done,
    entry_key,
    fingerprint,
)
from bridge.ledger.index import EPOCH_MS, CommandIndex, Remembered, id_hash, pack, unpack
from bridge.ledger.rules import Admission, admit, is_redrive
from bridge.messages.commands import Command
from bridge.messages.wire import Header
from bridge.observability.metrics import Metrics
from bridge.observability.repeats import COLLAPSE

log = logging.getLogger("bridge.ledger")
SWEEP_INTERVAL_S = 60.0
_RUNS = frozenset({Admission.NEW, Admission.RERUN, Admission.IN_DOUBT})
_DUPLICATE_REASON = {
    Admission.DUPLICATE: "done",
    Admission.ID_REUSED: "id_reused",
    Admission.IN_DOUBT: "in_doubt",
}
DEAD_LETTER_AGAIN = "dead_letter"  # a dead-lettered record read again: absorbed
PartitionKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class LedgerRecord:
    """A ledger entry to publish (after the outcome it belongs to was acknowledged)."""

    topic: str
    partition: int
    key: bytes
    value: bytes | None  # None: a tombstone (Ledger.release)


class SiblingState(Protocol):
    """Other kinds of entry in the same ledger partitions (tracked workflows): restored in the same
    read and forgotten with the partition."""

    def restore_started(self, wanted: Iterable[PartitionKey]) -> None: ...

    def load(self, partition: int, key: bytes | None, value: bytes | None) -> None: ...

    def restore_finished(self, kept: Iterable[PartitionKey]) -> None: ...

    def forget(self, tps: Iterable[TopicPartition]) -> None: ...


@dataclass(slots=True)
class Ticket:
    """One admitted command: what the ledger decided and what its entries will carry."""

    partition: PartitionKey
    command_id: str
    id_key: int
    fp: int
    offset: int
    admission: Admission
    attempt: int
    settled: asyncio.Future[None] | None = None

    @property
    def runs(self) -> bool:
        return self.admission in _RUNS


@dataclass(frozen=True, slots=True)
class Recall:
    """What a member's ledger knows about one command id of a partition it holds (``Ledger.recall``)."""

    last_write_ms: int | None  # the start of the minute of its last entry; None: not remembered
    done: bool
    horizon_ms: int  # it remembers every id admitted whose last entry is this recent or more


class Ledger:
    def __init__(
        self,
        settings: Settings,
        producer: AIOKafkaProducer,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        sibling: SiblingState | None = None,
    ) -> None:
        self.topic = settings.topics.ledger
        self._sibling = sibling
        self._settings = settings.ledger
        self._kafka = settings.kafka
        self._backoff_s = settings.engine.publish_retry_backoff_s
        self._producer = producer
        self._metrics = metrics
        metrics.duplicate_reasons([*_DUPLICATE_REASON.values(), DEAD_LETTER_AGAIN])
        metrics.watch_ledger(lambda: self.entries)
        self._clock = clock
        self._indexes: dict[PartitionKey, CommandIndex] = {}
        self._assigned: set[PartitionKey] = set()
        self._pending: dict[tuple[PartitionKey, int], asyncio.Future[None]] = {}
        self._next_sweep = 0.0
        # ledger.store.path set: the partitions live on local disk, not in _indexes (bridge.ledger.disk)
        self._disk = DiskLedger(settings, metrics, clock=clock) if settings.ledger.store.path else None
        self._fresh = CommandIndex(self._settings.retention_s)  # only its retention arithmetic

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def _index(self, partition: PartitionKey) -> CommandIndex:
        index = self._indexes.get(partition)
        if index is None:
            index = self._indexes[partition] = CommandIndex(self._settings.retention_s)
        return index

    @property
    def entries(self) -> int:
        if self._disk is not None:
            return self._disk.estimate()
        return sum(len(index) for index in self._indexes.values())

    def recall(self, topic: str, partition: int, command_id: str) -> Recall | None:
        """What the ledger knows about ``command_id`` in ``topic[partition]``; None while this
        member does not hold that partition's ledger (another member owns it, or it is restoring)."""
        where = (topic, partition)
        if where not in self._assigned:
            return None
        if self._disk is None and where not in self._indexes:
            return None  # restoring
        if self._disk is not None and partition not in self._disk.stores:
            return None  # restoring
        horizon = self._now_ms() - (int(self._settings.retention_s // 60) - 1) * 60_000  # whole minutes kept
        seen = self._seen(where, command_id, id_hash(command_id))
        if seen is None:
            return Recall(None, False, horizon)
        return Recall(EPOCH_MS + seen.minute * 60_000, seen.done, horizon)

    def _seen(self, where: PartitionKey, command_id: str, key: int) -> Remembered | None:
        if self._disk is None:
            return self._index(where).get_hashed(key)
        entry = decode(ekey := entry_key(where[0], command_id), self._disk.get(where[1], ekey))
        if entry is None or not self._fresh.is_fresh(entry.at_ms, self._now_ms()):
            return None
        done, error = entry.state is EntryState.DONE, entry.status == "error"
        return unpack(
            pack(entry.fingerprint, done=done, error=error, attempt=entry.attempt, at_ms=entry.at_ms)
        )

    def _remember(self, ticket: Ticket, key: bytes, value: bytes | None, packed: int | None) -> None:
        """What this process wrote for ``ticket``: the index, or the local store's overlay."""
        if self._disk is not None:
            self._disk.wrote(ticket.partition[1], key, value)
        elif packed is None:
            self._index(ticket.partition).forget_hashed(ticket.id_key)
        else:
            self._index(ticket.partition).put_hashed(ticket.id_key, packed)

    # -- admission -------------------------------------------------------------------------------

    async def admit(
        self, topic: str, partition: int, offset: int, headers: Iterable[Header], command: Command
    ) -> Ticket:
        """Decide; a command of the same id still running in this process is waited for first."""
        where, key = (topic, partition), id_hash(command.id)
        while (running := self._pending.get((where, key))) is not None:
            await asyncio.wait([running])
        self._sweep()
        seen = self._seen(where, command.id, key)
        fp = fingerprint(command)
        admission = admit(seen, fp, redrive=is_redrive(headers))
        if admission in _DUPLICATE_REASON:
            self._metrics.duplicate(_DUPLICATE_REASON[admission])
        if admission is Admission.DUPLICATE:
            log.info("duplicate of %s absorbed: already done, so no call and no second outcome", command.id)
        attempt = (seen.attempt if seen else 0) + (admission is not Admission.IN_DOUBT)
        ticket = Ticket(where, command.id, key, fp, offset, admission, max(attempt, 1))
        if ticket.runs:
            ticket.settled = self._pending[(where, key)] = asyncio.get_running_loop().create_future()
        return ticket

    async def dispatched(self, ticket: Ticket) -> None:
        """Record, acknowledged by the broker, that the provider is about to be called."""
        topic, partition = ticket.partition
        now = self._now_ms()
        key, value = encode_dispatched(
            topic, ticket.command_id, ticket.fp, ticket.offset, now, ticket.attempt
        )
        await self._send(LedgerRecord(self.topic, partition, key, value))
        packed = pack(ticket.fp, done=False, error=False, attempt=ticket.attempt, at_ms=now)
        self._remember(ticket, key, value, packed)

    def done(self, ticket: Ticket, fields: DoneFields) -> LedgerRecord:
        """The ``done`` entry to publish after the outcome; the index remembers it at once."""
        topic, partition = ticket.partition
        now = self._now_ms()
        key, value = encode_done(
            topic, ticket.command_id, ticket.fp, ticket.offset, now, fields, ticket.attempt
        )
        error = fields.status == "error"
        packed = pack(ticket.fp, done=True, error=error, attempt=ticket.attempt, at_ms=now)
        self._remember(ticket, key, value, packed)
        return LedgerRecord(self.topic, partition, key, value)

    def release(self, ticket: Ticket) -> LedgerRecord:
        """Forget the command (it was parked after its ``dispatched`` entry and runs again as new):
        the tombstone to publish after the parked record; the index forgets it at once."""
        topic, partition = ticket.partition
        key = entry_key(topic, ticket.command_id)
        self._remember(ticket, key, None, None)
        return LedgerRecord(self.topic, partition, key, None)

    def dead_lettered(self, where: PartitionKey, offset: int) -> bool:
        """Whether this record was dead-lettered already (a redelivery: absorbed, not again)."""
        if self._disk is None:
            return self._index(where).dead_lettered(offset)
        key = dead_letter_key(where[0], offset)
        dead = decode_dead_letter(key, self._disk.get(where[1], key))
        return dead is not None and self._fresh.is_fresh(dead[2], self._now_ms())

    def dead_letter(self, where: PartitionKey, offset: int, reason: str) -> LedgerRecord:
        """The entry to publish after the dead letter (like ``done`` after an outcome)."""
        now = self._now_ms()
        key, value = encode_dead_letter(where[0], offset, reason, now)
        if self._disk is not None:
            self._disk.wrote(where[1], key, value)
        else:
            self._index(where).mark_dead_letter(offset, now)
        return LedgerRecord(self.topic, where[1], key, value)

    async def withdraw(self, ticket: Ticket) -> None:
        """Forget the ``dispatched`` entry now, acknowledged: no call so far may have had an effect."""
        await self._send(self.release(ticket))

    def settle(self, ticket: Ticket) -> None:
        """The command's fate is decided: release any record of the same id waiting for it."""
        if ticket.settled is None:
            return
        if self._pending.get((ticket.partition, ticket.id_key)) is ticket.settled:
            del self._pending[(ticket.partition, ticket.id_key)]
        if not ticket.settled.done():
            ticket.settled.set_result(None)

    async def _send(self, record: LedgerRecord) -> None:
        while True:
            try:
                future = await self._producer.send(
                    record.topic, value=record.value, key=record.key, partition=record.partition
                )
                await future
                return
            except KafkaError as exc:
                self._metrics.publish_failed()
                log.warning("ledger write to %s failed, will retry: %s", record.topic, exc, extra=COLLAPSE)
                await asyncio.sleep(self._backoff_s)

    def _sweep(self) -> None:
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + SWEEP_INTERVAL_S
        now_ms = self._now_ms()
        dropped = sum(index.expire(now_ms) for index in self._indexes.values())
        if dropped:
            log.info("ledger forgot %d command id(s) older than %.0fs", dropped, self._settings.retention_s)

    # -- partitions ------------------------------------------------------------------------------

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        tps = list(tps)
        for tp in tps:
            self._assigned.discard((tp.topic, tp.partition))
            self._indexes.pop((tp.topic, tp.partition), None)
        if self._disk is not None:  # a ledger partition's store closes when no command partition needs it
            still = {partition for _, partition in self._assigned}
            self._disk.forget({tp.partition for tp in tps} - still)
        if self._sibling is not None:
            self._sibling.forget(tps)

    async def close(self) -> None:
        """Stop following the changelog and close the local stores (their files stay)."""
        if self._disk is not None:
            await self._disk.close()

    async def restore(self, tps: Iterable[TopicPartition]) -> None:
        """Read the ledger partitions of newly assigned command partitions to their end."""
        wanted = {(tp.topic, tp.partition) for tp in tps}
        self._assigned |= wanted
        started = time.perf_counter()
        if self._disk is not None:
            await self._restore_disk(wanted, started)
            return
        fresh = {where: CommandIndex(self._settings.retention_s) for where in wanted}
        read = await self._read_to_end(fresh)
        for where, index in fresh.items():
            if where in self._assigned:  # not revoked meanwhile
                self._indexes[where] = index
        if self._sibling is not None:
            self._sibling.restore_finished([where for where in fresh if where in self._assigned])
        elapsed = time.perf_counter() - started
        kept = sum(len(index) for index in fresh.values())
        self._metrics.ledger_restored(elapsed)
        log.info(
            "ledger restored for %d partition(s): %d record(s) read, %d id(s) remembered, in %.2fs",
            len(wanted),
            read,
            kept,
            elapsed,
            extra={"restore_s": round(elapsed, 3), "entries": kept, "records": read},
        )

    async def _restore_disk(self, wanted: set[PartitionKey], started: float) -> None:
        """Catch the local stores up with the changelog (the tail, or all of it when rebuilt)."""
        disk = self._disk
        assert disk is not None
        sibling = self._sibling
        if sibling is not None:
            sibling.restore_started(wanted)
        before = disk.rebuilt
        read = await disk.restore(
            {partition for _, partition in wanted}, sibling.load if sibling else _ignore
        )
        if sibling is not None:
            sibling.restore_finished([where for where in wanted if where in self._assigned])
        elapsed = time.perf_counter() - started
        self._metrics.ledger_restored(elapsed)
        rebuilt = disk.rebuilt - before
        log.info(
            "ledger restored for %d partition(s) from the local store: %d record(s) read, "
            "%d store(s) rebuilt, in %.2fs",
            len(wanted),
            read,
            rebuilt,
            elapsed,
            extra={"restore_s": round(elapsed, 3), "records": read, "rebuilt": rebuilt},
        )

    async def _read_to_end(self, fresh: dict[PartitionKey, CommandIndex]) -> int:
        """Fill ``fresh`` from the ledger; retried from the start while the broker is unreachable."""
        while True:
            if self._sibling is not None:
                self._sibling.restore_started(fresh)  # again after a failed attempt: start over
            try:
                return await self._read_once(fresh)
            except KafkaError as exc:
                log.warning("ledger restore failed, retrying: %s", exc, extra=COLLAPSE)
                for index in fresh.values():
                    index.clear()
                await asyncio.sleep(self._backoff_s)

    async def _read_once(self, fresh: dict[PartitionKey, CommandIndex]) -> int:
        read, now_ms = 0, self._now_ms()
        async with started(make_reader(self._kafka, fetch_max_wait_ms=10)) as consumer:
            # with transactions, to the end seen first: another partition's transactions keep the
            # stable offset behind the high watermark, and this partition's previous owner is fenced
            reader = ChangelogReader(
                raw_client(consumer),
                self.topic,
                {partition: 0 for _, partition in fresh},
                read_committed=self._kafka.transactions != "off",
                snapshot_end=self._kafka.transactions == "on",
                max_records=self._settings.restore_batch,
            )
            async for partition, records in reader.batches():
                read += len(records)
                self._metrics.ledger_restore_records("memory", len(records))
                for record in records:
                    self._load(fresh, partition, record.key, record.value, now_ms)
        return read

    def _load(
        self,
        fresh: dict[PartitionKey, CommandIndex],
        partition: int,
        key: bytes | None,
        value: bytes | None,
        now_ms: int,
    ) -> None:
        released = command_of(key) if value is None else None
        if released is not None:  # a tombstone: the command was parked after its dispatched entry
            index = fresh.get((released[0], partition))
            if index is not None:
                index.forget_hashed(id_hash(released[1]))
            return
        dead = decode_dead_letter(key, value)
        index = fresh.get((dead[0], partition)) if dead is not None else None
        if dead is not None and index is not None and index.is_fresh(dead[2], now_ms):
            index.mark_dead_letter(dead[1], dead[2])  # read again, it is absorbed
        entry = decode(key, value)
        if entry is None:
            ours = key is None or key.startswith((COMMAND_PREFIX, DEAD_LETTER_PREFIX))
            if self._sibling is not None and not ours:
                self._sibling.load(partition, key, value)
            return
        index = fresh.get((entry.topic, partition))
        if index is None or not index.is_fresh(entry.at_ms, now_ms):
            return  # another command topic's entry, or older than the retention
        done, error = entry.state is EntryState.DONE, entry.status == "error"
        packed = pack(entry.fingerprint, done=done, error=error, attempt=entry.attempt, at_ms=entry.at_ms)
        index.put_hashed(id_hash(entry.command_id), packed)


def _ignore(partition: int, key: bytes | None, value: bytes | None) -> None:
    """No sibling state: tracked-workflow entries are not wanted."""
