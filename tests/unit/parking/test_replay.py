"""Bringing parked commands back (bridge/parking/replay.py, lanes.py) without a broker: keys
concurrently, one key in order, the replay position past finished records only, drained on
revocation like a key routine, a second answer after a lost commit absorbed by the ledger, a record
due later holding up only its own key, the fetch paused at ``max_held``, and a moved partition."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field

import orjson
from aiokafka import TopicPartition

from bridge.config.settings import EngineSettings
from bridge.kafka.engine import Engine
from bridge.kafka.partitions import Partition, Rebalances
from bridge.kafka.publisher import Publisher
from bridge.ledger.store import Ledger
from bridge.messages.records import Incoming, Outgoing
from bridge.messages.wire import Header
from bridge.observability.metrics import Metrics
from bridge.parking.records import ParkedAt, answered_marker, parked_headers
from bridge.parking.replay import Handler, Home, Replayer
from bridge.parking.state import Parking, Replayed, _drain
from bridge.pipeline.processor import Processor
from bridge.testing import FakeConsumer, FakeProducer, FakeTransport
from tests.unit.kafka.test_engine import until
from tests.unit.ledger.test_ledger import NOW_MS
from tests.unit.ledger.test_ledger import FakeProducer as LedgerProducer
from tests.unit.pipeline.test_executor import OK
from tests.unit.pipeline.test_processor import SETTINGS, workfloo
from tests.unit.pipeline.test_processor import processor as make_processor

TOPIC = SETTINGS.topics.run_commands
PARKED = TopicPartition(SETTINGS.topics.parked, 0)


@dataclass
class ParkedRecord:
    """What the replay routine reads from the parking topic."""

    offset: int
    key: bytes | None
    value: bytes | None = b"{}"
    headers: list[Header] = field(default_factory=list)


def parked(
    offset: int, key: bytes, command_offset: int, value: bytes = b"{}", due_in_s: float | None = None
) -> ParkedRecord:
    due_ms = 0 if due_in_s is None else int((time.time() + due_in_s) * 1000)  # default: due long ago
    at = ParkedAt(TOPIC, command_offset, None, due_ms, 2**62, 1, "retry_after")
    return ParkedRecord(offset, key, value, parked_headers(at, []))


HOUR = 3600.0


class Commits:
    def __init__(self, log: list[str] | None = None) -> None:
        self.positions: list[int] = []
        self.log = log if log is not None else []
        self.end: int | None = None  # the parking partition's end as the consumer knows it

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.positions.append(offsets[PARKED])
        self.log.append(f"commit {offsets[PARKED]}")

    def highwater(self, partition: TopicPartition) -> int | None:
        return self.end


class Fetcher(Commits):
    """The replay consumer's fetch side: hands out the records given to it, once."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[ParkedRecord] = []
        self.assigned: list[TopicPartition] = []
        self.paused: set[TopicPartition] = set()
        self.seeks: list[int] = []

    def assign(self, partitions: list[TopicPartition]) -> None:
        self.assigned = partitions

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append(offset)

    def pause(self, *partitions: TopicPartition) -> None:
        self.paused |= set(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self.paused -= set(partitions)

    async def getmany(self, *tps: TopicPartition, timeout_ms: int = 0) -> dict[TopicPartition, list[object]]:
        await asyncio.sleep(0)
        if PARKED in self.paused or PARKED not in self.assigned or not self.waiting:
            return {}
        records, self.waiting = self.waiting, []
        return {PARKED: list(records)}


def replayer(
    handler: Handler, home: Home, producer: FakeProducer | None = None, max_held: int = 1000
) -> tuple[Replayer, Parking]:
    parking = Parking(SETTINGS, Metrics())
    parking.owned.add((TOPIC, 0))
    publisher = Publisher(producer or FakeProducer(), Metrics(), 0.01)
    return Replayer(SETTINGS.kafka, TOPIC, parking, handler, publisher, home, max_held=max_held), parking


def recording(ran: list[int], gate: asyncio.Event | None = None) -> Handler:
    async def handler(command: Incoming) -> Outgoing:
        ran.append(command.offset)
        if gate is not None:
            await gate.wait()
        return Outgoing("out", command.key, b"x")

    return handler


def recorded(gate: asyncio.Event | None = None, max_held: int = 1000) -> tuple[list[int], Replayer, Parking]:
    """A replayer whose handler records the command offsets it runs, in a partition of its own."""
    ran: list[int] = []
    home = Partition(TopicPartition(TOPIC, 0))
    run, parking = replayer(recording(ran, gate), lambda topic, partition: home, max_held=max_held)
    return ran, run, parking


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

    home = CountingPartition(TopicPartition(TOPIC, 0))
    home.keys[b"a"] = deque([Incoming(TOPIC, 0, 4, b"a", b"{}"), Incoming(TOPIC, 0, 5, b"a", b"{}")])
    run, _ = replayer(handler, lambda topic, partition: home)
    task = asyncio.create_task(run.replay_batch(Commits(), PARKED, [parked(0, b"a", 10)]))
    await asyncio.sleep(0.5)
    assert ran == []  # offsets 4 and 5 of its key are still in the engine
    assert home.asked == 1  # and it sleeps meanwhile: polling asked every 50 ms
    home.advance(home.keys[b"a"], b"a")  # what the engine's key routine does as each one is answered
    await asyncio.sleep(0.05)
    assert ran == [] and home.asked == 2  # offset 5 still there
    home.drop_key(b"a")
    assert await task and ran == [10]


class CountingPartition(Partition):
    asked = 0

    def holds_before(self, key: bytes, offset: int) -> bool:
        self.asked += 1
        return super().holds_before(key, offset)


async def test_a_command_waiting_behind_its_key_stops_waiting_when_the_partition_closes() -> None:
    ran: list[int] = []
    home = Partition(TopicPartition(TOPIC, 0))
    home.keys[b"a"] = deque([Incoming(TOPIC, 0, 5, b"a", b"{}")])
    run, _ = replayer(recording(ran), lambda topic, partition: home)
    task = asyncio.create_task(run.replay_batch(Commits(), PARKED, [parked(0, b"a", 10)]))
    await asyncio.sleep(0.05)
    home.close()  # revoked: nothing more starts here
    assert await asyncio.wait_for(task, 1) is False and ran == []


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


async def test_a_record_due_in_an_hour_holds_up_neither_other_keys_nor_the_fetch() -> None:
    ran, run, _ = recorded()
    fetcher = Fetcher()
    fetcher.waiting = [parked(0, b"a", 10, due_in_s=HOUR), parked(1, b"b", 11), parked(2, b"c", 12)]
    await run.round(fetcher)  # returns although offset 0 waits for an hour
    await until(lambda: len(ran) >= 2)
    fetcher.waiting = [parked(2, b"c", 12), parked(3, b"d", 13)]  # offset 2 read again by the client
    await run.round(fetcher)  # the next fetch does not wait for the first batch either
    await until(lambda: len(ran) >= 3)
    await asyncio.sleep(0.05)
    assert sorted(ran) == [11, 12, 13]
    # the position stays below the unfinished record due in an hour: a crash re-reads it
    assert fetcher.positions == []
    run.stop()


async def test_one_keys_later_record_due_earlier_waits_for_the_earlier_one() -> None:
    ran, run, _ = recorded()
    commits = Commits()
    batch = [parked(0, b"a", 10, due_in_s=0.3), parked(1, b"a", 11), parked(2, b"b", 12)]
    assert await run.replay_batch(commits, PARKED, batch)
    assert ran == [12, 10, 11]  # b at once; a's second only after a's first, due later
    assert commits.positions[-1] == 3 and commits.positions == sorted(commits.positions)


async def test_the_position_moves_up_to_the_far_due_record_and_not_past_it() -> None:
    ran, run, _ = recorded()
    fetcher = Fetcher()
    fetcher.waiting = [parked(0, b"b", 10), parked(1, b"a", 11, due_in_s=HOUR), parked(2, b"c", 12)]
    await run.round(fetcher)
    await until(lambda: sorted(ran) == [10, 12])
    await asyncio.sleep(0.05)
    assert fetcher.positions == [1]  # past offset 0; offset 2 ended too, but 1 has not
    run.stop()


async def test_a_lane_holding_more_than_max_held_pauses_its_fetch_until_it_holds_fewer() -> None:
    gate = asyncio.Event()
    ran, run, _ = recorded(gate, max_held=2)
    fetcher = Fetcher()
    fetcher.waiting = [parked(n, f"k{n}".encode(), 10 + n) for n in range(3)]
    await run.round(fetcher)
    assert fetcher.paused == {PARKED}  # 3 held, more than 2
    fetcher.waiting = [parked(3, b"k3", 13)]
    await run.round(fetcher)
    assert fetcher.waiting and fetcher.paused == {PARKED}  # nothing fetched while paused
    gate.set()
    await until(lambda: fetcher.positions[-1:] == [3])
    await run.round(fetcher)
    assert not fetcher.waiting and fetcher.paused == set()  # resumed: offset 3 fetched
    await until(lambda: fetcher.positions[-1:] == [4])
    assert ran == [10, 11, 12, 13]
    run.stop()


async def test_a_partition_that_moves_runs_nothing_more_and_coming_back_reads_on_from_the_commit() -> None:
    ran: list[int] = []
    home = Partition(TopicPartition(TOPIC, 0))
    run, parking = replayer(recording(ran), lambda topic, partition: home)
    fetcher = Fetcher()
    fetcher.waiting = [parked(0, b"a", 10), parked(1, b"b", 11, due_in_s=0.2)]
    await run.round(fetcher)
    await until(lambda: fetcher.positions == [1])
    parking.owned.clear()  # revoked
    await run.round(fetcher)
    assert fetcher.assigned == []
    await asyncio.sleep(0.4)  # offset 1 became due meanwhile
    assert ran == [10] and not home.tasks  # its waiter ended without running it
    parking.owned.add((TOPIC, 0))  # assigned again: a new lane reads from the committed position
    fetcher.waiting = [parked(1, b"b", 11)]  # what the broker hands out from offset 1
    await run.round(fetcher)
    assert fetcher.assigned == [PARKED] and fetcher.seeks == []
    await until(lambda: fetcher.positions[-1:] == [2])
    assert ran == [10, 11]  # offset 1 once, offset 0 not again
    run.stop()


async def test_coming_back_while_a_record_brought_back_still_runs_waits_for_it_to_end() -> None:
    gate = asyncio.Event()
    ran, run, parking = recorded(gate)
    fetcher = Fetcher()
    fetcher.waiting = [parked(0, b"a", 10)]
    await run.round(fetcher)
    await until(lambda: ran == [10])  # brought back: running in the engine
    parking.owned.clear()  # revoked (the engine drains it)
    await run.round(fetcher)
    parking.owned.add((TOPIC, 0))  # and back while it still runs
    await run.round(fetcher)
    # not read again from the committed position while it runs, but still assigned (paused): the
    # drain's commit of its replay position must be accepted (issue 25.4)
    assert fetcher.assigned == [PARKED] and PARKED in fetcher.paused
    gate.set()
    await until(lambda: fetcher.positions == [1])
    fetcher.waiting = [parked(1, b"a", 11)]  # what the broker hands out from offset 1
    await run.round(fetcher)
    assert fetcher.assigned == [PARKED]
    await until(lambda: len(ran) >= 2)
    assert ran == [10, 11]
    run.stop()


async def test_the_engine_tells_a_parked_command_when_its_keys_earlier_one_is_answered() -> None:
    gate, events = asyncio.Event(), []

    async def handler(command: Incoming) -> Outgoing:
        events.append(f"start {command.offset}")
        if command.offset == 0:
            await gate.wait()  # the key's earlier command hangs in the engine
        return Outgoing("out", command.key, b"x")

    consumer, producer = FakeConsumer(), FakeProducer()
    engine = Engine(
        consumer, producer, handler, {TOPIC: "run"}, EngineSettings(commit_interval_s=0.01), Metrics()
    )
    running = asyncio.create_task(engine.run())
    await until(lambda: consumer.topics_subscribed == [TOPIC])
    await consumer.rebalance([TopicPartition(TOPIC, 0)])
    consumer.add(TOPIC, b"{}", key=b"a", partition=0)
    await until(lambda: events == ["start 0"])
    run, _ = replayer(handler, engine.partition)
    batch = asyncio.create_task(run.replay_batch(Commits(events), PARKED, [parked(0, b"a", 1)]))
    await asyncio.sleep(0.2)
    assert events == ["start 0"]  # offset 0 of its key is still in the engine
    gate.set()
    await until(lambda: "start 1" in events, within_s=0.5)
    assert await batch
    engine.request_stop()
    await asyncio.wait_for(running, 5)


async def test_an_answered_command_is_remembered_until_the_replay_position_passes_the_end_seen_then() -> None:
    ran, run, parking = recorded()
    fetcher = Fetcher()
    fetcher.end = 5  # the parking partition holds 5 records; the first fetch hands out one
    fetcher.waiting = [parked(0, b"a", 10)]
    await run.round(fetcher)
    await until(lambda: fetcher.positions == [1])
    replayed = parking.replayed[(TOPIC, 0)]
    assert ran == [10] and 10 in replayed  # answered while the partition ended at 5
    # an older parking record of the same command (written before a rebalance), below that end
    fetcher.waiting = [parked(1, b"a", 10)]
    await run.round(fetcher)
    await until(lambda: fetcher.positions == [1, 2])
    assert ran == [10] and 10 in replayed  # skipped: not brought back a second time
    fetcher.waiting = [parked(n, b"b", 10 + n) for n in (2, 3, 4)]
    await run.round(fetcher)
    await until(lambda: fetcher.positions[-1:] == [5])
    assert ran == [10, 12, 13, 14]
    assert len(replayed) == 0  # the position passed 5: nothing below it is ever read again
    run.stop()


def test_the_replayed_set_drops_each_offset_once_the_position_passes_its_end() -> None:
    replayed = Replayed()
    replayed.add(10, end=5)
    replayed.add(11, end=8)
    replayed.add(10, end=7)  # answered again later (another of its parking records): the later end
    replayed.passed(5)
    assert 10 in replayed and 11 in replayed and len(replayed) == 2
    replayed.passed(7)
    assert 10 not in replayed and 11 in replayed
    replayed.passed(8)
    assert len(replayed) == 0


async def test_a_restore_remembers_answered_markers_until_the_end_it_read_to() -> None:
    consumer = FakeConsumer()
    consumer.subscribe([PARKED.topic], listener=Rebalances(lambda tps: asyncio.sleep(0), lambda tps: None))
    for n in range(3):  # parked twice before a rebalance, then answered
        headers = answered_marker(TOPIC, 10) if n == 2 else parked(n, b"a", 10).headers
        consumer.add(PARKED.topic, b"{}", key=b"a", headers=headers)
    consumer.add(PARKED.topic, b"{}", key=b"b", headers=parked(3, b"b", 11).headers)  # parked now
    await consumer.rebalance([PARKED])
    found, answered = await _drain(consumer, {PARKED}, TOPIC)  # type: ignore[arg-type]
    assert found == {0: {b"b": {11}}}  # command 10 is not parked any more
    assert 10 in answered[0]
    answered[0].passed(3)
    assert 10 in answered[0]  # the restore read to 4
    answered[0].passed(4)
    assert 10 not in answered[0]
