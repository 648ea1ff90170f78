"""Bring parked commands back when due: one routine per command topic reads the parking partitions of
the command partitions this member owns, waits for each record's due time, hands it to the processor
as the command record it was (same topic, partition and offset), publishes what comes back (the
outcome, or the record parked again) and commits past it in the replay group.

Records of one parking partition come back one at a time, in partition order, so a key's commands
come back in the order they parked. A record due later holds up the records behind it in the same
parking partition (they park again behind it at most ``retry_s`` later). A command parked while an
earlier command of its key was still in the engine (shed at its target's share, see
bridge/budgets.py) comes back only once that one is answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from bridge.kafka_options import client_options
from bridge.parking.park import Parking, replay_group
from bridge.parking.records import ParkedAt, read_parked
from bridge.publisher import Publisher
from bridge.records import Incoming, Outgoing
from bridge.settings import KafkaSettings

log = logging.getLogger("bridge.parking")
Handler = Callable[[Incoming], Awaitable[Outgoing]]
# the engine's Engine.holds_before: is an earlier record of this key still in the engine?
Busy = Callable[[str, int, bytes, int], bool]


class Replayer:
    def __init__(
        self,
        kafka: KafkaSettings,
        command_topic: str,
        parking: Parking,
        handler: Handler,
        publisher: Publisher,
        busy: Busy | None = None,
    ) -> None:
        self._busy = busy
        self._kafka = kafka
        self._topic = command_topic
        self._parking = parking
        self._handler = handler
        self._publisher = publisher
        self._assigned: set[int] = set()

    async def run(self) -> None:
        consumer = AIOKafkaConsumer(
            **client_options(self._kafka),
            group_id=replay_group(self._kafka.group_id, self._topic),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=50,
        )
        await consumer.start()
        try:
            while True:
                await self._round(consumer)
        finally:
            with contextlib.suppress(KafkaError):
                await consumer.stop()

    async def _round(self, consumer: AIOKafkaConsumer) -> None:
        self._reassign(consumer)
        if not self._assigned:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._parking.moved.wait(), timeout=1.0)
            return
        try:
            batch = await consumer.getmany(timeout_ms=200)
            for tp, records in batch.items():
                for record in records:
                    if not await self._replay(consumer, tp, record):
                        break  # the partition moved: its new owner replays the rest
        except KafkaError as exc:
            log.warning("replaying parked commands failed, retrying: %s", exc)
            await asyncio.sleep(1.0)

    def _reassign(self, consumer: AIOKafkaConsumer) -> None:
        self._parking.moved.clear()
        owned = {p for topic, p in self._parking.owned if topic == self._topic}
        if owned != self._assigned:
            consumer.assign([TopicPartition(self._parking.topic, p) for p in sorted(owned)])
            self._assigned = owned

    async def _replay(self, consumer: AIOKafkaConsumer, tp: TopicPartition, record: Any) -> bool:
        at = read_parked(record.headers or ())
        if at is not None and at.topic == self._topic:
            if not await self._until_due(at, tp.partition, record.key):
                return False
            await self._run(record, at, tp.partition)
        await consumer.commit({tp: record.offset + 1})
        return True

    async def _until_due(self, at: ParkedAt, partition: int, key: bytes | None) -> bool:
        """Wait for the due time and for the key's earlier commands in the engine; False when the
        partition moved meanwhile."""
        while (wait := self._wait_s(at, partition, key)) > 0:
            if (self._topic, partition) not in self._parking.owned:
                return False
            await asyncio.sleep(min(wait, 0.5))
        return (self._topic, partition) in self._parking.owned

    def _wait_s(self, at: ParkedAt, partition: int, key: bytes | None) -> float:
        wait = at.due_ms / 1000 - time.time()
        if wait <= 0 and key is not None and self._busy is not None:
            return 0.05 if self._busy(self._topic, partition, key, at.offset) else 0.0
        return wait

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
