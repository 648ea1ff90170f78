"""In-memory stand-ins for the Kafka consumer and producer and for the HTTP client, for tests that need
no broker and no network; they ship with the bridge, for its own tests and for its users' tests.

They implement :mod:`bridge.kafka.ports`, so an :class:`bridge.kafka.engine.Engine` runs on them unchanged::

    consumer, producer = FakeConsumer(), FakeProducer()
    consumer.add("workflow.run.commands", b'{"id": "c-1", ...}', key=b"k")
    engine = Engine(consumer, producer, handler, {"workflow.run.commands": "run"}, settings, metrics)
    task = asyncio.create_task(engine.run())
    await consumer.rebalance([TopicPartition("workflow.run.commands", 0)])  # join: partition 0 is ours
    ...
    await consumer.rebalance([])  # revoke everything: the engine drains and commits in the callback
    assert consumer.committed[TopicPartition("workflow.run.commands", 0)] == 1

Like the real client, records come only from assigned, unpaused partitions, a new assignment starts
reading at the committed offset, and committing a partition that is not assigned is refused.

:class:`FakeTransport` stands where the HTTP client stands (like httpx's ``MockTransport``): give it a
function from :class:`~bridge.http.Call` to :class:`~bridge.http.Response` (or an exception to
raise) and it records every call::

    transport = FakeTransport(lambda call: Response(200, {}, b'{"id": "run-1"}'))
    executor = Executor(transport, Metrics(), Redactor(), 2048)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from aiokafka import TopicPartition
from aiokafka.errors import CorruptRecordException, IllegalStateError, KafkaError

from bridge.errors import ProviderCallError
from bridge.http import Call, Response
from bridge.kafka.ports import ConsumerPort, ProducerPort, RebalanceListener
from bridge.messages.wire import Header
from bridge.waits import within

__all__ = ["FakeConsumer", "FakeProducer", "FakeRecord", "FakeTransport", "SentRecord", "json_response"]


@dataclass(frozen=True, slots=True)
class FakeRecord:
    """A consumed record, with the fields of ``aiokafka.ConsumerRecord`` the bridge reads."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[Header] = ()
    timestamp: int = -1
    undecodable: bool = False  # the real client raises on it, as aiokafka does on a non-UTF-8 header key


class FakeConsumer:
    """A consumer-group member whose log, assignment and rebalances the test drives."""

    def __init__(self) -> None:
        self.logs: dict[TopicPartition, list[FakeRecord]] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        self.commit_error: KafkaError | None = None  # raised by every commit() while set
        self.topics_subscribed: list[str] = []
        self._listener: RebalanceListener | None = None
        self._assigned: frozenset[TopicPartition] = frozenset()
        self._paused: set[TopicPartition] = set()
        self._positions: dict[TopicPartition, int] = {}
        self._wakeup = asyncio.Event()
        self._corrupt: dict[tuple[TopicPartition, int], int | None] = {}  # -> reads still to fail

    # -- what the test drives ----------------------------------------------------------------

    def add(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None = None,
        partition: int = 0,
        headers: Sequence[Header] = (),
        timestamp_ms: int | None = None,
    ) -> int:
        """Append a record to a partition's log; returns its offset."""
        log = self.logs.setdefault(TopicPartition(topic, partition), [])
        stamp = int(time.time() * 1000) if timestamp_ms is None else timestamp_ms
        log.append(FakeRecord(topic, partition, len(log), key, value, tuple(headers), stamp))
        self._wakeup.set()
        return len(log) - 1

    def add_undecodable(self, topic: str, *, partition: int = 0) -> int:
        """Append a record that ``getmany`` cannot decode; returns its offset."""
        log = self.logs.setdefault(TopicPartition(topic, partition), [])
        log.append(FakeRecord(topic, partition, len(log), None, None, undecodable=True))
        self._wakeup.set()
        return len(log) - 1

    def add_corrupt(
        self, topic: str, value: bytes, *, partition: int = 0, failed_reads: int | None = None
    ) -> int:
        """Append a record whose CRC check fails on its first ``failed_reads`` reads (None: on every
        read); ``getmany`` then raises ``CorruptRecordException``, as aiokafka does. Returns its offset."""
        offset = self.add(topic, value, partition=partition)
        self._corrupt[(TopicPartition(topic, partition), offset)] = failed_reads
        return offset

    async def rebalance(self, assigned: Iterable[TopicPartition]) -> None:
        """An eager rebalance, as aiokafka does it: revoke everything, then assign ``assigned``."""
        listener = self._require_listener()
        await listener.on_partitions_revoked(set(self._assigned))
        self._assigned = frozenset(assigned)
        self._paused &= self._assigned
        self._positions = {tp: self.committed.get(tp, 0) for tp in self._assigned}
        await listener.on_partitions_assigned(set(self._assigned))
        self._wakeup.set()

    def paused(self) -> frozenset[TopicPartition]:
        return frozenset(self._paused)

    # -- the consumer port -------------------------------------------------------------------

    def subscribe(self, topics: list[str], *, listener: Any) -> None:
        self.topics_subscribed = list(topics)
        self._listener = listener

    async def getmany(
        self, *partitions: TopicPartition, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[FakeRecord]]:
        batch = self._take(max_records, partitions)
        if not batch and timeout_ms > 0:
            self._wakeup.clear()
            await within(self._wakeup.wait(), timeout_ms / 1000)
            batch = self._take(max_records, partitions)
        return batch

    def assignment(self) -> Collection[TopicPartition]:
        return self._assigned

    def pause(self, *partitions: TopicPartition) -> None:
        self._paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        self._paused.difference_update(partitions)
        self._wakeup.set()

    async def commit(self, offsets: Mapping[TopicPartition, int] | None = None) -> None:
        if self.commit_error is not None:
            raise self.commit_error
        chosen = dict(offsets or {})
        if unassigned := set(chosen) - self._assigned:
            raise IllegalStateError(f"Partitions {sorted(unassigned)} are not assigned")
        self.committed.update(chosen)
        self.commits.append(chosen)

    def highwater(self, partition: TopicPartition) -> int | None:
        return len(self.logs.get(partition, ()))

    async def topics(self) -> set[str]:
        return {tp.topic for tp in self.logs}

    async def position(self, partition: TopicPartition) -> int:
        return self._positions[partition]

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._positions[partition] = offset

    def _take(
        self, max_records: int | None, only: Collection[TopicPartition] = ()
    ) -> dict[TopicPartition, list[FakeRecord]]:
        room = max_records if max_records is not None else 500
        batch: dict[TopicPartition, list[FakeRecord]] = {}
        for tp in sorted((self._assigned - self._paused) & (set(only) or self._assigned)):
            records = self.logs.get(tp, [])[self._positions[tp] :][:room]
            if any(r.undecodable for r in records):
                # like aiokafka: the whole read fails, nothing is delivered, the position stays
                raise UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte")
            self._check_crc(tp, records)
            if records:
                batch[tp] = records
                self._positions[tp] += len(records)
                room -= len(records)
        return batch

    def _check_crc(self, tp: TopicPartition, records: Sequence[FakeRecord]) -> None:
        for record in records:
            left = self._corrupt.get((tp, record.offset), 0)
            if left is None or left > 0:
                if left is not None:
                    self._corrupt[(tp, record.offset)] = left - 1
                raise CorruptRecordException(f"Invalid CRC - {tp}")

    def _require_listener(self) -> RebalanceListener:
        if self._listener is None:
            raise IllegalStateError("subscribe() with a listener before rebalancing")
        return self._listener


