"""The parking state of the owned command partitions (the parked set) and its two rules: why a command
must park now, and the record that parks it. :mod:`bridge.pipeline.desk` says at which moments the processor
asks.

A command parks, instead of calling, when an earlier command of its key is parked (``key_parked``,
so that key order holds), when its target's bulkhead is full (``bulkhead_full``) or when its target's
circuit is open (``circuit_open``). It parks before its ``dispatched`` ledger entry, so it never
counts as in doubt. A command whose retries ended on a wait (the circuit opened or the bulkhead
filled while it waited, or a ``Retry-After`` beyond its budget: ``retry_after``) parks after its
calls; the processor then forgets its ``dispatched`` entry (a ledger tombstone), so that it runs
again as a new command when it comes back. A parked command that comes back and must wait again
is parked again with the same ``until``; once ``until`` has passed it is answered with the refusal
instead.

The parked set is state of the command partition: restored on assignment from the parking partition
(every record after the replayer's committed position is parked now) and dropped on revocation.

So is ``replayed``: the command offsets whose parked record was answered, so that an older parking
record of the same command (written before a rebalance) does not bring it back again. All of a
command's parking records lie below the parking partition's end when it was answered (a re-park is
written before the answer, and nothing parks an answered command again), so each offset is kept only
until the replay position passes that end (:class:`Replayed`): the set follows what may still be
read, not everything answered since the partition was assigned.

Example::

    parking = Parking(settings, metrics)
    reason = parking.reason(record, runtime, shed=False)
    outgoing_or_decision = parking.park(record, runtime, reason) if reason else None
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Iterable, Mapping

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.config.settings import Settings
from bridge.kafka.clients import make_reader, read_to_end, started
from bridge.messages.outcomes import ErrorKind
from bridge.messages.records import Incoming, Outgoing
from bridge.observability.metrics import Metrics
from bridge.observability.repeats import COLLAPSE
from bridge.parking.records import (
    ParkedAt,
    ParkedSet,
    PartitionKey,
    parked_headers,
    read_answered,
    read_parked,
)
from bridge.parking.recovery import Recovery
from bridge.pipeline import decide
from bridge.pipeline.decide import Decision
from bridge.pipeline.executor import TargetRuntime

log = logging.getLogger("bridge.parking")
_REFUSAL = {"circuit_open": ErrorKind.CIRCUIT_OPEN}


def replay_group(group_id: str, command_topic: str) -> str:
    """The consumer group whose committed offsets say how far a command topic's parked work came back."""
    return f"{group_id}.parked.{command_topic}"


