"""Reading a changelog with raw fetches: which records a restore gets, and how the reader moves on.

The batches are real record batches (aiokafka's builder, the bytes a broker sends); control batches
are built the way a broker writes its transaction markers. The reader runs against a fake client
that answers Fetch requests from a list of batches.
"""

from __future__ import annotations

import asyncio
import struct
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import CorruptRecordException, NotLeaderForPartitionError
from aiokafka.record.default_records import DefaultRecordBatchBuilder, calc_crc32c

from bridge.kafka.changelog import ChangelogReader, committed_records

TOPIC = "ledger"
ABORT, COMMIT = 0, 1


def batch(
    base: int, count: int, *, producer: int = -1, transactional: bool = False, tag: bytes = b"v"
) -> bytes:
    """``count`` records from offset ``base``: keys k<offset>, values <tag><offset>."""
    builder = DefaultRecordBatchBuilder(
        2, 0, int(transactional), producer, 0 if producer >= 0 else -1, -1, 1 << 30
    )
    for delta in range(count):
        builder.append(
            delta, timestamp=None, key=b"k%d" % (base + delta), value=tag + b"%d" % (base + delta), headers=[]
        )
    return _with_base(bytearray(builder.build()), base)


def marker(offset: int, producer: int, kind: int) -> bytes:
    """A transaction's end marker (a control batch of one record), as the broker writes it."""
    builder = DefaultRecordBatchBuilder(2, 0, 1, producer, 0, -1, 1 << 30)
    builder.append(
        0, timestamp=None, key=struct.pack(">hh", 0, kind), value=b"\x00\x00\x00\x00\x00\x00", headers=[]
    )
    data = bytearray(_with_base(bytearray(builder.build()), offset))
    attributes = struct.unpack_from(">h", data, 21)[0] | 0x20  # the control flag
    struct.pack_into(">h", data, 21, attributes)
    struct.pack_into(">I", data, 17, calc_crc32c(data[21:]))
    return bytes(data)


def _with_base(data: bytearray, base: int) -> bytes:
    struct.pack_into(">q", data, 0, base)
    return bytes(data)


def offsets(records: list[Any]) -> list[int]:
    return [r.offset for r in records]


def test_plain_batches_give_every_record_and_the_offset_after_them():
    records, position = committed_records(batch(0, 3) + batch(3, 2), 0, [], read_committed=True)
    assert offsets(records) == [0, 1, 2, 3, 4]
    assert (records[4].key, records[4].value) == (b"k4", b"v4")
    assert position == 5


def test_a_batch_that_starts_before_the_fetch_offset_gives_only_the_records_from_it():
    records, position = committed_records(batch(0, 5), 3, [], read_committed=True)
    assert offsets(records) == [3, 4]
    assert position == 5


def test_an_aborted_transaction_is_left_out_and_a_committed_one_kept():
    data = (
        batch(0, 2, producer=7, transactional=True, tag=b"aborted")
        + batch(2, 2, producer=8, transactional=True, tag=b"kept")
        + marker(4, 7, ABORT)
        + marker(5, 8, COMMIT)
        + batch(6, 1, producer=7, transactional=True, tag=b"later")
        + marker(7, 7, COMMIT)
    )
    records, position = committed_records(data, 0, [(7, 0)], read_committed=True)
    assert [r.value for r in records] == [b"kept2", b"kept3", b"later6"]
    assert position == 8  # past the markers: the next fetch does not read them again


def test_read_uncommitted_keeps_aborted_records_and_still_skips_markers():
    data = batch(0, 2, producer=7, transactional=True) + marker(2, 7, ABORT) + batch(3, 1)
    records, position = committed_records(data, 0, [(7, 0)], read_committed=False)
    assert offsets(records) == [0, 1, 3]
    assert position == 4


def test_a_batch_whose_crc_does_not_match_is_an_error_not_records():
    data = bytearray(batch(0, 3))
    data[-1] ^= 0xFF
    with pytest.raises(CorruptRecordException):
        committed_records(bytes(data), 0, [], read_committed=True)


