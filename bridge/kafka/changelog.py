"""Reading a state changelog (the ledger) with raw fetches, to its end or following it: records as
the batches hold them.

A restore reads every record of its partitions and needs only each record's offset, key and value.
The consumer's ``getmany`` builds a ``ConsumerRecord`` (eleven fields and a headers tuple) for each
one, and that was half of a cold rebuild's CPU. This reader sends the Fetch requests itself, through
a started client, and hands out the records that aiokafka's batch decoder (its C extension) makes,
keeping what the consumer does for correctness: batches' CRCs checked, control batches skipped, and
with ``read_committed`` the batches of aborted transactions left out (the broker lists them in each
response; :func:`committed_records` decides, without I/O).

Example::

    reader = ChangelogReader(client, "workflow.bridge.ledger", {0: 0, 3: 1200}, read_committed=True)
    async for partition, records in reader.batches():
        store(partition).apply(records)
    reader.positions  # partition: the offset after the last record read
    async for partition, records in reader.follow(wait_ms=200):  # a follower: what came since
        store(partition).apply(records)
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Iterable, Iterator
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import CorruptRecordException, KafkaError, for_code
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.control_record import ABORT_MARKER, ControlRecord
from aiokafka.record.memory_records import MemoryRecords

from bridge.kafka.clients import longer_wait
from bridge.kafka.ports import Record

OFFSET_OUT_OF_RANGE = 1
PARTITION_BYTES = 4 << 20  # per partition and fetch: large responses, few round trips
FIRST_WAIT_MS = 10  # a fetch's max wait while records are there; doubled while a fetch brings none
LEADER_WAIT_S = 10.0  # a partition without a leader (leadership moving) is asked again, this long
READ_COMMITTED, READ_UNCOMMITTED = 1, 0
LEFT_EARLY_WAIT_S = 2.5  # a fetch sent ahead waits at most clients.STARVED_WAIT_MAX_MS at the broker


@dataclass(frozen=True, slots=True)
class Fetched:
    """One partition's part of a fetch response."""

    error: int
    high: int  # the high watermark
    log_start: int | None  # the log start offset (Fetch v5 and later), else None
    aborted: list[tuple[int, int]]  # (producer id, first offset) of aborted transactions in range
    data: bytes  # record batches


async def fetch(
    client: AIOKafkaClient,
    node: int,
    topic: str,
    offsets: dict[int, int],
    *,
    partition_bytes: int,
    wait_ms: int,
    read_committed: bool = False,
) -> dict[int, Fetched]:
    """One Fetch request to ``node`` for ``topic``'s partitions from ``offsets``; a partition the
    response leaves out is absent from the result. Raises the client's :class:`KafkaError`."""
    wanted = [(p, offset, partition_bytes) for p, offset in sorted(offsets.items())]
    isolation = READ_COMMITTED if read_committed else READ_UNCOMMITTED
    request = FetchRequest(wait_ms, 1, partition_bytes * len(wanted), isolation, [(topic, wanted)])
    response = await client.send(node, request)
    version = response.API_VERSION
    found: dict[int, Fetched] = {}
    for name, parts in response.topics:
        if name != topic:
            continue
        for part in parts:
            # v4: partition, error, high, lso, aborted, records; v5+: log start after lso; v11: + replica
            aborted = (part[4] if version == 4 else part[5]) if version >= 4 else None
            log_start = part[4] if version >= 5 else None
            found[part[0]] = Fetched(part[1], part[2], log_start, list(aborted or ()), part[-1] or b"")
    return found


