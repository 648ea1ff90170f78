"""The bridge's Kafka producer and consumer, built from the settings (see :mod:`bridge.kafka.options`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Collection
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.conn import CloseReason
from aiokafka.errors import KafkaError
from aiokafka.structs import ConsumerRecord

from bridge.config.settings import KafkaSettings
from bridge.kafka.options import client_options, group_options

log = logging.getLogger(__name__)
Client = TypeVar("Client", AIOKafkaConsumer, AIOKafkaProducer)
T = TypeVar("T")
START_GRACE_S = 5.0
LATE_COMMIT_S = 5.0
# A broker may answer a fetch with only what it gathered within the fetch's max wait: the embedded
# broker answers nothing at all when reading a long log takes longer, and a reader that asked for a short
# wait then never moves. A reader that is behind and got nothing asks for longer waits, up to this.
STARVED_WAIT_MAX_MS = 2000


def make_producer(kafka: KafkaSettings, **extra: Any) -> AIOKafkaProducer:
    """``extra``: more producer options (a transactional id)."""
    return AIOKafkaProducer(
        **client_options(kafka),
        acks="all" if kafka.acks == "all" else int(kafka.acks),
        enable_idempotence=kafka.enable_idempotence,
        compression_type=kafka.compression_type,
        linger_ms=kafka.linger_ms,
        max_batch_size=min(kafka.max_batch_size, kafka.max_request_size),
        max_request_size=kafka.max_request_size,
        **extra,
    )


def make_consumer(kafka: KafkaSettings, drain_grace_s: float) -> AIOKafkaConsumer:
    return AIOKafkaConsumer(
        **client_options(kafka),
        **group_options(kafka, drain_grace_s),
        auto_offset_reset=kafka.auto_offset_reset,
        max_poll_records=kafka.max_poll_records,
        fetch_max_wait_ms=kafka.fetch_max_wait_ms,
    )


def make_reader(
    kafka: KafkaSettings,
    group_id: str | None = None,
    fetch_max_wait_ms: int = 500,
    *,
    read_committed: bool | None = None,
) -> AIOKafkaConsumer:
    """A consumer for manual assignment, from the earliest record; ``group_id`` only keeps positions.
    ``read_committed`` (default: unless ``kafka.transactions`` is off): records of aborted transactions
    are skipped, open ones waited for."""
    if read_committed is None:
        read_committed = kafka.transactions != "off"
    return AIOKafkaConsumer(
        **client_options(kafka),
        group_id=group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=fetch_max_wait_ms,
        isolation_level="read_committed" if read_committed else "read_uncommitted",
    )


async def settle_before_cancel(start: Awaitable[T]) -> T:
    """Await ``start`` (a client connecting); a cancel that arrives meanwhile lets it finish first, for
    at most ``START_GRACE_S`` (however often it is cancelled meanwhile), and is raised after: aiokafka
    leaks the socket of a connection cancelled half-way (its bootstrap connection, for one), and the
    caller can then close what was opened."""
    task = asyncio.ensure_future(start)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_GRACE_S
        while not task.done() and loop.time() < deadline:
            try:
                await asyncio.wait([task], timeout=deadline - loop.time())
            except asyncio.CancelledError:
                continue  # cancelled again (a stop, then a shutdown): the grace holds all the same
        task.cancel()
        task.add_done_callback(_retrieve)
        raise


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()  # the caller was cancelled and closes the client: nothing to report


@contextlib.asynccontextmanager
async def started(client: Client) -> AsyncIterator[Client]:
    """``client`` started, and stopped on the way out: also when starting failed or was cancelled
    (a restore cancelled by a rebalance while connecting), which would otherwise leak its connections."""
    try:
        await settle_before_cancel(client.start())
        yield client
    finally:
        with contextlib.suppress(KafkaError, OSError):
            await stop_client(client)


async def stop_client(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """``client.stop()``, and every connection it opened closed, also when that stop fails half-way.

    A cancel of the caller while stopping lets the stop finish first (as :func:`settle_before_cancel`
    lets a start finish) and is raised after it: a stop cut short leaves the consumer's group routine
    connecting, and a second ``stop()`` does nothing. aiokafka's consumer also lets the CancelledError of
    a fetch request it cancels (one waiting out a retry after its broker failed a fetch) escape its
    ``stop()`` before it closes its connections: not the caller's cancel, so swallowed here once the
    connections are closed. A KafkaError or OSError is raised after the close. A commit still out may open
    a connection after the stop (see :func:`close_late_connections`)."""
    task = asyncio.current_task()
    cancels_before = task.cancelling() if task is not None else 0
    try:
        await settle_before_cancel(client.stop())
    except asyncio.CancelledError:
        _close_connections_now(client)
        if task is not None and task.cancelling() > cancels_before:
            raise
        log.warning("a kafka client stopped half-way (its broker failed a fetch); its connections are closed")
    except BaseException:
        _close_connections_now(client)
        raise
    await close_late_connections(client)


def _close_connections_now(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """Close the client's connections without waiting (nothing a cancel could cut short), and stop its
    metadata refresh, which would open them again."""
    inner = client._client
    if inner._sync_task is not None:
        inner._sync_task.cancel()
    for conn in list(inner._conns.values()):
        conn.close(reason=CloseReason.SHUTDOWN)


async def close_late_connections(client: AIOKafkaConsumer | AIOKafkaProducer) -> None:
    """After ``client.stop()``: close what aiokafka opened after it. An offset commit's request is shielded
    from its caller's cancel (a fence check or a commit cut short by the stop), so it may still be opening
    a coordinator connection when ``stop()`` closes the others; that one is then never closed. Wait for
    such commits (at most ``LATE_COMMIT_S``) and close the client's connections once more."""
    coordinator = getattr(client, "_coordinator", None)
    late = [task for task in asyncio.all_tasks() if _commit_request_of(task, coordinator)]
    if not late:
        return
    await asyncio.wait(late, timeout=LATE_COMMIT_S)
    for task in late:
        task.add_done_callback(_retrieve)
    await client._client.close()


