"""The engine's per-partition bookkeeping and the careful read past undecodable records, on fakes."""

from __future__ import annotations

from aiokafka import TopicPartition

from bridge.kafka.partitions import Partition, oldest_pending_age, to_commit, topic_name
from bridge.kafka.undecodable import CORRUPT_READS, Undecodable, as_incoming, read_carefully
from bridge.testing import FakeConsumer, FakeTransport, json_response

TP = TopicPartition("cmd", 0)


def partition(done: list[int], pending: list[int] = (), committed: int | None = None) -> Partition:
    p = Partition(TP, committed=committed)
    for offset in sorted([*done, *pending]):
        p.tracker.add(offset, 0.0)
    for offset in done:
        p.tracker.done(offset)
    return p


def test_to_commit_names_only_partitions_that_moved_past_their_last_commit() -> None:
    moved = partition(done=[0, 1, 2])
    stuck = Partition(TopicPartition("cmd", 1))
    same = partition(done=[0], committed=1)
    assert to_commit([moved, stuck, same]) == {TP: 3}


def test_to_commit_stops_at_the_first_unfinished_offset() -> None:
    assert to_commit([partition(done=[0, 2], pending=[1])]) == {TP: 1}


def test_oldest_pending_age_is_that_of_the_oldest_unfinished_record_of_any_partition() -> None:
    a, b = Partition(TP), Partition(TopicPartition("cmd", 1))
    a.tracker.add(0, 100.0)
    a.tracker.add(1, 104.0)
    b.tracker.add(0, 102.0)
    assert oldest_pending_age([a, b], now=110.0) == 10.0
    a.tracker.done(0)
    assert oldest_pending_age([a, b], now=110.0) == 8.0
    assert oldest_pending_age([Partition(TP)], now=110.0) == 0.0
    assert oldest_pending_age([b], now=101.0) == 0.0  # a clock step backwards is not a negative age


def test_closing_lets_only_offsets_below_the_highest_started_one_run() -> None:
    p = Partition(TP)
    p.started = 7
    assert not p.closing
    p.close()
    p.started = 9  # started later (cannot happen once closing, but the bound must not move)
    p.close()
    assert p.closing and p.drain_below == 8


def test_topic_name_is_how_logs_name_a_partition() -> None:
    assert topic_name(TopicPartition("workflow.run.commands", 3)) == "workflow.run.commands[3]"


async def subscribed(consumer: FakeConsumer) -> None:
    class Listener:
        async def on_partitions_revoked(self, revoked: object) -> None:
            return None

        async def on_partitions_assigned(self, assigned: object) -> None:
            return None

    consumer.subscribe(["cmd"], listener=Listener())
    await consumer.rebalance([TP, TopicPartition("cmd", 1)])


async def test_read_carefully_returns_good_records_in_order_and_names_the_bad_one() -> None:
    consumer = FakeConsumer()
    consumer.add("cmd", b"a")
    consumer.add_undecodable("cmd")
    consumer.add("cmd", b"c")
    consumer.add("cmd", b"other partition", partition=1)
    await subscribed(consumer)
    read = await read_carefully(consumer, sorted(consumer.assignment()), limit=10)
    shape = [("bad", r.offset) if isinstance(r, Undecodable) else (r.partition, r.offset) for r in read]
    assert shape == [(0, 0), ("bad", 1), (0, 2), (1, 0)]
    assert await consumer.position(TP) == 3  # past the undecodable record


async def test_read_carefully_takes_at_most_limit_records_per_partition() -> None:
    consumer = FakeConsumer()
    for value in (b"1", b"2", b"3"):
        consumer.add("cmd", value)
    await subscribed(consumer)
    read = await read_carefully(consumer, [TP], limit=2)
    assert [r.offset for r in read] == [0, 1]


def test_an_undecodable_record_reaches_the_processor_without_key_or_value_and_with_why() -> None:
    record = as_incoming(Undecodable(TP, 5, "the Kafka client cannot decode this record (x)"))
    assert (record.topic, record.partition, record.offset, record.key, record.value) == (
        "cmd",
        0,
        5,
        None,
        None,
    )
    assert record.undecodable is not None and "cannot decode" in record.undecodable


async def test_read_carefully_reports_a_corrupt_record_only_after_it_failed_every_reread() -> None:
    consumer = FakeConsumer()
    consumer.add("cmd", b"a")
    consumer.add_corrupt("cmd", b"b", failed_reads=CORRUPT_READS)
    consumer.add_corrupt("cmd", b"c", failed_reads=CORRUPT_READS - 1)
    await subscribed(consumer)
    read = await read_carefully(consumer, [TP], limit=10)
    shape = [("corrupt", r.offset, r.corrupt) if isinstance(r, Undecodable) else r.value for r in read]
    assert shape == [b"a", ("corrupt", 1, True), b"c"]
    bad = read[1]
    assert (
        isinstance(bad, Undecodable) and "CRC check" in bad.detail and "CorruptRecordException" in bad.detail
    )
    assert as_incoming(bad).corrupt


async def test_a_corrupt_record_is_a_dead_letter_with_reason_corrupt() -> None:
    from tests.unit.pipeline.test_processor import SETTINGS, processor

    record = as_incoming(Undecodable(TopicPartition(SETTINGS.topics.run_commands, 0), 7, "CRC", corrupt=True))
    out = await processor(FakeTransport(lambda call: json_response(200, b"{}"))).process(record)
    assert out.topic == SETTINGS.topics.dead_letter and out.key is None and out.value is None
    assert dict(out.headers)["dlq.reason"] == b"corrupt" and dict(out.headers)["dlq.source.offset"] == b"7"
