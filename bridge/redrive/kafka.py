"""Kafka I/O of the redrive tools: read topics up to the end seen at the start, fetch one record, publish.

A run reads each partition up to its high watermark at the first fetch (Tansu answers ListOffsets
unreliably, the fetch high watermark never), so what the run itself causes (a replayed record that
dead-letters again) waits for the next run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.cluster import ClusterMetadata

from bridge.config.settings import KafkaSettings
from bridge.errors import BridgeError
from bridge.kafka import clients
from bridge.kafka.clients import make_producer, make_reader, started
from bridge.messages.provenance import replay_headers
from bridge.redrive.select import Coordinates, RecordLike

DLQ_GROUP = "workflow-bridge-dlq-replay"
REDRIVE_GROUP = "workflow-bridge-redrive"
IDLE_TIMEOUT_S = 15.0


class RedriveError(BridgeError):
    """The broker did not let a redrive tool read or write what it needs."""


@asynccontextmanager
async def open_consumer(kafka: KafkaSettings, group_id: str | None = None) -> AsyncIterator[AIOKafkaConsumer]:
    """A consumer for manual assignment; ``group_id`` is only where positions are committed."""
    async with started(make_reader(kafka, group_id)) as consumer:
        yield consumer


@asynccontextmanager
async def open_producer(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaProducer]:
    # like `bridge send`: a replay is at least once anyway (provenance headers say which), and some
    # brokers (Tansu) have no idempotent producer
    async with started(make_producer(kafka.model_copy(update={"enable_idempotence": False}))) as producer:
        yield producer


async def assign(consumer: AIOKafkaConsumer, topics: Sequence[str], *, resume: bool) -> list[TopicPartition]:
    """Assign every partition of ``topics``, positioned at the group's commit (``resume``) or the start."""
    # the consumer's own metadata cannot be used: aiokafka bootstraps with an empty topic list, which
    # Apache Kafka answers with no topics (Tansu with all of them), so ask for every topic explicitly
    cluster = await consumer._client.fetch_all_metadata()
    partitions = [TopicPartition(t, p) for t in topics for p in sorted(_partitions(cluster, t))]
    consumer.assign(partitions)
    for tp in partitions:
        committed = await consumer.committed(tp) if resume else None
        consumer.seek(tp, committed or 0)
    return partitions


def _partitions(cluster: ClusterMetadata, topic: str) -> set[int]:
    found: set[int] | None = cluster.partitions_for_topic(topic)
    if not found:
        raise RedriveError(f"topic {topic} does not exist")
    return found


async def read_to_end(
    consumer: AIOKafkaConsumer, partitions: Sequence[TopicPartition], idle_s: float = IDLE_TIMEOUT_S
) -> AsyncIterator[ConsumerRecord[bytes, bytes]]:
    """Every record from the assigned positions up to each partition's end at its first fetch."""
    try:
        async for _, records in clients.read_to_end(consumer, partitions, snapshot_end=True, idle_s=idle_s):
            for record in records:
                yield record
    except TimeoutError as exc:
        raise RedriveError(str(exc)) from exc


async def commit(consumer: AIOKafkaConsumer, positions: Mapping[tuple[str, int], int]) -> None:
    """Commit the group's position: the next offset to consider, per (topic, partition)."""
    if positions:
        await consumer.commit({TopicPartition(t, p): offset for (t, p), offset in positions.items()})


async def fetch_one(consumer: AIOKafkaConsumer, at: Coordinates) -> ConsumerRecord[bytes, bytes] | None:
    """The record at ``at`` (a consumer without a group), or None when it is no longer in the log."""
    tp = TopicPartition(at.topic, at.partition)
    consumer.assign([tp])
    consumer.seek(tp, at.offset)
    async for record in read_to_end(consumer, [tp]):
        return record if record.offset == at.offset else None
    return None


async def put_back(
    producer: AIOKafkaProducer,
    topic: str,
    record: RecordLike,
    origin: Coordinates,
    count: int,
    *,
    redrive: bool,
) -> Coordinates:
    """Publish ``record``'s key and value to ``topic`` with provenance headers; where it landed."""
    headers = replay_headers(record.headers, str(origin), count, redrive=redrive)
    meta = await producer.send_and_wait(topic, record.value, key=record.key, headers=headers)
    return Coordinates(topic, meta.partition, meta.offset)
