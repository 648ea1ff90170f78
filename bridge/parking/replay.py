"""Bring parked commands back when due: one routine per command topic reads the parking partitions of
the command partitions this member owns, waits for each record's due time, hands it to the processor
as the command record it was (same topic, partition and offset), publishes what comes back (the
outcome, or the record parked again) and commits past it in the replay group.

The records of each parking partition join its lane (bridge/parking/lanes.py), which holds them in
memory until due, each key's one after the other in parking order and different keys independently:
a record due later holds up only the later records of its own key, and no partition's fetch waits
for another's. A lane holding more than ``parking.max_held`` records pauses its partition's fetch
until it holds fewer. A record comes back, once due, as a routine of its command partition in the
engine (``Partition.adopt``), so a revocation or a stop drains it like a key routine: it finishes
(its outcome, ledger entry and replay-group commit included) within ``engine.drain_grace_s`` or is
cancelled and brought back again by the next owner, whose ledger then absorbs a second answer of a
command that was already answered; records still waiting for their due time are dropped at once.
The replay group's offset moves past a record only when it and every earlier one ended. A record
parked because its target was down comes back before its due time when the target is back
(bridge/parking/recovery.py): one at a time as the probe, then all of them at the pace of the
target's call slots once a call succeeded. A command
parked while an earlier command of its key was still in the engine (shed at its target's share,
see bridge/pipeline/bulkheads.py) comes back only once that one is answered.

Waiting costs nothing (issue 26): a record that may not come back yet sleeps on a future of its own,
woken only by what can change the answer (:func:`comes_back`): its due time (one timer), its
target's recovery handing it a release (recovery.py), the engine's key routine moving past its key's
earlier command or the partition closing (``Partition.watch_key``); a move cancels it (the lane).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from functools import partial
from typing import Any, Protocol

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError

from bridge.config.settings import KafkaSettings
from bridge.kafka.clients import make_reader, started
from bridge.kafka.fence import confirm_owner
from bridge.kafka.partitions import Partition
from bridge.kafka.publisher import Publisher
from bridge.messages.records import Incoming, Outgoing
from bridge.observability.repeats import COLLAPSE
from bridge.parking.lanes import Committer, Lane, Progress
from bridge.parking.records import ParkedAt, answered_marker
from bridge.parking.state import Parking, replay_group
from bridge.waits import within

log = logging.getLogger("bridge.parking")
Handler = Callable[[Incoming], Awaitable[Outgoing]]
Home = Callable[[str, int], Partition | None]  # Engine.partition: where a command partition's work runs


EARLY = ("recovered", "probe")  # the target's recovery lets a record go before it is due


def comes_back(held: bool, due_in_s: float, released: str | None) -> str | None:
    """Pure: why a parked record comes back now ("due", or ``released``: the target's recovery let it
    go early), or None while it waits; never while an earlier command of its key is in the engine."""
    if held:
        return None
    if due_in_s <= 0:
        return "due"
    return released


def _settle(wake: asyncio.Future[str], why: str) -> None:
    if not wake.done():
        wake.set_result(why)


class Reader(Committer, Protocol):
    """The replay consumer, as far as a lane uses it: commits, and the parking partition's end."""

    def highwater(self, partition: TopicPartition) -> int | None: ...


class Fetcher(Reader, Protocol):
    """The replay consumer, as far as the fetch loop uses it (AIOKafkaConsumer)."""

    def assign(self, partitions: list[TopicPartition]) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0) -> dict[TopicPartition, list[Any]]: ...