def test_no_bytes_is_no_records_and_the_same_offset():
    assert committed_records(b"", 12, [], read_committed=True) == ([], 12)


@dataclass
class FakeBroker:
    """Answers Fetch requests for partitions of TOPIC from their batches; ``high`` per partition."""

    logs: dict[int, list[bytes]]
    high: dict[int, int]
    log_start: dict[int, int] = field(default_factory=dict)
    errors: list[tuple[int, int]] = field(default_factory=list)  # (partition, error code), answered once each
    empty_below_ms: int = 0  # answers nothing to a fetch that waits less (the embedded broker's habit)
    waits: list[int] = field(default_factory=list)
    leader: int | None = 1
    metadata_requests: list[str] = field(default_factory=list)
    hold_after: int | None = None  # fetches answered; later ones wait for ever (a broker with nothing new)

    def __post_init__(self) -> None:
        self.cluster = SimpleNamespace(leader_for_partition=lambda tp: self.leader)

    async def send(self, node: int, request: Any) -> Any:
        await asyncio.sleep(0)
        if self.hold_after is not None and len(self.waits) >= self.hold_after:
            await asyncio.Event().wait()
        self.waits.append(request._max_wait_ms)
        parts = []
        for partition, offset, max_bytes in request.topics[0][1]:
            error = next((code for p, code in self.errors if p == partition), 0)
            if error:
                self.errors.remove((partition, error))
            start = self.log_start.get(partition, 0)
            if offset < start:
                error = 1
            data = b""
            if not error and request._max_wait_ms >= self.empty_below_ms:
                data = _answer([b for b in self.logs[partition] if _next_offset(b) > offset], max_bytes)
            parts.append((partition, error, self.high[partition], self.high[partition], start, [], data))
        return SimpleNamespace(API_VERSION=5, topics=[(TOPIC, parts)])

    async def add_topic(self, topic: str) -> None:
        self.metadata_requests.append(topic)
        self.leader = self.leader if self.leader is not None else 1  # the topic's metadata, now known

    def force_metadata_update(self) -> asyncio.Future[bool]:
        self.metadata_requests.append("all")
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        done.set_result(True)
        return done


def _answer(batches: list[bytes], max_bytes: int) -> bytes:
    """Whole batches up to ``max_bytes``, and the first one however large (as Kafka answers)."""
    data = b""
    for one in batches:
        if data and len(data) + len(one) > max_bytes:
            break
        data += one
    return data


def _next_offset(data: bytes) -> int:
    base, length = struct.unpack_from(">qi", data, 0)
    last_delta = struct.unpack_from(">i", data, 23)[0]
    return int(base) + int(last_delta) + 1 if length else base


async def read(
    broker: FakeBroker, positions: dict[int, int], **options: Any
) -> tuple[dict[int, list[int]], ChangelogReader]:
    reader = ChangelogReader(broker, TOPIC, positions, read_committed=True, **options)
    got: dict[int, list[int]] = {}
    async for partition, records in reader.batches():
        got.setdefault(partition, []).extend(offsets(records))
    return got, reader


async def test_reads_each_partition_from_its_position_to_its_end():
    broker = FakeBroker({0: [batch(0, 4), batch(4, 4)], 1: [batch(0, 3)]}, {0: 8, 1: 3})
    got, reader = await read(broker, {0: 2, 1: 0}, partition_bytes=1 << 20)
    assert got == {0: [2, 3, 4, 5, 6, 7], 1: [0, 1, 2]}
    assert reader.positions == {0: 8, 1: 3}


async def test_batches_are_no_larger_than_max_records():
    broker = FakeBroker({0: [batch(0, 10)]}, {0: 10})
    reader = ChangelogReader(broker, TOPIC, {0: 0}, read_committed=True, max_records=4)
    sizes = [len(records) async for _, records in reader.batches()]
    assert sizes == [4, 4, 2]