def _commit_request_of(task: asyncio.Task[Any], coordinator: object) -> bool:
    coro: Any = task.get_coro()
    frame = getattr(coro, "cr_frame", None)
    return (
        coordinator is not None
        and getattr(coro, "__qualname__", "") == "GroupCoordinator._do_commit_offsets"
        and frame is not None
        and frame.f_locals.get("self") is coordinator
    )


Batch = tuple[TopicPartition, list[ConsumerRecord[bytes, bytes]]]


async def read_to_end(
    consumer: AIOKafkaConsumer,
    partitions: Collection[TopicPartition],
    *,
    snapshot_end: bool = False,
    max_records: int | None = None,
    idle_s: float | None = None,
) -> AsyncIterator[Batch]:
    """The records of ``partitions`` from the consumer's positions to each partition's end, batch by batch.

    The end is the high watermark when the position is checked, so records written while reading are
    read too (a restore must see a late write); with ``snapshot_end`` it is the one seen at the first
    fetch, and later records are left out (a tool reads what was there when it started). ``idle_s``:
    raise :class:`TimeoutError` when no fetch has told an end for that long."""
    ends: dict[TopicPartition, int] = {}
    pending = set(partitions)
    loop = asyncio.get_running_loop()
    deadline = None if idle_s is None else loop.time() + idle_s
    while pending:
        fetched = await consumer.getmany(*pending, timeout_ms=100, max_records=max_records)
        behind = False
        for tp in sorted(pending):
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            if tp not in ends or not snapshot_end:
                ends[tp] = highwater
                deadline = None if idle_s is None else loop.time() + idle_s
            records = [r for r in fetched.get(tp, []) if r.offset < ends[tp]]
            if records:
                yield tp, records
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
            else:
                behind = True
        if behind and not fetched:
            wait_longer(consumer)
        if deadline is not None and loop.time() > deadline:
            raise TimeoutError(f"no fetch answer for {sorted(pending)} within {idle_s:.0f}s")


def raw_client(consumer: AIOKafkaConsumer) -> AIOKafkaClient:
    """A started consumer's own client, for requests below the consumer (see bridge/kafka/changelog.py):
    its connections and metadata, no second bootstrap. aiokafka has no public accessor for it."""
    client: AIOKafkaClient = consumer._client
    return client


def wait_longer(consumer: AIOKafkaConsumer) -> int:
    """Double the consumer's fetch max wait (at least 50 ms, at most ``STARVED_WAIT_MAX_MS``); the new
    value. Apache Kafka answers at once when records are there, so a longer wait costs a reader that is
    behind nothing; aiokafka reads the value for every fetch request but has no public setter for it."""
    fetcher: Any = consumer._fetcher
    fetcher._fetch_max_wait_ms = longer_wait(fetcher._fetch_max_wait_ms)
    return int(fetcher._fetch_max_wait_ms)


def longer_wait(wait_ms: int) -> int:
    """A starved reader's next fetch wait: doubled, at least 50 ms, at most ``STARVED_WAIT_MAX_MS``."""
    return min(max(wait_ms * 2, 50), STARVED_WAIT_MAX_MS)
