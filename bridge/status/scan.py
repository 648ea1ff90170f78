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
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError
from aiokafka.protocol.fetch import FetchRequest
from aiokafka.record.memory_records import MemoryRecords

from bridge.config.settings import KafkaSettings
from bridge.errors import BridgeError
from bridge.kafka.options import client_options
from bridge.status.facts import RawRecord

OFFSET_OUT_OF_RANGE = 1
MAX_WAIT_MS = 100  # Tansu answers a fetch with max_wait 0 with no records at all
EMPTY_FETCHES = 5  # fetches in a row that bring nothing below the end: the partition is cut short


class LookupError_(BridgeError):
    """The broker did not let the lookup read what it needs; the message says what."""


@dataclass
class Scanned:
    """What one partition held: the matching records, and its offsets when read."""

    topic: str
    partition: int
    start: int
    end: int
    records: list[RawRecord] = field(default_factory=list)
    bytes_read: int = 0


class Scanner:
    def __init__(self, client: AIOKafkaClient, chunk_bytes: int = 1 << 20, segments: int = 4) -> None:
        self._client = client
        self._chunk = chunk_bytes
        self._segments = segments

    def partitions(self, topic: str) -> int | None:
        found = self._client.cluster.partitions_for_topic(topic)
        return len(found) if found else None

    async def partition(
        self, topic: str, partition: int, needles: Sequence[bytes], start_at: int = 0
    ) -> Scanned:
        """Every record of ``topic[partition]`` from ``start_at`` to the end whose key, value or a
        header contains one of ``needles``."""
        node = self._client.cluster.leader_for_partition(TopicPartition(topic, partition))
        if node is None or node < 0:
            raise LookupError_(f"no leader for {topic}[{partition}]")
        start, end = await self._bounds(node, topic, partition, start_at)
        scanned = Scanned(topic, partition, start, end)
        if end <= start:
            return scanned
        step = max(1, -(-(end - start) // self._segments))
        ranges = [(lo, min(end, lo + step)) for lo in range(start, end, step)]
        parts = await asyncio.gather(*(self._segment(node, scanned, lo, hi, needles) for lo, hi in ranges))
        for records, read in parts:
            scanned.records += records
            scanned.bytes_read += read
        return scanned

    async def _fetch(
        self, node: int, topic: str, partition: int, offset: int, max_bytes: int
    ) -> tuple[int, int, int | None, bytes]:
        """(error code, high watermark, log start offset or None, record bytes)."""
        request = FetchRequest(MAX_WAIT_MS, 1, max_bytes, 0, [(topic, [(partition, offset, max_bytes)])])
        try:
            response = await self._client.send(node, request)
        except KafkaError as exc:
            raise LookupError_(f"cannot fetch {topic}[{partition}]: {exc}") from exc
        for name, parts in response.topics:
            for part in parts:
                if name == topic and part[0] == partition:
                    log_start = part[4] if response.API_VERSION >= 5 else None
                    return part[1], part[2], log_start, part[-1] or b""
        return 0, offset, None, b""

    async def _bounds(self, node: int, topic: str, partition: int, start_at: int) -> tuple[int, int]:
        error, end, log_start, _ = await self._fetch(node, topic, partition, start_at, 1)
        if error == OFFSET_OUT_OF_RANGE and log_start is not None and log_start > start_at:
            return log_start, end
        if error not in (0, OFFSET_OUT_OF_RANGE):
            raise LookupError_(f"cannot fetch {topic}[{partition}]: broker error {error}")
        return max(start_at, log_start or 0), end

    async def _segment(
        self, node: int, scanned: Scanned, lo: int, hi: int, needles: Sequence[bytes]
    ) -> tuple[list[RawRecord], int]:
        found: list[RawRecord] = []
        offset, read, empty = lo, 0, 0
        while offset < hi:
            _, _, _, data = await self._fetch(node, scanned.topic, scanned.partition, offset, self._chunk)
            read += len(data)
            moved = _walk(data, scanned, hi, needles, found)
            if moved is None or moved <= offset:
                empty += 1
                if empty >= EMPTY_FETCHES:
                    break  # records removed under us (retention) or a batch we cannot read: stop here
                continue
            offset, empty = moved, 0
        return found, read


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


@contextlib.asynccontextmanager
async def scanner(kafka: KafkaSettings, **options: int) -> AsyncIterator[Scanner]:
    """A started raw client that knows the metadata of every topic (asking for named topics would
    create them on some brokers, Tansu among them)."""
    client = AIOKafkaClient(**client_options(kafka))
    try:
        try:
            await client.bootstrap()
            await client.force_metadata_update()  # no topic added: the metadata of all of them
        except KafkaError as exc:
            raise LookupError_(
                f"cannot reach the Kafka broker at {kafka.bootstrap_servers} ({type(exc).__name__})"
            ) from exc
        yield Scanner(client, **options)
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await client.close()
