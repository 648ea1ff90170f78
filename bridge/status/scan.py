"""Find the records of one partition that mention a command id, fast: raw fetches, searched as bytes.

A lookup has no index to go by (Kafka has none by key), so it reads the partitions the command's
key maps to. What makes that fast is not decoding what cannot match: each fetch response (about
``chunk_bytes`` of record batches) is searched for the id's bytes with ``bytes.find`` (memory
speed), and only a response that contains them is decoded into records. Compressed batches cannot
be searched as bytes: they are decoded (slower, still correct). A partition is read as ``segments``
offset ranges fetched at once. The fetch high watermark bounds each read (Tansu answers ListOffsets
unreliably; see bridge/redrive/kafka.py).

Example::

    async with scanner(settings.kafka) as scan:
        found = await scan.partition("workflow.run.commands", 3, (b"cmd-1",))
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, for_code
from aiokafka.record.memory_records import MemoryRecords

from bridge.config.settings import KafkaSettings
from bridge.errors import BridgeError
from bridge.kafka.changelog import OFFSET_OUT_OF_RANGE, Fetched, fetch
from bridge.kafka.clients import longer_wait, settle_before_cancel
from bridge.kafka.options import client_options
from bridge.status.facts import RawRecord

# Tansu answers a fetch with max_wait 0 with no records at all, and one that cannot gather its
# records within max_wait with none either (the partition left out of the answer); an empty
# partition it answers with its end at once: a short probe first, a long wait to read
PROBE_WAIT_MS = 10
READ_WAIT_MS = 2000
EMPTY_FETCHES = 5  # fetches in a row that bring nothing below the end: the lookup fails, never guesses
LEADER_WAIT_S = 10.0  # a partition without a leader that serves it (a topic just created) is asked again


Done = Callable[[list[RawRecord]], bool]


class LookupError_(BridgeError):
    """The broker did not let the lookup read what it needs; the message says what."""


@dataclass
class Scanned:
    """What one partition held: the matching records, and its offsets when read."""

    topic: str
    partition: int
    start: int
    end: int  # the offset after the last one this read covers
    high: int  # the partition's high watermark when read
    records: list[RawRecord] = field(default_factory=list)
    bytes_read: int = 0
    read_from: int = 1 << 62  # the lowest offset read
    read_to: int = -1  # the offset after the highest read


class Scanner:
    """Each segment is read over a connection of its own: a broker answers the requests of one
    connection in order, so a fetch waiting on an empty partition would hold up all the others.
    A connection is lent to one read at a time and kept for the next (connecting costs a bootstrap
    and a metadata request); ``close`` closes them all."""

    def __init__(
        self,
        client: AIOKafkaClient,
        kafka: KafkaSettings,
        chunk_bytes: int = 1 << 20,
        segments: int = 4,
        window: int = 20_000,
    ) -> None:
        self._client = client
        self._kafka = kafka
        self._chunk = chunk_bytes
        self._segments = segments
        self._window = window
        self._idle: list[AIOKafkaClient] = []
        self._open: list[AIOKafkaClient] = []
        self._closed = False

    @contextlib.asynccontextmanager
    async def _borrowed(self) -> AsyncIterator[AIOKafkaClient]:
        client = self._idle.pop() if self._idle else await self._connect()
        try:
            yield client
        except BaseException:
            await self._drop(client)  # a read that failed may leave it mid-request: not lent again
            raise
        if self._closed:
            await self._drop(client)  # a read that outlived its lookup (another read failed)
        else:
            self._idle.append(client)

    async def _connect(self) -> AIOKafkaClient:
        if self._closed:
            raise LookupError_("the lookup is over")
        client = await _connected(self._kafka)
        self._open.append(client)
        if self._closed:  # closed while this one connected
            await self._drop(client)
            raise LookupError_("the lookup is over")
        return client

    async def _drop(self, client: AIOKafkaClient) -> None:
        if client in self._open:
            self._open.remove(client)
        await _close(client)

    async def close(self) -> None:
        self._closed = True
        while self._open:
            await _close(self._open.pop())
        self._idle.clear()

    def partitions(self, topic: str) -> int | None:
        found = self._client.cluster.partitions_for_topic(topic)
        return len(found) if found else None

    async def offset_at(self, topic: str, partition: int, at_ms: int) -> tuple[int, int]:
        """About the offset of the first record stamped ``at_ms`` or later (see ``_offset_at``), and
        the partition's high watermark."""
        async with self._borrowed() as client:
            node, start, high = await self._bounds(client, topic, partition)
            return (
                await _offset_at(client, node, topic, partition, start, high, at_ms) if high > start else high
            ), high

    async def _bounds(self, client: AIOKafkaClient, topic: str, partition: int) -> tuple[int, int, int]:
        """The partition's leader, log start offset and high watermark. A leader not known yet, or one
        that does not lead the partition (yet: a topic just created; or any more: leadership moved)
        is looked up again, and a probe answered without the partition is asked again with a longer
        wait, for at most ``LEADER_WAIT_S`` in all."""
        loop = asyncio.get_running_loop()
        deadline, delay, wait_ms = loop.time() + LEADER_WAIT_S, 0.05, PROBE_WAIT_MS
        while True:
            node = self._client.cluster.leader_for_partition(TopicPartition(topic, partition))
            slow = False
            if node is None or node < 0:
                why = "no leader"
            else:
                probe = await _fetch_part(client, node, topic, partition, 0, 1, wait_ms)
                if probe is None:  # not an empty partition (that one is answered with its end): a slow read
                    why, wait_ms, slow = f"no answer within {wait_ms} ms", longer_wait(wait_ms), True
                elif probe.error in (0, OFFSET_OUT_OF_RANGE):
                    return int(node), probe.log_start or 0, probe.high
                else:
                    why = f"broker error {probe.error} ({for_code(probe.error).__name__})"
                    if not for_code(probe.error).invalid_metadata:
                        raise LookupError_(f"cannot fetch {topic}[{partition}]: {why}")
            if loop.time() + delay > deadline:
                raise LookupError_(f"cannot fetch {topic}[{partition}]: {why} for {LEADER_WAIT_S:g}s")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            if not slow:
                await self._client.force_metadata_update()

    async def partition(
        self,
        topic: str,
        partition: int,
        needles: Sequence[bytes],
        *,
        newest_first: bool = False,
        done: Done | None = None,
        since_ms: int | None = None,
        since_offset: int | None = None,
        below: int | None = None,
        until_ms: int | None = None,
        recent: int | None = None,
    ) -> Scanned:
        """The records of ``topic[partition]`` whose key, value or a header contains one of
        ``needles``: read in windows of ``window`` records, ``segments`` windows at a time, oldest
        first (or ``newest_first``), from the first record at ``since_ms`` (if given) up to the end
        (or up to ``below``, or to about the first record stamped ``until_ms``; or only the ``recent``
        newest records); stopped early once
        ``done`` says the records found are enough."""
        async with contextlib.AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(self._borrowed())]
            node, start, high = await self._bounds(clients[0], topic, partition)
            end = high
            if since_ms is not None and end > start:
                start = await _offset_at(clients[0], node, topic, partition, start, end, since_ms)
            if until_ms is not None and end > start:
                end = await _offset_at(clients[0], node, topic, partition, start, end, until_ms)
            start = start if since_offset is None else max(start, since_offset)
            start = start if recent is None else max(start, high - recent)
            end = end if below is None else min(end, below)
            scanned = Scanned(topic, partition, start, max(start, end), high)
            if done is None:  # all of it is read: in equal parts at once
                windows = plan_parts(start, end, self._segments)
            else:
                windows = plan_windows(start, end, self._window, newest_first=newest_first)
            more = min(self._segments, len(windows)) - 1
            clients += [await stack.enter_async_context(self._borrowed()) for _ in range(more)]
            for chosen in plan_groups(windows, self._segments):
                parts = await asyncio.gather(
                    *(
                        self._read(c, node, scanned, lo, hi, needles)
                        for c, (lo, hi) in zip(clients, chosen, strict=False)
                    )
                )
                for records, read in parts:
                    scanned.records += records
                    scanned.bytes_read += read
                scanned.read_from = min(scanned.read_from, *(lo for lo, _ in chosen))
                scanned.read_to = max(scanned.read_to, *(hi for _, hi in chosen))
                if done is not None and done(scanned.records):
                    break
        return scanned

    async def _read(
        self, client: AIOKafkaClient, node: int, scanned: Scanned, lo: int, hi: int, needles: Sequence[bytes]
    ) -> tuple[list[RawRecord], int]:
        found: list[RawRecord] = []
        offset, read, empty = lo, 0, 0
        while offset < hi:
            where = (scanned.topic, scanned.partition, offset, self._chunk, READ_WAIT_MS)
            data = await _fetch(client, node, *where)
            read += len(data)
            moved = _walk(data, scanned, hi, needles, found)
            if moved is None or moved <= offset:
                empty += 1
                if empty >= EMPTY_FETCHES:
                    topic, partition = scanned.topic, scanned.partition
                    raise LookupError_(f"{topic}[{partition}] gave no records at offset {offset} (of {hi})")
                continue
            offset, empty = moved, 0
        return found, read


