"""The delivery engine on the in-memory fakes of bridge.testing: no broker, milliseconds per test."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from bridge.config.settings import EngineSettings
from bridge.kafka.engine import Engine
from bridge.messages.records import Incoming, Outgoing
from bridge.observability.metrics import Metrics
from bridge.testing import FakeConsumer, FakeProducer

TOPIC = "cmd"
OUT = "out"
P0 = TopicPartition(TOPIC, 0)
P1 = TopicPartition(TOPIC, 1)


@dataclass
class Provider:
    """The handler: records what started, and holds a record until the test releases it."""

    held: set[int] = field(default_factory=set)  # offsets that wait for release()
    started: list[int] = field(default_factory=list)
    gates: dict[int, asyncio.Event] = field(default_factory=dict)

    def release(self, *offsets: int) -> None:
        for offset in offsets:
            self.gates.setdefault(offset, asyncio.Event()).set()

    async def __call__(self, record: Incoming) -> Outgoing:
        self.started.append(record.offset)
        if record.offset in self.held:
            await self.gates.setdefault(record.offset, asyncio.Event()).wait()
        return Outgoing(OUT, record.key, f"{record.partition}:{record.offset}".encode())


@dataclass
class World:
    consumer: FakeConsumer
    producer: FakeProducer
    provider: Provider
    engine: Engine
    metrics: Metrics
    task: asyncio.Task[None]

    def answered(self, partition: int = 0) -> list[int]:
        """Offsets of ``partition`` whose outcome the producer acknowledged, in publish order."""
        values = [v.decode().split(":") for v in self.producer.values(OUT) if v is not None]
        return [int(o) for p, o in values if int(p) == partition]

    def committed(self, tp: TopicPartition = P0) -> int | None:
        return self.consumer.committed.get(tp)


async def until(condition: Callable[[], bool], within_s: float = 2.0) -> None:
    async with asyncio.timeout(within_s):
        while not condition():  # noqa: ASYNC110 - the conditions span several objects, no one event
            await asyncio.sleep(0.001)


@pytest.fixture
def settings() -> EngineSettings:
    return EngineSettings(max_in_flight=100, drain_grace_s=2.0, commit_interval_s=0.01)


@pytest.fixture
async def world(settings: EngineSettings) -> AsyncIterator[World]:
    consumer, producer, provider, metrics = FakeConsumer(), FakeProducer(), Provider(), Metrics()
    engine = Engine(consumer, producer, provider, {TOPIC: "run"}, settings, metrics)
    task = asyncio.create_task(engine.run())
    await until(lambda: consumer.topics_subscribed == [TOPIC])
    yield World(consumer, producer, provider, engine, metrics, task)
    engine.request_stop()
    provider.release(*provider.held)
    await asyncio.wait_for(task, 5)


def add(world: World, *keys: bytes | None, partition: int = 0) -> list[int]:
    return [world.consumer.add(TOPIC, b"{}", key=k, partition=partition) for k in keys]


async def test_one_key_runs_in_order_while_other_keys_run_concurrently(world: World) -> None:
    world.provider.held = {0}
    add(world, b"a", b"b", b"a", b"b", b"a")
    await world.consumer.rebalance([P0])
    await until(lambda: world.answered() == [1, 3])  # key b flows while key a waits on offset 0
    assert world.provider.started == [0, 1, 3]  # offsets 2 and 4 (key a) have not started
    world.provider.release(0)
    await until(lambda: len(world.answered()) == 5)
    assert [o for o in world.answered() if o in (0, 2, 4)] == [0, 2, 4]


async def test_records_without_a_key_do_not_wait_for_each_other(world: World) -> None:
    world.provider.held = {0}
    add(world, None, None, None)
    await world.consumer.rebalance([P0])
    await until(lambda: world.answered() == [1, 2])


@pytest.mark.parametrize("settings", [EngineSettings(max_in_flight=3, commit_interval_s=0.01)])
async def test_in_flight_is_bounded_and_fetching_pauses_at_the_limit(world: World) -> None:
    world.provider.held = set(range(10))
    add(world, *[f"k{i}".encode() for i in range(10)])
    await world.consumer.rebalance([P0])
    await until(lambda: world.engine.paused)
    assert world.engine.stats.in_flight == 3 and world.provider.started == [0, 1, 2]
    assert world.consumer.paused() == {P0}
    world.provider.release(*range(10))
    await until(lambda: len(world.answered()) == 10)
    await until(lambda: not world.engine.paused and world.consumer.paused() == set())


async def test_commits_stop_at_the_first_unfinished_offset(world: World) -> None:
    world.provider.held = {1}
    add(world, b"a", b"b", b"c", b"d")
    await world.consumer.rebalance([P0])
    await until(lambda: sorted(world.answered()) == [0, 2, 3])
    await until(lambda: world.committed() == 1)
    await asyncio.sleep(0.05)  # several commit intervals: offsets 2 and 3 are done but not committable
    assert world.committed() == 1
    world.provider.release(1)
    await until(lambda: world.committed() == 4)


async def test_revocation_finishes_queued_records_below_the_highest_started_one(world: World) -> None:
    # key a: 0 (running), 1 and 3 queued behind it; key b: 2 (running). Started so far: 0 and 2.
    world.provider.held = {0, 2}
    add(world, b"a", b"a", b"b", b"a")
    await world.consumer.rebalance([P0])
    await until(lambda: world.provider.started == [0, 2])
    revoking = asyncio.create_task(world.consumer.rebalance([]))
    await asyncio.sleep(0.01)
    world.provider.release(0, 2)
    await asyncio.wait_for(revoking, 2)
    # 1 must run (2 finished past it); 3 is above everything started, so it is left to the next owner
    assert sorted(world.answered()) == [0, 1, 2]
    assert world.committed() == 3  # committed inside the revocation callback: nothing answered twice
    assert 3 not in world.provider.started


async def test_the_next_owner_starts_after_the_last_answered_offset(world: World) -> None:
    world.provider.held = {0}
    add(world, b"a", b"a", b"b", b"a", b"c")
    await world.consumer.rebalance([P0])
    await until(lambda: sorted(world.provider.started) == [0, 2, 4])
    revoking = asyncio.create_task(world.consumer.rebalance([]))
    await asyncio.sleep(0.01)
    world.provider.release(0)
    await asyncio.wait_for(revoking, 2)
    first_owner = sorted(world.answered())
    assert first_owner == [0, 1, 2, 3, 4] and world.committed() == 5
    world.provider.started.clear()
    await world.consumer.rebalance([P0])  # the partition comes back: nothing is redone
    add(world, b"a")
    await until(lambda: world.provider.started == [5])
    await until(lambda: sorted(world.answered()) == [0, 1, 2, 3, 4, 5])


@pytest.mark.parametrize("settings", [EngineSettings(drain_grace_s=0.05, commit_interval_s=0.01)])
async def test_a_drain_that_outlives_the_grace_abandons_the_rest(world: World) -> None:
    world.provider.held = {1}
    add(world, b"a", b"b", b"b")
    await world.consumer.rebalance([P0])
    await until(lambda: world.answered() == [0])
    await asyncio.wait_for(world.consumer.rebalance([]), 1)
    assert world.committed() == 1  # offset 1 never finished; 2 waits behind it and never started
    assert world.engine.stats.in_flight == 0  # the abandoned records were released
    assert world.provider.started == [0, 1]


async def test_a_rebalance_keeps_going_on_the_partitions_that_stay(world: World) -> None:
    add(world, b"a", b"a", partition=1)
    add(world, b"x")
    await world.consumer.rebalance([P0, P1])
    await until(lambda: world.answered(1) == [0, 1] and world.answered(0) == [0])
    await world.consumer.rebalance([P1])  # eager: both revoked and committed, P1 comes back
    assert world.committed(P0) == 1 and world.committed(P1) == 2
    add(world, b"y", partition=1)
    await until(lambda: world.answered(1) == [0, 1, 2])  # resumed at the commit, nothing redone
    assert world.answered(0) == [0] and world.engine.stats.assigned == {P1}


async def test_stop_drains_commits_and_returns(world: World, caplog: pytest.LogCaptureFixture) -> None:
    world.provider.held = {0}
    add(world, b"a", b"a", b"b", b"a")
    await world.consumer.rebalance([P0])
    await until(lambda: sorted(world.provider.started) == [0, 2])
    await until(lambda: world.answered() == [2])
    with caplog.at_level(logging.INFO, logger="bridge.engine"):
        world.engine.request_stop()
        world.engine.request_stop()  # idempotent: said once
    assert caplog.messages.count("stop requested with 1 key routine(s) holding 3 command(s)") == 1
    await asyncio.sleep(0.01)
    world.provider.release(0)
    await asyncio.wait_for(world.task, 2)
    assert sorted(world.answered()) == [0, 1, 2] and world.committed() == 3


async def test_a_failed_final_commit_is_logged_with_its_offsets_and_counted(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    add(world, b"a", b"b")
    await world.consumer.rebalance([P0])
    await until(lambda: world.committed() == 2)
    add(world, b"c")
    await until(lambda: len(world.answered()) == 3)
    world.consumer.commit_error = CommitFailedError("the group rebalanced")
    with caplog.at_level(logging.ERROR, logger="bridge.engine"):
        await world.consumer.rebalance([])
    assert "final commit failed" in caplog.text and f"{TOPIC}[0]@3" in caplog.text
    failed = world.metrics.registry.get_sample_value("bridge_commits_total", {"result": "failed"})
    assert failed is not None and failed >= 1
    assert world.committed() == 2


async def test_a_failing_publish_is_retried_until_acknowledged(settings: EngineSettings) -> None:
    consumer, producer, provider = FakeConsumer(), FakeProducer(), Provider()
    metrics = Metrics()
    engine = Engine(
        consumer,
        producer,
        provider,
        {TOPIC: "run"},
        settings.model_copy(update={"publish_retry_backoff_s": 0.001}),
        metrics,
    )
    producer.fail_next = 3
    task = asyncio.create_task(engine.run())
    await until(lambda: consumer.topics_subscribed == [TOPIC])
    consumer.add(TOPIC, b"{}", key=b"a")
    await consumer.rebalance([P0])
    await until(lambda: consumer.committed.get(P0) == 1)
    assert producer.values(OUT) == [b"0:0"]  # published once, after three refusals
    assert metrics.registry.get_sample_value("bridge_publish_failures_total") == 3
    assert engine.stats.publish_error is None
    engine.request_stop()
    await asyncio.wait_for(task, 2)


def recording(world: World, pick: Callable[[Incoming], Any]) -> list[Any]:
    """What ``pick`` takes of every record the engine hands to the provider, in that order."""
    seen: list[Any] = []
    answer = world.provider.__call__

    async def handler(record: Incoming) -> Outgoing:
        seen.append(pick(record))
        return await answer(record)

    world.engine._handler = handler
    return seen


async def test_a_record_the_client_cannot_decode_is_reported_once_and_passed(world: World) -> None:
    seen = recording(world, lambda record: (record.partition, record.offset, record.undecodable))
    add(world, b"a")
    world.consumer.add_undecodable(TOPIC)
    add(world, b"a", b"b")
    add(world, b"c", partition=1)
    await world.consumer.rebalance([P0, P1])
    await until(lambda: world.committed() == 4 and world.committed(P1) == 1)
    assert sorted((p, o) for p, o, _ in seen) == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]  # each once
    [(_, _, why)] = [s for s in seen if s[2] is not None]
    assert why is not None and "cannot decode" in why and "UnicodeDecodeError" in why
    assert not world.task.done()  # the engine kept running


async def test_a_record_whose_crc_check_always_fails_is_reported_corrupt_once_and_passed(
    world: World,
) -> None:
    seen = recording(world, lambda record: (record.partition, record.offset, record.corrupt))
    add(world, b"a")
    world.consumer.add_corrupt(TOPIC, b"{}")
    add(world, b"a", b"b")
    await world.consumer.rebalance([P0])
    await until(lambda: world.committed() == 4)  # no longer a fetch retried every second, forever
    assert sorted(seen) == [(0, 0, False), (0, 1, True), (0, 2, False), (0, 3, False)]  # each once
    assert not world.task.done()


async def test_a_crc_failure_that_a_reread_does_not_repeat_loses_nothing(world: World) -> None:
    seen = recording(world, lambda record: (record.offset, record.undecodable is not None, record.corrupt))
    world.consumer.add_corrupt(TOPIC, b"{}", failed_reads=2)  # the first fetch and one careful read
    add(world, b"a")
    await world.consumer.rebalance([P0])
    await until(lambda: world.committed() == 2)
    assert seen == [(0, False, False), (1, False, False)]


async def test_a_result_with_neither_key_nor_value_is_sent_with_an_empty_value(world: World) -> None:
    async def no_value(record: Incoming) -> Outgoing:
        return Outgoing(OUT, None, None, [("dlq.reason", b"undecodable")])

    world.engine._handler = no_value
    world.consumer.add(TOPIC, b"{}")
    await world.consumer.rebalance([P0])
    await until(lambda: world.committed() == 1)
    assert world.producer.values(OUT) == [b""]


@dataclass
class RecordedState:
    """The partition state (ledger, parking): records which partitions it was asked to restore."""

    restored: list[TopicPartition] = field(default_factory=list)

    async def restore(self, tps: list[TopicPartition]) -> None:
        self.restored += tps

    def forget(self, tps: list[TopicPartition]) -> None:
        pass


async def test_a_partition_assigned_while_the_member_stops_is_not_restored(settings: EngineSettings) -> None:
    consumer, producer, provider, state = FakeConsumer(), FakeProducer(), Provider(), RecordedState()
    engine = Engine(consumer, producer, provider, {TOPIC: "run"}, settings, Metrics(), state=state)
    task = asyncio.create_task(engine.run())
    await until(lambda: consumer.topics_subscribed == [TOPIC])
    provider.held = {0}
    consumer.add(TOPIC, b"{}", key=b"a")
    await consumer.rebalance([P0])
    await until(lambda: provider.started == [0] and state.restored == [P0])
    engine.request_stop()  # the stop drains offset 0 ...
    await asyncio.sleep(0.01)
    rebalancing = asyncio.create_task(consumer.rebalance([P0, P1]))  # ... while the group rebalances
    await asyncio.sleep(0.01)
    provider.release(0)
    await asyncio.wait_for(rebalancing, 5)
    await asyncio.wait_for(task, 5)
    assert state.restored == [P0]  # none restored again: the stop would not have waited for it
    assert producer.values(OUT) == [b"0:0"]