@dataclass(frozen=True, slots=True)
class SentRecord:
    topic: str
    key: bytes | None
    value: bytes | None
    headers: tuple[Header, ...]


class FakeProducer:
    """Acknowledges every send at once, except the next ``fail_next`` ones, which fail like a broker."""

    def __init__(self) -> None:
        self.sent: list[SentRecord] = []
        self.fail_next = 0
        self.failure: type[KafkaError] = KafkaError

    async def send(
        self,
        topic: str,
        *,
        value: bytes | None,
        key: bytes | None,
        headers: list[Header],
        partition: int | None = None,
    ) -> asyncio.Future[None]:
        if value is None and key is None:  # aiokafka asserts the same
            raise AssertionError("Need at least one: key or value")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self.fail_next > 0:
            self.fail_next -= 1
            future.set_exception(self.failure("the fake broker refused the produce request"))
            return future
        self.sent.append(SentRecord(topic, key, value, tuple(headers)))
        future.set_result(None)
        return future

    def values(self, topic: str | None = None) -> list[bytes | None]:
        """The values published (to ``topic``), in order."""
        return [r.value for r in self.sent if topic is None or r.topic == topic]


if TYPE_CHECKING:  # mypy proves that the fakes fit the ports the engine takes
    _consumer: ConsumerPort = FakeConsumer()
    _producer: ProducerPort = FakeProducer()


# -- HTTP -----------------------------------------------------------------------------------------

Answer = Response | ProviderCallError
Route = Callable[[Call], Answer]


@dataclass
class FakeTransport:
    """Answers calls with ``route``; ``calls`` lists what was sent, in order."""

    route: Route
    calls: list[Call] = field(default_factory=list)

    @classmethod
    def scripted(cls, answers: Iterable[Answer]) -> FakeTransport:
        """Answers in order, one per call; a call beyond the script is a test failure."""
        queue = list(answers)

        def next_answer(call: Call) -> Answer:
            if not queue:
                raise AssertionError(f"unexpected extra call: {call.method} {call.url}")
            return queue.pop(0)

        return cls(next_answer)

    async def __call__(self, call: Call) -> Response:
        self.calls.append(call)
        answer = self.route(call)
        if isinstance(answer, ProviderCallError):
            raise answer
        return answer


def json_response(status: int, body: bytes = b"{}", **headers: str) -> Response:
    return Response(status, {"Content-Type": "application/json", **headers}, body)
