"""A command partition's transactions: batched by count and time, the offset committed inside the
transaction, and a failed commit aborted and handed back (fenced or not)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced

from bridge.config.settings import KafkaSettings
from bridge.kafka.delivery import transactional_id
from bridge.kafka.partitions import Partition
from bridge.kafka.transactions import Transactions
from bridge.messages.records import Incoming, Outgoing
from bridge.observability.metrics import Metrics

TP = TopicPartition("run.commands", 3)


class FakeTxnProducer:
    def __init__(self, txn_id: str, fail: KafkaError | None = None) -> None:
        self.txn_id = txn_id
        self.fail = fail
        self.log: list[Any] = []
        self.stopped = False

    async def start(self) -> None:
        self.log.append("init")

    async def stop(self) -> None:
        self.stopped = True

    async def begin_transaction(self) -> None:
        self.log.append("begin")

    async def send(self, topic: str, **kw: Any) -> asyncio.Future[None]:
        self.log.append(("send", topic, kw["value"]))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    async def send_offsets_to_transaction(self, offsets: dict[TopicPartition, int], group_id: str) -> None:
        self.log.append(("offsets", dict(offsets), group_id))

    async def commit_transaction(self) -> None:
        if self.fail is not None:
            raise self.fail
        self.log.append("commit")

    async def abort_transaction(self) -> None:
        self.log.append("abort")


class World:
    def __init__(self, fail: KafkaError | None = None, **kafka: Any) -> None:
        self.kafka = KafkaSettings(group_id="g", **kafka)
        self.metrics = Metrics()
        self.producers: list[FakeTxnProducer] = []
        self.committed: list[list[int]] = []
        self.failed: list[tuple[list[int], bool]] = []

        def make(_: KafkaSettings, txn_id: str) -> Any:
            self.producers.append(FakeTxnProducer(txn_id, fail))
            return self.producers[-1]

        self.txn = Transactions(self.kafka, self.metrics, make)
        self.txn.bind(
            lambda _p, records: self.committed.append([r.offset for r in records]),
            lambda _p, records, fenced: self.failed.append(([r.offset for r in records], fenced)),
        )
        self.partition = Partition(TP)

    def finish(self, offset: int) -> bool:
        self.partition.tracker.add(offset)
        record = Incoming(TP.topic, TP.partition, offset, b"k", b"v")
        outcome = Outgoing("run.outcomes", b"k", b"outcome-%d" % offset)
        done = Outgoing("ledger", b"cmd:%d" % offset, b"done", partition=TP.partition)
        return self.txn.add(self.partition, record, (outcome, done))

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels or None) or 0.0


def test_the_transactional_id_names_the_group_topic_and_partition() -> None:
    assert (
        transactional_id("workflow-bridge", "workflow.run.commands", 7)
        == "workflow-bridge.workflow.run.commands.7"
    )


async def test_a_full_batch_commits_its_outcomes_done_entries_and_offset_in_one_transaction() -> None:
    world = World(transaction_batch_max=3, transaction_batch_ms=60_000)
    await world.txn.open(world.partition)
    [producer] = world.producers
    assert producer.txn_id == "g.run.commands.3" and producer.log == ["init"]
    for offset in (10, 11, 12):
        assert world.finish(offset)
    await asyncio.sleep(0.05)  # the flusher runs: full, long before the batch time
    assert producer.log[1] == "begin"
    assert [entry[1] for entry in producer.log[2:8]] == ["run.outcomes", "ledger"] * 3
    assert producer.log[8:] == [("offsets", {TP: 13}, "g"), "commit"]
    assert world.committed == [[10, 11, 12]] and world.partition.committed == 13
    assert world.sample("bridge_transactions_total", result="committed") == 1
    assert world.sample("bridge_transaction_commands_sum") == 3
    await world.txn.close(world.partition, flush=True)
    assert producer.stopped


async def test_a_batch_that_is_not_full_commits_after_the_batch_time() -> None:
    world = World(transaction_batch_max=500, transaction_batch_ms=50)
    await world.txn.open(world.partition)
    world.finish(0)
    await asyncio.sleep(0.01)
    assert world.committed == []
    await asyncio.sleep(0.15)
    assert world.committed == [[0]]
    await world.txn.close(world.partition, flush=True)


async def test_an_offset_is_committed_only_past_a_prefix_of_finished_commands() -> None:
    world = World(transaction_batch_ms=60_000)
    await world.txn.open(world.partition)
    world.partition.tracker.add(5)  # still running: the commit may not pass it
    world.finish(6)
    await world.txn.flush(world.partition)
    [producer] = world.producers
    assert "commit" in producer.log and not any(
        entry[0] == "offsets" for entry in producer.log if isinstance(entry, tuple)
    )
    assert world.partition.committed is None
    await world.txn.close(world.partition, flush=True)


@pytest.mark.parametrize(("error", "fenced"), [(KafkaError(), False), (ProducerFenced(), True)])
async def test_a_failed_commit_aborts_and_hands_the_commands_back(error: KafkaError, fenced: bool) -> None:
    world = World(fail=error, transaction_batch_ms=60_000)
    await world.txn.open(world.partition)
    world.finish(0)
    world.finish(1)
    await world.txn.flush(world.partition)
    [producer] = world.producers
    assert ("abort" in producer.log) is not fenced  # a fenced producer cannot abort: the broker did
    assert world.failed == [([0, 1], fenced)] and world.committed == []
    assert world.sample("bridge_transactions_total", result="fenced" if fenced else "aborted") == 1
    assert not world.finish(2)  # nothing more is taken: the engine reads the partition again
    assert await world.txn.close(world.partition, flush=True) == []


async def test_closing_without_a_flush_hands_back_what_was_batched() -> None:
    world = World(transaction_batch_ms=60_000)
    await world.txn.open(world.partition)
    world.finish(0)
    left = await world.txn.close(world.partition, flush=False)
    assert [r.offset for r in left] == [0] and world.committed == []
    assert not world.txn.opened(world.partition)


async def test_a_lifecycle_event_and_its_entry_commit_in_the_partitions_next_transaction() -> None:
    world = World(transaction_batch_ms=20)
    await world.txn.open(world.partition)
    event = Outgoing("lifecycle", b"k", b"succeeded")
    tombstone = Outgoing("ledger", b"trk:1", None, partition=TP.partition)
    assert await world.txn.publish(TP, [event, tombstone])
    [producer] = world.producers
    assert [e[1] for e in producer.log if isinstance(e, tuple) and e[0] == "send"] == ["lifecycle", "ledger"]
    assert producer.log[-1] == "commit" and world.committed == [[]]  # no command offset moved
    pending = asyncio.ensure_future(world.txn.publish(TP, [event, tombstone]))
    await asyncio.sleep(0)
    await world.txn.close(world.partition, flush=False)  # revoked before the batch committed
    assert await pending is False
    assert await world.txn.publish(TopicPartition("other", 0), [event]) is False  # not this member's


async def test_a_partition_revoked_while_its_producer_connects_lets_it_connect_then_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """aiokafka leaks the socket of a connection cancelled half-way: the start finishes, then stop."""
    world = World()
    connected: list[bool] = []

    async def slow_start(self: FakeTxnProducer) -> None:
        await asyncio.sleep(0.05)
        connected.append(True)

    monkeypatch.setattr(FakeTxnProducer, "start", slow_start)
    opening = asyncio.create_task(world.txn.open(world.partition))
    await asyncio.sleep(0.01)  # connecting
    opening.cancel()
    with pytest.raises(asyncio.CancelledError):
        await opening
    [producer] = world.producers
    assert connected == [True] and producer.stopped


async def test_a_partition_read_again_while_its_previous_producer_starts_gets_the_only_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A partition read again (or reassigned) while the producer of its previous assignment is still
    starting: the opens run one after the other (they share a transactional id, so the later
    InitProducerId would fence the current one), the stale one is stopped, never registered, and the
    current partition's commands commit (before, the stale open replaced the current producer, which
    was never stopped, and the current partition's commands were given up without an answer)."""
    world = World()
    starts: list[str] = []

    async def slow_start(self: FakeTxnProducer) -> None:
        starts.append(f"begin {len(starts) // 2}")
        await asyncio.sleep(0.05)
        starts.append(f"end {(len(starts) - 1) // 2}")

    monkeypatch.setattr(FakeTxnProducer, "start", slow_start)
    previous, current = Partition(TP), Partition(TP)
    world.partition = previous
    stale = asyncio.create_task(world.txn.open(previous, wanted=lambda: world.partition is previous))
    await asyncio.sleep(0.01)
    world.partition = current  # read again while the previous producer starts
    assert await world.txn.open(current, wanted=lambda: world.partition is current) is True
    assert await stale is False
    assert starts == ["begin 0", "end 0", "begin 1", "end 1"]  # one at a time
    first, second = world.producers
    assert first.stopped and not second.stopped
    assert world.txn.opened(current) and not world.txn.opened(previous)
    assert world.txn.add(previous, Incoming(TP.topic, TP.partition, 0, b"k", b"v"), ()) is None
    assert world.finish(0)
    await world.txn.flush(current)
    assert world.committed == [[0]] and "commit" in second.log
    await world.txn.close(current, flush=False)
    assert second.stopped


async def test_an_open_for_a_partition_already_open_starts_no_second_producer() -> None:
    world = World()
    assert await world.txn.open(world.partition) is True
    assert await world.txn.open(world.partition) is True
    assert len(world.producers) == 1
