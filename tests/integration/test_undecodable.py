"""A record the Kafka client cannot decode (a non-UTF-8 header key from another client) is a dead
letter; the bridge keeps running, and every other record still gets exactly one result."""

from __future__ import annotations

import asyncio
import sys
import uuid

import orjson
import pytest

from tests.integration.conftest import Stack, workfloo_command


async def produce_with(module: str, stack: Stack, values: list[bytes]) -> None:
    """One batch of ``values`` written by another client: ``tests.integration.<module>``."""
    topic = stack.settings.topics.run_commands
    args = [sys.executable, "-m", f"tests.integration.{module}", stack.broker.bootstrap, topic]
    process = await asyncio.create_subprocess_exec(*args, *[v.decode() for v in values])
    assert await asyncio.wait_for(process.wait(), 60) == 0


async def produce_with_a_bad_header_key(stack: Stack, values: list[bytes]) -> None:
    await produce_with("undecodable_producer", stack, values)


async def test_an_undecodable_record_is_a_dead_letter_and_the_rest_flows(stack: Stack) -> None:
    prefix = uuid.uuid4().hex[:6]
    ids = [f"undecodable-{prefix}-{n}" for n in range(4)]
    await stack.start_bridge()
    # one batch: a, b (bad header key), c; then d in a batch of its own
    await produce_with_a_bad_header_key(stack, [orjson.dumps(workfloo_command(i)) for i in ids[:3]])
    await stack.send((b"k", workfloo_command(ids[3])), topic=stack.settings.topics.run_commands)
    events = await stack.collect(4)

    outcomes = {e["data"]["command_id"]: e["data"] for e in events if isinstance(e, dict)}
    letters = [e for e in events if not isinstance(e, dict)]
    assert {i: o["status"] for i, o in outcomes.items()} == {ids[0]: "queued", ids[3]: "queued"}
    # aiokafka decodes a batch as a whole: c shares b's batch, so it cannot be read either
    assert sorted(int(dict(r.headers)["dlq.source.offset"]) for r in letters) == [1, 2]
    assert {dict(r.headers)["dlq.reason"] for r in letters} == {b"undecodable"}
    assert all(r.value == b"" and r.key is None for r in letters)  # unread: empty, since there is no key
    assert b"cannot decode" in dict(letters[0].headers)["dlq.detail"]
    assert await stack.collect(1, within_s=2) == []  # exactly one result each: nothing else arrives


# Only a broker that stores a batch as it came can serve one that fails its CRC: Apache Kafka checks
# the CRC at produce time and refuses the batch (there such a batch can only come from a bad disk).
@pytest.mark.only_broker("tansu")
async def test_a_batch_that_fails_its_crc_check_is_dead_lettered_corrupt_and_the_rest_flows(
    stack: Stack,
) -> None:
    prefix = uuid.uuid4().hex[:6]
    ids = [f"corrupt-{prefix}-{n}" for n in range(4)]
    topic = stack.settings.topics.run_commands
    await stack.send((b"k", workfloo_command(ids[0])), topic=topic)
    await produce_with(
        "corrupt_producer", stack, [orjson.dumps(workfloo_command(i)) for i in ids[1:3]]
    )  # one batch
    await stack.send((b"k", workfloo_command(ids[3])), topic=topic)
    await stack.start_bridge()
    events = await stack.collect(4)

    outcomes = {e["data"]["command_id"]: e["data"] for e in events if isinstance(e, dict)}
    letters = [e for e in events if not isinstance(e, dict)]
    assert {i: o["status"] for i, o in outcomes.items()} == {ids[0]: "queued", ids[3]: "queued"}
    # the CRC covers the batch: both of its records are dead letters, each with its own offset
    assert sorted(int(dict(r.headers)["dlq.source.offset"]) for r in letters) == [1, 2]
    assert {dict(r.headers)["dlq.reason"] for r in letters} == {b"corrupt"}
    assert all(r.value == b"" and r.key is None for r in letters)
    assert b"CRC check" in dict(letters[0].headers)["dlq.detail"]
    assert await stack.collect(1, within_s=2) == []
