"""The two Kafka clients the engine talks to, as the small protocols it needs.

``AIOKafkaConsumer`` and ``AIOKafkaProducer`` satisfy them; ``bridge.testing`` has in-memory fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Collection, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import TopicPartition

from bridge.messages.wire import Header


class Record(Protocol):
    """What a restore reads of a record (a state changelog's entry): see bridge/kafka/changelog.py."""

    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class ConsumedRecord(Record, Protocol):
    """The fields of ``aiokafka.ConsumerRecord`` the engine reads."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def headers(self) -> Sequence[Header]: ...
    @property
    def timestamp(self) -> int: ...


class RebalanceListener(Protocol):
    async def on_partitions_revoked(self, revoked: Any) -> None: ...
    async def on_partitions_assigned(self, assigned: Any) -> None: ...


class ConsumerPort(Protocol):
    def subscribe(self, topics: list[str], *, listener: Any) -> None: ...
    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[Any]]: ...
    def assignment(self) -> Collection[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    async def commit(self, offsets: Any = None) -> None: ...
    def highwater(self, partition: TopicPartition) -> int | None: ...
    async def position(self, partition: TopicPartition) -> int: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    async def topics(self) -> Any: ...


class ProducerPort(Protocol):
    async def send(
        self,
        topic: str,
        *,
        value: bytes | None,
        key: bytes | None,
        headers: list[Header],
        partition: int | None = None,
    ) -> Awaitable[Any]:
        """Queue a record; the awaitable it returns resolves when the broker acknowledges it."""
        ...