class Parking:
    def __init__(
        self, settings: Settings, metrics: Metrics, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.topic = settings.topics.parked
        self._kafka = settings.kafka
        self._backoff_s = settings.engine.publish_retry_backoff_s
        self._metrics = metrics
        self._clock = clock
        self.parked = ParkedSet()
        # command offsets whose parked records were answered (answered markers after the replay position)
        self.replayed: dict[PartitionKey, Replayed] = {}
        self.owned: set[PartitionKey] = set()
        self.moved = asyncio.Event()  # set when ``owned`` changes: the replayers reassign
        self._waiting: dict[str, dict[str, int]] = {}  # command topic -> target -> held for recovery
        self.recovery = Recovery()  # early returns when a target is back; ``watch`` gives it the targets

    # -- decisions -------------------------------------------------------------------------------

    def reason(self, record: Incoming, runtime: TargetRuntime, *, shed: bool) -> str | None:
        """Why this command must park now, or None when it may run."""
        if record.key is not None and self.parked.blocked(
            (record.topic, record.partition), record.key, record.offset
        ):
            return "key_parked"
        if shed:
            return "bulkhead_full"
        if runtime.breaker.refusing():
            return "circuit_open"
        return None

    def park(
        self,
        record: Incoming,
        runtime: TargetRuntime,
        reason: str,
        wait_s: float = 0.0,
        expires_in_s: float | None = None,
        *,
        command_id: str | None = None,
        recovers: bool = True,
    ) -> Outgoing | Decision:
        """The record for the parking topic, due after ``retry_s`` (or ``wait_s`` when longer: a
        provider's ``Retry-After``) but no later than the command's deadline (``expires_in_s``: it
        is then answered ``expired``), or the refusal once the command waited its longest.
        ``recovers``: its target's recovery brings it back before it is due (parking/recovery.py)."""
        now_ms = int(self._clock() * 1000)
        before = read_parked(record.headers)
        policy = runtime.settings.parking
        until = before.until_ms if before else now_ms + int(policy.max_delay_s * 1000)
        if now_ms >= until:
            self.answered(record)
            return decide.refused(_REFUSAL.get(reason, ErrorKind.TARGET_BUSY), runtime.name, 0)
        due = min(now_ms + int(max(policy.retry_s, wait_s) * 1000), until)
        if expires_in_s is not None:
            due = min(due, now_ms + int(max(0.0, expires_in_s) * 1000))
        count = before.count + 1 if before else 1
        stamp = before.timestamp_ms if before else record.timestamp_ms
        at = ParkedAt(
            record.topic, record.offset, stamp, due, until, count, reason, runtime.name, now_ms, recovers
        )
        if record.key is not None:
            self.parked.add((record.topic, record.partition), record.key, record.offset)
        self._metrics.parked(runtime.name, reason, len(self.parked))
        _log_parked(record, at, command_id, (due - now_ms) / 1000)
        headers = parked_headers(at, record.headers)
        return Outgoing(self.topic, record.key, record.value, headers, partition=record.partition)

    def waiting(self, command_topic: str, counts: Mapping[str, int]) -> None:
        """What a replayer holds for its targets' recovery now (bridge_parked_waiting_commands)."""
        self._waiting[command_topic] = dict(counts)
        targets = {target for held in self._waiting.values() for target in held}
        for target in sorted(targets - {""}):
            self._metrics.parked_waiting(target, sum(held.get(target, 0) for held in self._waiting.values()))

    def came_back(self, at: ParkedAt, why: str) -> None:
        """A parked command comes back: ``due``, or early because its target is back (``recovered``)
        or as the probe of its target (``probe``)."""
        waited = max(0.0, self._clock() - at.since_ms / 1000) if at.since_ms else None
        self._metrics.parked_return(at.target or "unknown", why, waited)
        if why != "due":
            log.info(
                "parked %s@%s comes back early: target %s %s",
                at.topic,
                at.offset,
                at.target,
                "is back" if why == "recovered" else "is probed with it",
                extra={"target": at.target, "reason": at.reason, "return": why},
            )

    def answered(self, record: Incoming) -> None:
        """A parked command got its outcome: its key's next command may run."""
        if record.key is not None:
            self.parked.discard((record.topic, record.partition), record.key, record.offset)
        self._metrics.parked_now(len(self.parked))

    def replay_answered(self, where: PartitionKey, offset: int, end: int) -> None:
        """The command at ``offset`` of command partition ``where`` was answered when the parking
        partition ended at ``end``: a parking record of it below ``end`` does not come back again."""
        self.replayed.setdefault(where, Replayed()).add(offset, end)

    def replay_passed(self, where: PartitionKey, position: int) -> None:
        """The replay position of ``where``'s parking partition was committed at ``position``."""
        replayed = self.replayed.get(where)
        if replayed is not None:
            replayed.passed(position)

    # -- partition state (bridge/kafka/restores.py) ---------------------------------------------

    async def restore(self, tps: list[TopicPartition]) -> None:
        wanted = {(tp.topic, tp.partition) for tp in tps}
        for topic in sorted({topic for topic, _ in wanted}):
            partitions = sorted(p for t, p in wanted if t == topic)
            keys, answered = await self._read_parked(topic, partitions)
            for partition in partitions:
                self.parked.replace((topic, partition), keys.get(partition, {}))
                self.replayed[(topic, partition)] = answered.get(partition, Replayed())
        self.owned |= wanted
        self.moved.set()
        self._metrics.parked_now(len(self.parked))

    def forget(self, tps: list[TopicPartition]) -> None:
        for tp in tps:
            self.owned.discard((tp.topic, tp.partition))
            self.parked.forget((tp.topic, tp.partition))
            self.replayed.pop((tp.topic, tp.partition), None)
        self.moved.set()
        self._metrics.parked_now(len(self.parked))

    async def _read_parked(self, topic: str, partitions: list[int]) -> tuple[Parked, Answered]:
        while True:
            try:
                return await self._read_once(topic, partitions)
            except KafkaError as exc:
                log.warning("reading the parked commands failed, retrying: %s", exc, extra=COLLAPSE)
                await asyncio.sleep(self._backoff_s)

    async def _read_once(self, topic: str, partitions: list[int]) -> tuple[Parked, Answered]:
        """Every record after the replay group's committed position is parked now, unless an answered
        marker after it says that its command got its outcome."""
        reader = make_reader(self._kafka, replay_group(self._kafka.group_id, topic), fetch_max_wait_ms=10)
        async with started(reader) as consumer:
            remaining = {TopicPartition(self.topic, p) for p in partitions}
            consumer.assign(list(remaining))
            return await _drain(consumer, remaining, topic)


class Replayed:
    """The answered command offsets of one command partition, each until the replay position passes
    the parking partition's end seen when it was answered (no parking record of it lies beyond)."""

    def __init__(self) -> None:
        self._ends: dict[int, int] = {}  # command offset -> parking end when answered
        self._heap: list[tuple[int, int]] = []  # (end, command offset), the first to be passed first

    def add(self, offset: int, end: int) -> None:
        end = max(end, self._ends.get(offset, end))
        self._ends[offset] = end
        heapq.heappush(self._heap, (end, offset))

    def passed(self, position: int) -> None:
        """The replay position is ``position``: what was answered below it can never be read again."""
        heap = self._heap
        while heap and heap[0][0] <= position:
            end, offset = heapq.heappop(heap)
            if self._ends.get(offset) == end:
                del self._ends[offset]

    def __contains__(self, offset: object) -> bool:
        return offset in self._ends

    def __len__(self) -> int:
        return len(self._ends)


Parked = dict[int, dict[bytes, set[int]]]  # partition -> key -> command offsets parked
Answered = dict[int, Replayed]  # partition -> command offsets answered


async def _drain(
    consumer: AIOKafkaConsumer, remaining: set[TopicPartition], topic: str
) -> tuple[Parked, Answered]:
    found: Parked = {}
    done: dict[int, set[int]] = {}
    ends = {tp.partition: 0 for tp in remaining}  # where each partition's read ended
    parking = {tp.partition: tp for tp in remaining}
    async for tp, records in read_to_end(consumer, remaining):
        for record in records:
            marker = read_answered(getattr(record, "headers", ()) or ())
            if marker is not None and marker[0] == topic:
                done.setdefault(tp.partition, set()).add(marker[1])
        for at, key in _parked_keys(records, topic):
            found.setdefault(tp.partition, {}).setdefault(key, set()).add(at.offset)
        ends[tp.partition] = max([ends[tp.partition], *(record.offset + 1 for record in records)])
    answered: Answered = {}
    for partition, offsets_done in done.items():  # answered before the partition moved: not parked now
        end = max(ends[partition], consumer.highwater(parking[partition]) or 0)  # the end read to
        answered[partition] = replayed = Replayed()
        for offset in offsets_done:
            replayed.add(offset, end)
        for key, offsets in list(found.get(partition, {}).items()):
            offsets -= offsets_done
            if not offsets:
                del found[partition][key]
    return found, answered


def _parked_keys(records: Iterable[object], topic: str) -> Iterable[tuple[ParkedAt, bytes]]:
    for record in records:
        at = read_parked(getattr(record, "headers", ()) or ())
        key = getattr(record, "key", None)
        if at is not None and at.topic == topic and key is not None:
            yield at, key


def _log_parked(record: Incoming, at: ParkedAt, command_id: str | None, due_in_s: float) -> None:
    log.info(
        "parked command %s for target %s (%s), back in %.0fs at the latest (%s/%s@%s)",
        command_id or "?",
        at.target,
        at.reason,
        due_in_s,
        record.topic,
        record.partition,
        record.offset,
        extra={"command_id": command_id, "target": at.target, "reason": at.reason, "count": at.count},
    )