def committed_records(
    data: bytes, fetch_offset: int, aborted: Iterable[tuple[int, int]], *, read_committed: bool
) -> tuple[list[Record], int]:
    """The records of one partition's fetched batches from ``fetch_offset`` on, and the offset to fetch
    next. Control batches are skipped; with ``read_committed``, so is every batch of a transaction the
    broker listed as aborted, from its first offset up to its abort marker. Raises
    :class:`CorruptRecordException` for a batch whose CRC does not match."""
    records: list[Record] = []
    position = fetch_offset
    pending_aborts = sorted(aborted, key=lambda a: a[1])
    aborting: set[int] = set()
    batches = MemoryRecords(data)
    while (batch := batches.next_batch()) is not None:
        if not batch.validate_crc():
            raise CorruptRecordException(f"a record batch at offset {batch.base_offset} fails its CRC")
        producer = batch.producer_id
        if read_committed and producer is not None and producer >= 0:
            while pending_aborts and pending_aborts[0][1] <= batch.base_offset:
                aborting.add(pending_aborts.pop(0)[0])
            if batch.is_control_batch:
                if _is_abort_marker(batch):
                    aborting.discard(producer)
            elif batch.is_transactional and producer in aborting:
                position = max(position, batch.next_offset)
                continue
        if batch.is_control_batch:
            pass
        elif batch.base_offset >= position:
            records.extend(batch)  # the common case, without a Python step per record
        else:  # a batch that starts before the fetch offset (the broker sends whole batches)
            records.extend(r for r in batch if r.offset >= position)
        # a compacted batch keeps its last offset: the next fetch starts after the batch, not its
        # last record left
        position = max(position, batch.next_offset)
    return records, position


def _is_abort_marker(batch: object) -> bool:
    marker = next(iter(batch), None)  # type: ignore[call-overload]
    return marker is not None and marker.key is not None and ControlRecord.parse(marker.key) == ABORT_MARKER


