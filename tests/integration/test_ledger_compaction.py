"""The command ledger after the broker's log cleaner compacted it: the ledger topic is
``cleanup.policy: compact,delete`` (topics/workflow.bridge.ledger.yaml), so in production a restore
reads a log with gaps in its offsets, where only the latest entry of each command id is left."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.kafka.topics import wait_until_served
from bridge.ledger.entries import DoneFields, encode_dispatched, encode_done, fingerprint
from tests.integration.conftest import TOPIC_SPECS, Stack, workfloo_command
from tests.integration.test_ledger import as_command, produce, sample, send_to_partition, uid, wait_for

pytestmark = pytest.mark.integration

IDS = 2_000


async def records_in(stack: Stack, tp: TopicPartition) -> tuple[int, int]:
    """(records left, high watermark) of one partition, read from its start."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.broker.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign([tp])
        await consumer.seek_to_beginning(tp)
        [end] = (await consumer.end_offsets([tp])).values()
        count = 0
        while await consumer.position(tp) < end:
            batch = await consumer.getmany(tp, timeout_ms=500)
            count += sum(len(records) for records in batch.values())
        return count, end
    finally:
        await consumer.stop()


# Only Apache Kafka runs a log cleaner; Tansu 0.6 keeps every record.
@pytest.mark.only_broker("kafka")
async def test_a_compacted_ledger_restores_every_id_and_still_absorbs_a_duplicate(stack: Stack) -> None:
    [spec] = [s for s in TOPIC_SPECS if s.role == "ledger"]
    # the spec's configs, with segments that roll at once: the cleaner never touches the active one
    ledger = uid("compacted-ledger")
    configs = {**spec.configs, "min.insync.replicas": "1", "segment.ms": "100"}
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(ledger, 4, 1, topic_configs=configs)])
        await wait_until_served(admin, [ledger])
    finally:
        await admin.close()
    settings = stack.configure(topics={"ledger": ledger})
    topic, now = settings.topics.run_commands, int(time.time() * 1000)
    done = DoneFields("queued", "ref", "event")
    ids = [uid(f"seen-{i}") for i in range(IDS)]
    # what the bridge writes for every command: dispatched, then done, under one key
    entries = [encode_dispatched(topic, command_id, 1, i, now) for i, command_id in enumerate(ids)]
    entries += [encode_done(topic, command_id, 1, i, now, done) for i, command_id in enumerate(ids)]
    tp = TopicPartition(ledger, 0)
    await produce(stack, [(ledger, 0, k, v, []) for k, v in entries])

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    rolls = 0
    while True:  # each write after segment.ms rolls a segment; the cleaner compacts the closed ones
        await asyncio.sleep(0.3)
        await produce(stack, [(ledger, 0, *encode_done(topic, uid("roll"), 1, 0, now, done), [])])
        rolls += 1
        left, end = await records_in(stack, tp)
        if left <= IDS + 20:  # about one entry per id (plus the rolls) is left
            break
        assert loop.time() < deadline, f"not compacted within 60 s: {left} of {end} records left"
    print(f"compacted: {left} of {end} records left")

    # a command whose id the compacted ledger knows is a duplicate; a new one runs
    again = workfloo_command(uid("again"))
    known = workfloo_command(ids[0])
    known_fp = fingerprint(as_command(known))
    await produce(stack, [(ledger, 0, *encode_done(topic, known["id"], known_fp, 0, now, done), [])])
    await send_to_partition(stack, known)
    await send_to_partition(stack, again)
    bridge = await stack.start_bridge()
    [outcome] = await stack.collect(1)
    assert outcome["data"]["command_id"] == again["id"]
    await wait_for(lambda: sample(bridge, "bridge_duplicates_total", reason="done") == 1)
    assert await stack.collect(1, within_s=1) == []
    # every id survived compaction: the restore remembered each (and the rolls), and again's is new
    assert sample(bridge, "bridge_ledger_entries") == IDS + rolls + 1
