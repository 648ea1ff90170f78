"""The changelog reader (raw fetches) against a real broker: what a restore reads is what a
``read_committed`` consumer reads, aborted transactions left out, from any position to the end."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.kafka.changelog import ChangelogReader
from bridge.kafka.clients import raw_client, started
from bridge.kafka.topics import wait_until_served
from bridge.local.abilities import BrokerAbilities
from bridge.local.broker import RunningBroker
from tests.integration.test_ledger import uid

pytestmark = pytest.mark.integration


async def new_topic(bootstrap: str, partitions: int) -> str:
    topic = uid("changelog")
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, partitions, 1)])
        await wait_until_served(admin, [topic])
    finally:
        await admin.close()
    return topic


async def read(
    bootstrap: str, topic: str, positions: dict[int, int], **options: Any
) -> tuple[dict[int, list[Any]], ChangelogReader]:
    async with started(AIOKafkaConsumer(bootstrap_servers=bootstrap)) as consumer:
        reader = ChangelogReader(raw_client(consumer), topic, positions, **options)
        got: dict[int, list[Any]] = {}
        async for partition, records in reader.batches():
            got.setdefault(partition, []).extend((r.offset, r.key, r.value) for r in records)
    return got, reader


async def test_every_partition_is_read_from_its_position_to_its_end(broker: RunningBroker) -> None:
    topic = await new_topic(broker.bootstrap, 3)
    async with started(AIOKafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=5)) as producer:
        for i in range(3000):
            await producer.send(topic, b"v%d" % i, key=b"k%d" % i, partition=i % 3)
        await producer.flush()
    got, reader = await read(
        broker.bootstrap, topic, {0: 0, 1: 400, 2: 1000}, read_committed=True, max_records=250
    )
    assert [len(got.get(p, [])) for p in range(3)] == [1000, 600, 0]
    assert [offset for offset, _, _ in got[1]] == list(range(400, 1000))
    assert got[0][7] == (7, b"k21", b"v21")  # the 8th record of partition 0 is the 22nd sent
    assert reader.positions == {0: 1000, 1: 1000, 2: 1000}


async def test_an_aborted_transaction_is_not_read_and_a_committed_one_is(
    broker: RunningBroker, broker_abilities: BrokerAbilities
) -> None:
    if not broker_abilities.idempotent_producer:
        pytest.skip("this broker grants no producer id: it has no transactions to abort")
    topic = await new_topic(broker.bootstrap, 1)
    transactional = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, transactional_id=uid("txn"))
    async with started(transactional) as producer:
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-1", key=b"a")
        await producer.begin_transaction()
        await producer.send_and_wait(topic, b"aborted", key=b"b")
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send_and_wait(topic, b"committed-2", key=b"c")
    got, reader = await read(broker.bootstrap, topic, {0: 0}, read_committed=True, snapshot_end=True)
    assert [value for _, _, value in got[0]] == [b"committed-1", b"committed-2"]
    uncommitted, _ = await read(broker.bootstrap, topic, {0: 0}, read_committed=False)
    assert [value for _, _, value in uncommitted[0]] == [b"committed-1", b"aborted", b"committed-2"]
    assert reader.positions[0] == reader.ends[0]  # past the last marker: nothing left to read


async def test_a_follower_reads_what_arrives_and_waits_at_the_broker_while_nothing_does(
    broker: RunningBroker,
) -> None:
    topic = await new_topic(broker.bootstrap, 2)
    async with (
        started(AIOKafkaProducer(bootstrap_servers=broker.bootstrap)) as producer,
        started(AIOKafkaConsumer(bootstrap_servers=broker.bootstrap)) as consumer,
    ):
        await producer.send_and_wait(topic, b"before", key=b"a", partition=0)
        reader = ChangelogReader(raw_client(consumer), topic, {0: 1, 1: 0}, read_committed=True)
        began = time.monotonic()
        rounds = 0
        while time.monotonic() - began < 1.0:  # nothing new: each round waits at the broker
            assert [found async for found in reader.follow(wait_ms=200)] == []
            rounds += 1
        assert rounds <= 10  # about five 200 ms waits, not a busy loop

        async def write_later() -> None:
            await asyncio.sleep(0.3)
            await producer.send_and_wait(topic, b"after", key=b"b", partition=1)

        writer = asyncio.create_task(write_later())
        got: list[tuple[int, int, bytes | None]] = []
        waited_from = time.monotonic()
        while not got:
            async for partition, records in reader.follow(wait_ms=5000):
                got.extend((partition, r.offset, r.value) for r in records)
        await writer
        assert time.monotonic() - waited_from < 4.0  # answered when the record came, not after 5 s
        assert got == [(1, 0, b"after")]
        assert reader.positions == {0: 1, 1: 1}