@dataclass
class ChangelogReader:
    """Reads ``topic``'s partitions from ``positions`` to their end. The end is the high watermark of
    each response (records written while reading are read too), or with ``snapshot_end`` the one of
    the first response (a transactional writer's later records are left for the follower)."""

    client: AIOKafkaClient
    topic: str
    positions: dict[int, int]
    read_committed: bool
    snapshot_end: bool = False
    max_records: int | None = None
    partition_bytes: int = PARTITION_BYTES
    ends: dict[int, int] = field(default_factory=dict)
    _wait_ms: int = FIRST_WAIT_MS
    _stale: bool = False
    _stale_since: float | None = None
    _topic_asked: bool = False

    async def batches(self) -> AsyncGenerator[tuple[int, list[Record]], None]:
        """(partition, records) in offset order per partition, at most ``max_records`` at a time; the
        event loop runs other work between batches. The next fetch is on its way while the caller
        applies what the last one brought."""
        pending = set(self.positions)
        ahead: asyncio.Future[list[dict[int, Fetched]] | None] | None = None
        try:
            while pending:
                answers = await (ahead if ahead is not None else self._fetch_all(pending, self._wait_ms))
                ahead = None
                if answers is None:
                    continue  # no leader known, or leadership moved: asked again
                taken, moved = [], False
                for answer in answers:
                    for partition, part in sorted(answer.items()):
                        if partition not in pending:
                            continue
                        before = self.positions[partition]
                        taken.append((partition, self._take(partition, part)))
                        if partition in self.ends and self.positions[partition] >= self.ends[partition]:
                            pending.discard(partition)
                            moved = True
                        moved = moved or self.positions[partition] != before
                if pending and not moved:
                    self._wait_ms = longer_wait(self._wait_ms)
                if pending:
                    ahead = asyncio.ensure_future(self._fetch_all(set(pending), self._wait_ms))
                for partition, records in self._chunked(taken):
                    yield partition, records
                    await asyncio.sleep(0)
        finally:
            if ahead is not None:  # left early: the fetch sent ahead is nobody's. It may be opening
                # its connection: cancelled half-way, aiokafka leaks that socket (see
                # settle_before_cancel), so it gets a moment to finish first; its answer is dropped
                await asyncio.wait([ahead], timeout=LEFT_EARLY_WAIT_S)
                ahead.cancel()
                await asyncio.wait([ahead])  # its end, without taking a cancel meant for the caller
                if not ahead.cancelled():
                    ahead.exception()

    async def follow(self, wait_ms: int) -> AsyncGenerator[tuple[int, list[Record]], None]:
        """One round of fetches for every partition in ``positions``, with no end: a follower's.
        The broker holds a fetch up to ``wait_ms`` while nothing is new and answers as soon as
        something is. (partition, records) as :meth:`batches` gives them, for the partitions that
        brought records; nothing after a pause when a leader is not known (see :meth:`_fetch_all`)."""
        answers = await self._fetch_all(set(self.positions), wait_ms)
        taken = [
            (partition, self._take(partition, part))
            for answer in answers or ()
            for partition, part in sorted(answer.items())
            if partition in self.positions
        ]
        for partition, records in self._chunked(taken):
            yield partition, records
            await asyncio.sleep(0)

    def _chunked(self, taken: list[tuple[int, list[Record]]]) -> Iterator[tuple[int, list[Record]]]:
        """Each partition's records, at most ``max_records`` at a time; none for a partition without."""
        for partition, records in taken:
            size = self.max_records or len(records) or 1
            for start in range(0, len(records), size):
                yield partition, records[start : start + size]

    async def _fetch_all(self, partitions: set[int], wait_ms: int) -> list[dict[int, Fetched]] | None:
        """One fetch per leader of ``partitions``; None after a pause when a leader is not known (or
        moved), and a :class:`KafkaError` once that lasted ``LEADER_WAIT_S``."""
        loop = asyncio.get_running_loop()
        by_node = self._leaders(partitions)
        if by_node is None and not self._topic_asked:  # a client that knew no topic yet asks for it
            self._topic_asked = True
            await self.client.add_topic(self.topic)
            by_node = self._leaders(partitions)
        if by_node is not None and not self._stale:
            self._stale_since = None
            fetches = (self._fetch(node, parts, wait_ms) for node, parts in by_node.items())
            return list(await asyncio.gather(*fetches))
        self._stale_since = self._stale_since or loop.time()
        if loop.time() - self._stale_since > LEADER_WAIT_S:
            raise KafkaError(f"{self.topic}{sorted(partitions)}: no leader serves them")
        self._stale = False
        await self.client.force_metadata_update()
        await asyncio.sleep(0.1)
        return None

    async def _fetch(self, node: int, partitions: list[int], wait_ms: int) -> dict[int, Fetched]:
        offsets = {p: self.positions[p] for p in partitions}
        return await fetch(
            self.client,
            node,
            self.topic,
            offsets,
            partition_bytes=self.partition_bytes,
            wait_ms=wait_ms,
            read_committed=self.read_committed,
        )

    def _leaders(self, partitions: set[int]) -> dict[int, list[int]] | None:
        by_node: dict[int, list[int]] = {}
        for p in sorted(partitions):
            node = self.client.cluster.leader_for_partition(TopicPartition(self.topic, p))
            if node is None or node < 0:
                return None
            by_node.setdefault(node, []).append(p)
        return by_node

    def _take(self, partition: int, part: Fetched) -> list[Record]:
        """Apply one partition's answer: its end, its position, the records below the end."""
        offset = self.positions[partition]
        if part.error == OFFSET_OUT_OF_RANGE and part.log_start is not None and part.log_start > offset:
            self.positions[partition] = part.log_start  # retention deleted the start: read from the first
            return []
        if part.error:
            error = for_code(part.error)
            if not error.invalid_metadata:
                raise error(f"{self.topic}[{partition}] at offset {offset}")
            self._stale = True  # leadership moved: asked again after a metadata update
            return []
        if partition not in self.ends or not self.snapshot_end:
            self.ends[partition] = part.high
        end = self.ends[partition]
        records, position = committed_records(
            part.data, offset, part.aborted, read_committed=self.read_committed
        )
        if records and records[-1].offset >= end:
            records = [r for r in records if r.offset < end]
        self.positions[partition] = min(position, end)
        return records