FIRST_WINDOW = 2_000  # records: what is near the starting point is found without reading more


def plan_windows(start: int, end: int, window: int, *, newest_first: bool) -> list[tuple[int, int]]:
    """[lo, hi) offset ranges covering [start, end), from the starting point (the end when
    ``newest_first``) outwards, each twice as long as the one before, up to ``window`` records."""
    windows, size = [], min(FIRST_WINDOW, window)
    lo, hi = start, end
    while lo < hi:
        if newest_first:
            windows.append((max(lo, hi - size), hi))
            hi = max(lo, hi - size)
        else:
            windows.append((lo, min(hi, lo + size)))
            lo = min(hi, lo + size)
        size = min(window, size * 2)
    return windows


def plan_parts(start: int, end: int, parts: int) -> list[tuple[int, int]]:
    """[lo, hi) offset ranges covering [start, end): up to ``parts`` of them, of about equal length,
    none shorter than ``FIRST_WINDOW`` records (but one)."""
    count = max(1, min(parts, (end - start) // FIRST_WINDOW))
    size = -(-(end - start) // count)
    return [(lo, min(end, lo + size)) for lo in range(start, end, size)] if end > start else []


def plan_groups(windows: list[tuple[int, int]], segments: int) -> list[list[tuple[int, int]]]:
    """The windows read at once: one, then two, then ``segments`` at a time."""
    groups, at, width = [], 0, 1
    while at < len(windows):
        groups.append(windows[at : at + width])
        at, width = at + width, min(segments, width * 2)
    return groups


async def _fetch_part(
    client: AIOKafkaClient, node: int, topic: str, partition: int, offset: int, max_bytes: int, wait_ms: int
) -> Fetched | None:
    """The partition's part of one fetch from ``offset``; None when the answer leaves the partition out:
    Tansu does so when it could not gather the records within ``wait_ms`` (an empty partition it
    answers with its end), so a left-out partition is a slow read, never an empty one."""
    try:
        found = await fetch(
            client, node, topic, {partition: offset}, partition_bytes=max_bytes, wait_ms=wait_ms
        )
    except KafkaError as exc:
        raise LookupError_(f"cannot fetch {topic}[{partition}]: {exc}") from exc
    return found.get(partition)


async def _fetch(
    client: AIOKafkaClient, node: int, topic: str, partition: int, offset: int, max_bytes: int, wait_ms: int
) -> bytes:
    """The record bytes from ``offset``: none when the answer left the partition out (a slow read)."""
    part = await _fetch_part(client, node, topic, partition, offset, max_bytes, wait_ms)
    return part.data if part is not None else b""


async def _offset_at(
    client: AIOKafkaClient, node: int, topic: str, partition: int, lo: int, hi: int, at_ms: int
) -> int:
    """An offset at or below the first record stamped ``at_ms`` or later: a search over the batches'
    largest timestamps, one small fetch per step (any broker; no ListOffsets). A step interpolates by
    timestamp (records arrive at a fairly even pace: a few steps land on it), or halves the range
    after an interpolated step that did not (so never more than twice a binary search's steps, and
    the two first, at either end)."""
    lo_ms: int | None = None  # the largest timestamp of the batch just below lo, when known
    hi_ms: int | None = None  # the largest timestamp of the batch at hi, when known
    halve = False  # the last interpolated step did not halve the range: the next one halves it
    top = hi
    while lo < hi:
        width, mid = hi - lo, (lo + hi) // 2
        interpolated = not halve and lo_ms is not None and hi_ms is not None and hi_ms > lo_ms
        if hi_ms is None:
            mid = hi - 1  # first the newest batch: all older than at_ms ends the search at once
        elif lo_ms is None:
            mid = lo  # then the oldest: newer than at_ms ends it too
        elif interpolated:
            assert lo_ms is not None and hi_ms is not None
            mid = min(hi - 1, max(lo, lo + (at_ms - lo_ms) * width // (hi_ms - lo_ms)))
        data = await _fetch(client, node, topic, partition, mid, 1, READ_WAIT_MS)
        batch = MemoryRecords(data).next_batch() if data else None
        if batch is None:
            return lo  # cannot tell: read from lo
        if batch.max_timestamp < at_ms:
            lo, lo_ms = max(mid + 1, batch.next_offset), batch.max_timestamp
        else:
            hi, hi_ms = min(mid, batch.base_offset), batch.max_timestamp
        halve = interpolated and (hi - lo) * 2 > width
    return min(lo, top)


def _walk(
    data: bytes, scanned: Scanned, hi: int, needles: Sequence[bytes], found: list[RawRecord]
) -> int | None:
    """Collect the matching records of one fetch response; the offset after its last whole batch."""
    if not data:
        return None
    hit = any(data.find(n) >= 0 for n in needles)
    records = MemoryRecords(data)
    moved: int | None = None
    t, p = scanned.topic, scanned.partition
    while (batch := records.next_batch()) is not None:
        if batch.base_offset >= hi:
            return hi
        moved = batch.next_offset
        if batch.is_control_batch or not (hit or batch.compression_type):
            continue
        found.extend(
            RawRecord(t, p, r.offset, r.timestamp, r.key, r.value, tuple(r.headers))
            for r in batch
            if r.offset < hi and _matches(r.key, r.value, r.headers, needles)
        )
    return moved


def _matches(
    key: bytes | None,
    value: bytes | None,
    headers: Sequence[tuple[str, bytes | None]],
    needles: Sequence[bytes],
) -> bool:
    for needle in needles:
        if (key and needle in key) or (value and needle in value):
            return True
        if any(v and needle in v for _, v in headers):
            return True
    return False


async def _connected(kafka: KafkaSettings) -> AIOKafkaClient:
    """A started raw client that knows the metadata of every topic (asking for named topics would
    create them on some brokers, Tansu among them)."""
    client = AIOKafkaClient(**client_options(kafka))
    try:
        await settle_before_cancel(_meet(client))
    except KafkaError as exc:
        await _close(client)
        raise LookupError_(
            f"cannot reach the Kafka broker at {kafka.bootstrap_servers} ({type(exc).__name__})"
        ) from exc
    except BaseException:
        await _close(client)
        raise
    return client


async def _meet(client: AIOKafkaClient) -> None:
    await client.bootstrap()
    await client.force_metadata_update()  # no topic added: the metadata of all of them


async def _close(client: AIOKafkaClient) -> None:
    with contextlib.suppress(KafkaError, OSError):
        await client.close()


@contextlib.asynccontextmanager
async def connected(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaClient]:
    """A started raw client (see ``_connected``), closed at the end."""
    client = await _connected(kafka)
    try:
        yield client
    finally:
        await _close(client)


@contextlib.asynccontextmanager
async def scanner(kafka: KafkaSettings, **options: int) -> AsyncIterator[Scanner]:
    async with connected(kafka) as client:
        scan = Scanner(client, kafka, **options)
        try:
            yield scan
        finally:
            await scan.close()
