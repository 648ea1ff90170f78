"""The bridge's Kafka producer and consumer, built from the settings (see :mod:`bridge.kafka_options`)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bridge.kafka_options import client_options, group_options
from bridge.settings import KafkaSettings


def make_producer(kafka: KafkaSettings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        **client_options(kafka),
        acks="all" if kafka.acks == "all" else int(kafka.acks),
        enable_idempotence=kafka.enable_idempotence,
        compression_type=kafka.compression_type,
        linger_ms=kafka.linger_ms,
        max_batch_size=min(kafka.max_batch_size, kafka.max_request_size),
        max_request_size=kafka.max_request_size,
    )


def make_consumer(kafka: KafkaSettings, drain_grace_s: float) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **client_options(kafka),
        **group_options(kafka, drain_grace_s),
        auto_offset_reset=kafka.auto_offset_reset,
        max_poll_records=kafka.max_poll_records,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
    )