async def test_an_empty_partition_and_one_read_already_end_at_once():
    broker = FakeBroker({0: [], 1: [batch(0, 2)]}, {0: 0, 1: 2})
    got, _ = await read(broker, {0: 0, 1: 2})
    assert got == {}
    assert len(broker.waits) == 1


async def read_while_a_writer_appends(snapshot_end: bool) -> tuple[list[int], ChangelogReader]:
    """The first answer brings offsets 0-1 of 0-2; then 3-4 are written and the high watermark moves."""
    first = batch(0, 2)
    broker = FakeBroker({0: [first, batch(2, 1)]}, {0: 3})
    reader = ChangelogReader(
        broker,
        TOPIC,
        {0: 0},
        read_committed=True,
        snapshot_end=snapshot_end,
        partition_bytes=len(first),
    )
    got: list[int] = []
    async for _, records in reader.batches():
        got += offsets(records)
        if broker.high[0] == 3:
            broker.logs[0].append(batch(3, 2))
            broker.high[0] = 5
    return got, reader


async def test_with_a_snapshot_end_records_written_after_the_first_answer_are_left_out():
    got, reader = await read_while_a_writer_appends(snapshot_end=True)
    assert got == [0, 1, 2]
    assert reader.positions == {0: 3}


async def test_without_a_snapshot_end_a_late_record_is_read_too():
    got, reader = await read_while_a_writer_appends(snapshot_end=False)
    assert got == [0, 1, 2, 3, 4]
    assert reader.positions == {0: 5}


async def test_a_reader_answered_with_nothing_while_behind_waits_longer_and_reads_everything():
    broker = FakeBroker({0: [batch(0, 5)]}, {0: 5}, empty_below_ms=300)
    got, _ = await asyncio.wait_for(read(broker, {0: 0}), timeout=5)
    assert got == {0: [0, 1, 2, 3, 4]}
    assert broker.waits[0] == 10 and 300 <= max(broker.waits) <= 640


async def test_a_start_deleted_by_retention_is_read_from_the_log_start():
    broker = FakeBroker({0: [batch(5, 3)]}, {0: 8}, log_start={0: 5})
    got, _ = await read(broker, {0: 0})
    assert got == {0: [5, 6, 7]}


async def test_a_partition_whose_leader_moved_is_asked_again_after_a_metadata_update():
    broker = FakeBroker({0: [batch(0, 2)]}, {0: 2}, errors=[(0, NotLeaderForPartitionError.errno)])
    got, _ = await read(broker, {0: 0})
    assert got == {0: [0, 1]}


async def test_another_broker_error_is_raised():
    broker = FakeBroker({0: [batch(0, 2)]}, {0: 2}, errors=[(0, CorruptRecordException.errno)])
    with pytest.raises(CorruptRecordException):
        await read(broker, {0: 0})


async def test_a_reader_left_early_cancels_the_fetch_it_sent_ahead():
    broker = FakeBroker({0: [batch(0, 2), batch(2, 2)]}, {0: 4}, hold_after=1)
    reader = ChangelogReader(broker, TOPIC, {0: 0}, read_committed=True, partition_bytes=1)
    batches = reader.batches()

    async def leave_after_one() -> None:
        async for _ in batches:
            await asyncio.sleep(0)  # the fetch sent ahead is waiting at the broker
            break
        await batches.aclose()  # waits for ever on a fetch that was not cancelled

    await asyncio.wait_for(leave_after_one(), timeout=5)
    fetches = [t for t in asyncio.all_tasks() if "_fetch_all" in repr(t.get_coro())]
    assert fetches == []


async def test_a_client_that_knows_no_topic_yet_asks_for_this_one_and_reads_at_once():
    broker = FakeBroker({0: [batch(0, 2)]}, {0: 2}, leader=None)
    got, _ = await read(broker, {0: 0})
    assert got == {0: [0, 1]}
    assert broker.metadata_requests == [TOPIC]  # one request for the topic, no refresh and pause after it