class Replayer:
    def __init__(
        self,
        kafka: KafkaSettings,
        command_topic: str,
        parking: Parking,
        handler: Handler,
        publisher: Publisher,
        home: Home,
        *,
        max_held: int = 1000,
        mark_answered: bool = False,
    ) -> None:
        self._mark_answered = mark_answered  # without the ledger: an answered marker per answered replay
        self._home = home
        self._kafka = kafka
        self._topic = command_topic
        self._parking = parking
        self._handler = handler
        self._publisher = publisher
        self._max_held = max_held
        self._lanes: dict[int, Lane] = {}
        self._assigned: set[int] = set()

    async def run(self) -> None:
        reader = make_reader(
            self._kafka, replay_group(self._kafka.group_id, self._topic), fetch_max_wait_ms=50
        )
        async with started(reader) as consumer:
            try:
                while True:
                    await self.round(consumer)
            finally:
                self.stop()

    def stop(self) -> None:
        """End every lane's waiters (what was adopted drains in the engine)."""
        for lane in self._lanes.values():
            lane.cancel()

    async def round(self, consumer: Fetcher) -> None:
        """One fetch: each parking partition's records join its lane, which brings them back on its
        own, so no partition's fetch waits for a record, another partition or an earlier fetch."""
        self._reassign(consumer)
        if not self._live():
            await within(self._parking.moved.wait(), 1.0)
            return
        self._throttle(consumer)
        try:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                if (lane := self._live().get(tp.partition)) is not None:
                    await lane.feed(records)
        except KafkaError as exc:
            log.warning("replaying parked commands failed, retrying: %s", exc, extra=COLLAPSE)
            await asyncio.sleep(1.0)
        self._throttle(consumer)
        waiting: Counter[str] = Counter()
        for lane in self._live().values():
            waiting.update(lane.waiting)
        self._parking.waiting(self._topic, waiting)

    def _reassign(self, consumer: Fetcher) -> None:
        """Follow the owned partitions: a lane per partition, read on from the committed position
        when new, and only once the routines of its previous lane there (moved or abandoned) ended."""
        self._parking.moved.clear()
        owned = {p for topic, p in self._parking.owned if topic == self._topic}
        for partition, lane in list(self._lanes.items()):
            if partition not in owned or lane.moved:
                lane.cancel()
                if not lane.busy:
                    del self._lanes[partition]
        wanted = {p for p in owned if p not in self._lanes or not self._lanes[p].moved}
        # a moved lane whose routines still drain in the engine commits its position as they end: its
        # partition stays assigned (not fetched), or that commit is refused and the next owner replays
        # what was answered again (a duplicate without the ledger)
        draining = {p for p, lane in self._lanes.items() if lane.moved}
        if wanted | draining != self._assigned or wanted != set(self._live()):
            consumer.assign([self._parked_tp(p) for p in sorted(wanted | draining)])
            self._assigned = wanted | draining
            self._open(consumer, wanted)
        if draining:
            consumer.pause(*[self._parked_tp(p) for p in sorted(draining)])

    def _open(self, consumer: Fetcher, wanted: set[int]) -> None:
        """A lane per newly wanted partition; a kept lane goes on after what it already holds."""
        for partition in sorted(wanted):
            kept = self._lanes.get(partition)
            if kept is None:
                self._lanes[partition] = self.lane(consumer, self._parked_tp(partition))
            elif kept.next_offset is not None:  # kept: go on after what it already holds
                consumer.seek(self._parked_tp(partition), kept.next_offset)

    def _live(self) -> dict[int, Lane]:
        return {p: lane for p, lane in self._lanes.items() if not lane.moved}

    def _throttle(self, consumer: Fetcher) -> None:
        """Pause fetching a parking partition while its lane holds more than ``max_held`` records."""
        live = self._live()
        full = [self._parked_tp(p) for p, lane in live.items() if lane.held > self._max_held]
        free = [self._parked_tp(p) for p, lane in live.items() if lane.held <= self._max_held]
        if full:
            consumer.pause(*full)
        if free:
            consumer.resume(*free)

    def _parked_tp(self, partition: int) -> TopicPartition:
        return TopicPartition(self._parking.topic, partition)

    def lane(self, consumer: Reader, tp: TopicPartition) -> Lane:
        partition = tp.partition
        where = (self._topic, partition)

        async def until_due(at: ParkedAt, key: bytes | None) -> Partition | None:
            return await self._until_due(at, partition, key)

        def end() -> int:
            """The parking partition's end as far as known now (once a command is answered, every
            parking record of it lies below)."""
            return max(consumer.highwater(tp) or 0, lane.next_offset or 0)

        async def back(record: Any, at: ParkedAt) -> None:
            await self._run(record, at, partition, end)

        def answered(offset: int) -> bool:
            replayed = self._parking.replayed.get(where)
            return replayed is not None and offset in replayed

        def passed(position: int) -> None:
            self._parking.replay_passed(where, position)

        lane = Lane(Progress(consumer, tp, passed), until_due, back, self._topic, answered)
        return lane

    async def replay_batch(self, consumer: Reader, tp: TopicPartition, records: Sequence[Any]) -> bool:
        """Bring back one batch of a parking partition's records in a lane of its own; False when the
        partition moved meanwhile (its new owner brings back the rest)."""
        lane = self.lane(consumer, tp)
        await lane.feed(records)
        return await lane.settled()

    async def _until_due(self, at: ParkedAt, partition: int, key: bytes | None) -> Partition | None:
        """Wait for the due time (or the target's recovery) and for the key's earlier commands in the
        engine; the partition to run in, or None when it moved meanwhile. It sleeps until one of
        those may have changed (:meth:`_wake`), never on a timer of its own but the due time."""
        released: str | None = None  # the recovery let it go: counted there until ``ended``
        try:
            while (home := self._owned(partition)) is not None and not home.closing:
                held = key is not None and home.holds_before(key, at.offset)
                why = comes_back(held, at.due_ms / 1000 - time.time(), released)
                if why is not None:
                    released = None  # its routine ends it (``_run``)
                    self._parking.came_back(at, why)
                    return home
                if released is not None:  # its key is held again (the partition read again)
                    self._parking.recovery.ended(at)
                    released = None
                woke = await self._wake(at, home, key if held else None)
                released = woke if woke in EARLY else None
            return None
        finally:
            if released is not None:  # let go, but it does not come back now
                self._parking.recovery.ended(at)

    async def _wake(self, at: ParkedAt, home: Partition, held: bytes | None) -> str:
        """Sleep until something that decides on ``at`` may have changed; what it was: "key" (the
        first record of its key ``held`` moved on, or the partition closed), "due", or the target's
        recovery letting it go ("recovered", "probe"). Moving away cancels the waiter (``Lane.cancel``)."""
        loop = asyncio.get_running_loop()
        wake: asyncio.Future[str] = loop.create_future()
        if held is not None:
            home.watch_key(held, partial(_settle, wake, "key"))
            return await wake
        timer = loop.call_at(loop.time() + at.due_ms / 1000 - time.time(), _settle, wake, "due")
        self._parking.recovery.wait(at, wake)
        try:
            return await wake
        except asyncio.CancelledError:
            if wake.done() and not wake.cancelled() and wake.result() in EARLY:
                self._parking.recovery.ended(at)  # let go in the same turn as the cancellation
            raise
        finally:
            timer.cancel()

    def _owned(self, partition: int) -> Partition | None:
        owned = (self._topic, partition) in self._parking.owned
        return self._home(self._topic, partition) if owned else None

    async def _run(self, record: Any, at: ParkedAt, partition: int, end: Callable[[], int]) -> None:
        command = Incoming(
            self._topic,
            partition,
            at.offset,
            record.key,
            record.value,
            tuple(record.headers),
            at.timestamp_ms,
        )
        try:
            outgoing = await self._handler(command)
        finally:
            self._parking.recovery.ended(at)  # its call, if any, is over: the next may go
        await confirm_owner()  # written only while the partition is ours (bridge/kafka/fence.py)
        if not outgoing.skip:
            await self._publisher.publish(outgoing)
        for extra in outgoing.then:
            await self._publisher.publish(extra)
        if outgoing.topic != self._parking.topic:
            self._parking.answered(command)
            # the partition may hold older parking records of it (a rebalance came before the replay
            # position moved past them): they do not come back again, until the position passes ``end``
            self._parking.replay_answered((self._topic, partition), at.offset, end())
            if self._mark_answered:  # before the replay position moves past it (the lane's done)
                marker = answered_marker(self._topic, at.offset)
                await self._publisher.publish(
                    Outgoing(self._parking.topic, None, None, marker, partition=partition)
                )
