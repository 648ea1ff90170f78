"""Bringing parked commands back (bridge/parking/replay.py) without a broker: keys concurrently, one
key in order, the replay position past finished records only, drained on revocation like a key
routine, and a second answer after a lost commit absorbed by the ledger."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

import orjson
from aiokafka import TopicPartition

from bridge.engine import Engine
from bridge.ledger.store import Ledger
from bridge.metrics import Metrics
from bridge.parking.park import Parking
from bridge.parking.records import ParkedAt, parked_headers
from bridge.parking.replay import Handler, Home, Replayer
from bridge.partitions import Partition
from bridge.processor import Processor
from bridge.publisher import Publisher
from bridge.records import Incoming, Outgoing
from bridge.settings import EngineSettings
from bridge.testing import FakeConsumer, FakeProducer, FakeTransport
from bridge.wire import Header
from tests.unit.test_engine import until
from tests.unit.test_executor import OK
from tests.unit.test_ledger import NOW_MS
from tests.unit.test_ledger import FakeProducer as LedgerProducer
from tests.unit.test_processor import SETTINGS, workfloo
from tests.unit.test_processor import processor as make_processor

TOPIC = SETTINGS.topics.run_commands
PARKED = TopicPartition(SETTINGS.topics.parked, 0)


@dataclass
class ParkedRecord:
    """What the replay routine reads from the parking topic."""

    offset: int
    key: bytes | None
    value: bytes | None = b"{}"
    headers: list[Header] = field(default_factory=list)


def parked(offset: int, key: bytes, command_offset: int, value: bytes = b"{}") -> ParkedRecord:
    at = ParkedAt(TOPIC, command_offset, None, 0, 2**62, 1, "circuit_open")  # due long ago
    return ParkedRecord(offset, key, value, parked_headers(at, []))


class Commits:
    def __init__(self, log: list[str] | None = None) -> None:
        self.positions: list[int] = []
        self.log = log if log is not None else []

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.positions.append(offsets[PARKED])
        self.log.append(f"commit {offsets[PARKED]}")


def replayer(handler: Handler, home: Home, producer: FakeProducer | None = None) -> tuple[Replayer, Parking]:
    parking = Parking(SETTINGS, Metrics())
    parking.owned.add((TOPIC, 0))
    publisher = Publisher(producer or FakeProducer(), Metrics(), 0.01)
    return Replayer(SETTINGS.kafka, TOPIC, parking, handler, publisher, home), parking


async def test_keys_come_back_concurrently_one_key_in_order_and_the_position_follows() -> None:
    gate, ran = asyncio.Event(), []

    async def handler(command: Incoming) -> Outgoing:
        ran.append(command.offset)
        if command.offset == 10:  # key a's first command is slow
            await gate.wait()
        return Outgoing("out", command.key, b"x")

    home = Partition(TopicPartition(TOPIC, 0))
    run, _ = replayer(handler, lambda topic, partition: home)
    commits = Commits()
    batch = [parked(0, b"a", 10), parked(1, b"b", 11), parked(2, b"a", 12), parked(3, b"b", 13)]
    task = asyncio.create_task(run.replay_batch(commits, PARKED, batch))
    await until(lambda: ran == [10, 11, 13])  # b went on; a's second waits for a's first
    assert commits.positions == []  # nothing passed while the first record is not done
    gate.set()
    assert await task is True
    assert ran == [10, 11, 13, 12] and commits.positions[-1] == 4
    assert commits.positions == sorted(commits.positions)


async def test_a_command_waits_for_an_earlier_one_of_its_key_still_in_the_engine() -> None:
    ran: list[int] = []

    async def handler(command: Incoming) -> Outgoing:
        ran.append(command.offset)
        return Outgoing("out", command.key, b"x")

    home = Partition(TopicPartition(TOPIC, 0))
    home.keys[b"a"] = deque([Incoming(TOPIC, 0, 5, b"a", b"{}")])  # running there
    run, _ = replayer(handler, lambda topic, partition: home)
    task = asyncio.create_task(run.replay_batch(Commits(), PARKED, [parked(0, b"a", 10)]))
    await asyncio.sleep(0.2)
    assert ran == []  # offset 5 of its key is still in the engine
    del home.keys[b"a"]
    assert await task and ran == [10]


async def test_a_revocation_drains_the_command_being_brought_back_like_a_key_routine() -> None:
    gate, events = asyncio.Event(), []

    async def handler(command: Incoming) -> Outgoing:
        events.append("replay started")
        await gate.wait()
        events.append("replay answered")
        return Outgoing("out", command.key, b"x")

    consumer = FakeConsumer()
    engine = Engine(
        consumer,
        FakeProducer(),
        handler,
        {TOPIC: "run"},
        EngineSettings(commit_interval_s=0.01, drain_grace_s=5),
        Metrics(),
    )
    running = asyncio.create_task(engine.run())
    await until(lambda: consumer.topics_subscribed == [TOPIC])
    await consumer.rebalance([TopicPartition(TOPIC, 0)])
    run, _ = replayer(handler, engine.partition)
    batch = asyncio.create_task(run.replay_batch(Commits(events), PARKED, [parked(0, b"a", 10)]))
    await until(lambda: events == ["replay started"])
    revoking = asyncio.create_task(consumer.rebalance([]))
    await asyncio.sleep(0.1)
    assert not revoking.done()  # the revocation waits for the command being brought back
    gate.set()
    await revoking
    assert events == ["replay started", "replay answered", "commit 1"]  # its position moved first
    assert engine.partition(TOPIC, 0) is None and await batch
    engine.request_stop()
    await asyncio.wait_for(running, 5)


async def test_a_second_answer_after_a_lost_replay_commit_is_absorbed_by_the_ledger() -> None:
    ledger = Ledger(SETTINGS, LedgerProducer(), Metrics(), clock=lambda: NOW_MS / 1000)  # type: ignore[arg-type]
    plain = make_processor(FakeTransport.scripted([OK]))  # one call, not two
    proc = Processor(SETTINGS, plain._targets, plain._executor, Metrics(), ledger)
    producer = FakeProducer()
    home = Partition(TopicPartition(TOPIC, 0))
    record = parked(0, b"a", 10, value=orjson.dumps(workfloo()))
    first, _ = replayer(proc.replay, lambda topic, partition: home, producer)
    await first.replay_batch(Commits(), PARKED, [record])
    assert len(producer.values(SETTINGS.topics.run_outcomes)) == 1
    published = len(producer.values())
    second, _ = replayer(proc.replay, lambda topic, partition: home, producer)  # its commit was lost
    await second.replay_batch(Commits(), PARKED, [record])
    assert len(producer.values()) == published  # no call, no second outcome, no dead letter
