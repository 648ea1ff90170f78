"""Bring parked commands back when due: one routine per command topic reads the parking partitions of
the command partitions this member owns, waits for each record's due time, hands it to the processor
as the command record it was (same topic, partition and offset), publishes what comes back (the
outcome, or the record parked again) and commits past it in the replay group.

Each parked command comes back as a routine of its command partition in the engine
(``Partition.adopt``), so a revocation or a stop drains it like a key routine: it finishes (its
outcome, ledger entry and replay-group commit included) within ``engine.drain_grace_s`` or is
cancelled and brought back again by the next owner, whose ledger then absorbs a second answer of a
command that was already answered. Within a batch of one parking partition different keys come
back concurrently (their calls within the target's call slots); one key's commands come back one
after the other, in parking order, and the replay group's offset moves past a record only when it
and every earlier one ended. A record due later holds up the records behind it in the same parking
partition (they park again behind it at most ``retry_s`` later). A command parked while an earlier
command of its key was still in the engine (shed at its target's share, see bridge/budgets.py)
comes back only once that one is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.kafka_clients import make_reader, started
from bridge.offsets import OffsetTracker
from bridge.parking.park import Parking, replay_group
from bridge.parking.records import ParkedAt, read_parked
from bridge.partitions import Partition
from bridge.publisher import Publisher
from bridge.records import Incoming, Outgoing
from bridge.settings import KafkaSettings

log = logging.getLogger("bridge.parking")
Handler = Callable[[Incoming], Awaitable[Outgoing]]
Home = Callable[[str, int], Partition | None]  # Engine.partition: where a command partition's work runs


class Committer(Protocol):
    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


class _Progress:
    """The replay group's position in one parking partition: past a record once it and every earlier
    record of the batch ended."""

    def __init__(self, consumer: Committer, tp: TopicPartition) -> None:
        self._consumer = consumer
        self._tp = tp
        self._tracker = OffsetTracker()
        self._committed: int | None = None
        self._lock = asyncio.Lock()

    def add(self, offset: int) -> None:
        self._tracker.add(offset)

    async def done(self, offset: int) -> None:
        self._tracker.done(offset)
        async with self._lock:
            position = self._tracker.committable()
            if position is None or position == self._committed:
                return
            try:
                await self._consumer.commit({self._tp: position})
                self._committed = position
            except KafkaError as exc:  # brought back again later: the ledger absorbs a second answer
                log.warning("committing the replay position %s failed: %s", position, exc)


class Replayer:
    def __init__(
        self,
        kafka: KafkaSettings,
        command_topic: str,
        parking: Parking,
        handler: Handler,
        publisher: Publisher,
        home: Home,
    ) -> None:
        self._home = home
        self._kafka = kafka
        self._topic = command_topic
        self._parking = parking
        self._handler = handler
        self._publisher = publisher
        self._assigned: set[int] = set()

    async def run(self) -> None:
        reader = make_reader(
            self._kafka, replay_group(self._kafka.group_id, self._topic), fetch_max_wait_ms=50
        )
        async with started(reader) as consumer:
            while True:
                await self._round(consumer)

    async def _round(self, consumer: AIOKafkaConsumer) -> None:
        self._reassign(consumer)
        if not self._assigned:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._parking.moved.wait(), timeout=1.0)
            return
        try:
            batch = await consumer.getmany(timeout_ms=200)
            await asyncio.gather(*(self.replay_batch(consumer, tp, records) for tp, records in batch.items()))
        except KafkaError as exc:
            log.warning("replaying parked commands failed, retrying: %s", exc)
            await asyncio.sleep(1.0)

    def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        self._parking.moved.clear()
        owned = {p for topic, p in self._parking.owned if topic == self._topic}
        if owned != self._assigned:
            consumer.assign([TopicPartition(self._parking.topic, p) for p in sorted(owned)])
            self._assigned = owned

    async def replay_batch(self, consumer: Committer, tp: TopicPartition, records: Sequence[Any]) -> bool:
        """Bring back one parking partition's records; False when the partition moved meanwhile (its
        new owner brings back the rest)."""
        progress, moved = _Progress(consumer, tp), False
        chains: dict[bytes | None, asyncio.Task[None]] = {}  # the last command brought back, per key
        for record in records:
            progress.add(record.offset)
            at = read_parked(record.headers or ())
            if at is None or at.topic != self._topic:
                await progress.done(record.offset)
                continue
            home = await self._until_due(at, tp.partition, record.key)
            if home is None:
                moved = True
                break
            back = self._back(record, at, tp.partition, chains.get(record.key), progress)
            chains[record.key] = home.adopt(back, f"replay:{tp.topic}[{tp.partition}]")
        if chains:
            await asyncio.wait(chains.values())
        return not moved

    async def _back(
        self, record: Any, at: ParkedAt, partition: int, prior: asyncio.Task[None] | None, progress: _Progress
    ) -> None:
        """One parked command, after the one parked before it with the same key."""
        if prior is not None:
            await asyncio.wait([prior])
            if prior.cancelled() or prior.exception() is not None:
                return  # the earlier one was abandoned: this one must not overtake it
        await self._run(record, at, partition)
        await progress.done(record.offset)

    async def _until_due(self, at: ParkedAt, partition: int, key: bytes | None) -> Partition | None:
        """Wait for the due time and for the key's earlier commands in the engine; the partition to run
        in, or None when it moved meanwhile."""
        while (home := self._owned(partition)) is not None:
            wait = at.due_ms / 1000 - time.time()
            if wait <= 0 and not (key is not None and home.holds_before(key, at.offset)):
                return home
            await asyncio.sleep(min(wait, 0.5) if wait > 0 else 0.05)
        return None

    def _owned(self, partition: int) -> Partition | None:
        owned = (self._topic, partition) in self._parking.owned
        return self._home(self._topic, partition) if owned else None

    async def _run(self, record: Any, at: ParkedAt, partition: int) -> None:
        command = Incoming(
            self._topic,
            partition,
            at.offset,
            record.key,
            record.value,
            tuple(record.headers),
            at.timestamp_ms,
        )
        outgoing = await self._handler(command)
        if not outgoing.skip:
            await self._publisher.publish(outgoing)
        for extra in outgoing.then:
            await self._publisher.publish(extra)
        if outgoing.topic != self._parking.topic:
            self._parking.answered(command)
