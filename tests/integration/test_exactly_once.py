"""Exactly one visible outcome per command on a broker with transactions (docs/exactly-once.md):
bridge processes killed with SIGKILL or stopped with SIGTERM mid-stream, and a zombie (paused past its
session timeout while another member took its partitions, then resumed), then a restart. A
``read_committed`` reader sees one outcome per command id; the duplicates that a ``read_committed``
and a ``read_uncommitted`` reader see are printed.

Skipped where the broker grants no transactional producer (the embedded Tansu): asked, not named.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.config.settings import KafkaSettings
from bridge.kafka.delivery import choose_delivery
from bridge.local.broker import free_port
from tests.integration.conftest import Stack, start_process
from tests.integration.test_ledger import stream, uid

pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

COMMANDS = 3000
KEYS = 300
LOGS = {"log_level": "WARNING"}  # the per-outcome info lines would fill the unread stderr pipe


@pytest.fixture
async def transactional(stack: Stack) -> Stack:
    kafka = KafkaSettings(
        bootstrap_servers=stack.broker.bootstrap, group_id=f"{stack.settings.kafka.group_id}-probe"
    )
    if not await choose_delivery(kafka):
        pytest.skip("this broker grants no transactional producer (the embedded Tansu): nothing to test")
    return stack


async def outcomes(stack: Stack, isolation: str) -> list[dict[str, Any]]:
    """Every outcome event on the outcome topics, read from the beginning to each partition's end
    (the last stable offset for read_committed: a transaction still open is not waited for)."""
    t = stack.settings.topics
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.broker.bootstrap, enable_auto_commit=False, isolation_level=isolation
    )
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for topic in (t.run_outcomes, t.control_outcomes) for p in range(4)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[dict[str, Any]] = []
        remaining = set(tps)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=200)
            found += [orjson.loads(r.value) for records in batch.values() for r in records]
            for tp in list(remaining):
                end = consumer.last_stable_offset(tp) if isolation == "read_committed" else None
                end = end if end is not None and end >= 0 else consumer.highwater(tp)
                if end is not None and await consumer.position(tp) >= end:
                    remaining.discard(tp)
        return found
    finally:
        await consumer.stop()


def duplicates(events: list[dict[str, Any]]) -> tuple[int, int]:
    """(outcomes beyond the first of an id, ids whose outcomes disagree on the status)."""
    per_id = Counter(e["data"]["command_id"] for e in events)
    statuses: dict[str, set[str]] = {}
    for e in events:
        statuses.setdefault(e["data"]["command_id"], set()).add(e["data"]["status"])
    return sum(n - 1 for n in per_id.values()), sum(1 for s in statuses.values() if len(s) > 1)


async def until_all_answered(stack: Stack, expected: set[str], within_s: float) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        events = await outcomes(stack, "read_committed")
        missing = expected - {e["data"]["command_id"] for e in events}
        if not missing:
            return events
        assert loop.time() < deadline, f"{len(missing)} command(s) without an outcome"
        await asyncio.sleep(1.0)


async def until_answered(stack: Stack, count: int, within_s: float = 120) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while len(await outcomes(stack, "read_committed")) < count:
        assert loop.time() < deadline, f"fewer than {count} outcomes"
        await asyncio.sleep(0.3)


async def until_assigned(port: int, within_s: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    async with aiohttp.ClientSession() as session:
        while True:
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(f"http://127.0.0.1:{port}/metrics") as response:
                    for line in (await response.text()).splitlines():
                        if line.startswith("bridge_assigned_partitions ") and float(line.split()[1]) > 0:
                            return
            assert loop.time() < deadline, "the joiner was never assigned a partition"
            await asyncio.sleep(0.2)


async def stop(process: asyncio.subprocess.Process, sig: int) -> str:
    process.send_signal(sig)
    _, err = await asyncio.wait_for(
        process.communicate(), 60
    )  # reads stderr to its end: its transport closes
    return err.decode(errors="replace")


def report(what: str, committed: list[dict[str, Any]], uncommitted: list[dict[str, Any]]) -> None:
    extra_c, contra_c = duplicates(committed)
    extra_u, contra_u = duplicates(uncommitted)
    print(
        f"\n{what}: read_committed {len(committed)} outcome(s), {extra_c} duplicate(s), "
        f"{contra_c} contradicting; read_uncommitted {len(uncommitted)} outcome(s), "
        f"{extra_u} duplicate(s), {contra_u} contradicting"
    )


@pytest.mark.solo
@pytest.mark.parametrize(
    ("sig", "transactions"),
    [(signal.SIGKILL, "on"), (signal.SIGTERM, "on"), (signal.SIGKILL, "off")],
    ids=["kill-9", "sigterm", "kill-9-at-least-once"],
)
async def test_a_member_stopped_mid_stream_then_restarted_one_outcome_per_command(
    transactional: Stack, tmp_path: Path, sig: int, transactions: str
) -> None:
    """``off``: the same run at least once, for comparison (only the absence of loss is asserted)."""
    stack = transactional
    await stack.fault("workfloo", {"latency_ms": 20})
    commands = stream(uid("eos"), COMMANDS, keys=KEYS)
    await stack.send(*commands)
    mode = {"transactions": transactions}
    process = await start_process(
        stack, tmp_path, engine={"max_in_flight": 200}, observability=LOGS, kafka=mode
    )
    await until_answered(stack, COMMANDS // 3)
    logs = await stop(process, sig)
    assert "Traceback" not in logs, logs[-2000:]

    restarted = await start_process(
        stack, tmp_path, name="restarted", engine={"max_in_flight": 200}, observability=LOGS, kafka=mode
    )
    try:
        committed = await until_all_answered(stack, {doc["id"] for _, doc in commands}, 240)
    finally:
        await stop(restarted, signal.SIGTERM)
    committed = await outcomes(stack, "read_committed")
    uncommitted = await outcomes(stack, "read_uncommitted")
    report(f"{signal.Signals(sig).name}, transactions {transactions}", committed, uncommitted)
    assert {e["data"]["command_id"] for e in committed} == {doc["id"] for _, doc in commands}
    if transactions == "on":
        assert duplicates(committed) == (0, 0), "a read_committed reader saw a command answered twice"
        assert len(committed) == COMMANDS


@pytest.mark.solo
async def test_a_zombie_resumed_after_its_partitions_moved_cannot_commit(
    transactional: Stack, tmp_path: Path
) -> None:
    stack = transactional
    await stack.fault("workfloo", {"latency_ms": 20})
    commands = stream(uid("zombie"), COMMANDS, keys=KEYS)
    await stack.send(*commands)
    quick = {"session_timeout_ms": 3000, "heartbeat_interval_ms": 300}
    zombie = await start_process(
        stack, tmp_path, engine={"max_in_flight": 200}, observability=LOGS, kafka=quick
    )
    await until_answered(stack, COMMANDS // 4)
    zombie.send_signal(signal.SIGSTOP)  # mid-stream: finished commands wait in its open transactions
    successor = await start_process(
        stack, tmp_path, name="successor", engine={"max_in_flight": 200}, observability=LOGS, kafka=quick
    )
    try:
        await until_answered(stack, COMMANDS // 2)  # the successor owns every partition now
        zombie.send_signal(signal.SIGCONT)
        committed = await until_all_answered(stack, {doc["id"] for _, doc in commands}, 240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            zombie.send_signal(signal.SIGCONT)
        zombie_logs = await stop(zombie, signal.SIGTERM)
        await stop(successor, signal.SIGTERM)
    committed = await outcomes(stack, "read_committed")
    uncommitted = await outcomes(stack, "read_uncommitted")
    report("zombie", committed, uncommitted)
    fenced = zombie_logs.count("fenced: another owner took the partition")
    print(f"zombie: {fenced} transaction(s) fenced")
    assert duplicates(committed) == (0, 0), "a read_committed reader saw a command answered twice"
    assert len(committed) == COMMANDS


@pytest.mark.solo
async def test_a_member_joins_and_another_leaves_mid_stream_one_outcome_per_command(
    transactional: Stack, tmp_path: Path
) -> None:
    stack = transactional
    await stack.fault("workfloo", {"latency_ms": 200})  # slow enough that both moves land mid-stream
    commands = stream(uid("rebalance"), COMMANDS, keys=KEYS)
    await stack.send(*commands)
    engine = {"max_in_flight": 50}
    first = await start_process(stack, tmp_path, engine=engine, observability=LOGS)
    await until_answered(stack, COMMANDS // 10)
    port = free_port()
    joiner = await start_process(
        stack, tmp_path, name="joiner", engine=engine, observability=LOGS, metrics_port=port
    )
    try:
        await until_assigned(port)  # the group rebalanced: the joiner owns partitions
        at_join = len(await outcomes(stack, "read_committed"))
        first_logs = await stop(first, signal.SIGTERM)  # leaves: the joiner takes its partitions
        at_leave = len(await outcomes(stack, "read_committed"))
        await until_all_answered(stack, {doc["id"] for _, doc in commands}, 240)
    finally:
        with contextlib.suppress(ProcessLookupError):
            first.kill()
        joiner_logs = await stop(joiner, signal.SIGTERM)
    fenced = (first_logs + joiner_logs).count("fenced: another owner took the partition")
    print(
        f"\nthe joiner owned partitions after {at_join} outcomes, "
        f"the first member left after {at_leave}; {fenced} fenced"
    )
    assert at_leave < COMMANDS, "the stream ended before the member left: nothing moved mid-stream"
    committed = await outcomes(stack, "read_committed")
    uncommitted = await outcomes(stack, "read_uncommitted")
    report("join, then leave", committed, uncommitted)
    assert duplicates(committed) == (0, 0), "a read_committed reader saw a command answered twice"
    assert len(committed) == COMMANDS


@pytest.fixture
async def without_transactions(stack: Stack) -> Stack:
    kafka = KafkaSettings(
        bootstrap_servers=stack.broker.bootstrap, group_id=f"{stack.settings.kafka.group_id}-probe"
    )
    if await choose_delivery(kafka):
        pytest.skip("this broker grants transactional producers: the refusal cannot be seen here")
    return stack


async def test_transactions_on_without_them_refuses_to_start_with_one_line(
    without_transactions: Stack, tmp_path: Path
) -> None:
    process = await start_process(without_transactions, tmp_path, kafka={"transactions": "on"})
    _, err = await asyncio.wait_for(process.communicate(), 60)
    lines = err.decode().strip().splitlines()
    assert process.returncode == 2
    assert "Traceback" not in err.decode()
    assert lines[-1].startswith("bridge: kafka.transactions is on but the broker at ")
    assert (
        "grants no transactional producer" in lines[-1]
        and "set kafka.transactions to auto or off" in lines[-1]
    )


async def test_auto_without_transactions_says_at_least_once_in_one_line(
    without_transactions: Stack, tmp_path: Path
) -> None:
    process = await start_process(without_transactions, tmp_path, kafka={"transactions": "auto"})
    try:
        assert process.stderr is not None
        line = await asyncio.wait_for(_line_with(process.stderr, b"delivery: "), 60)
    finally:
        await stop(process, signal.SIGTERM)
    assert b"at-least-once, the broker grants no transactional producer" in line


async def _line_with(stream: asyncio.StreamReader, needle: bytes) -> bytes:
    async for line in stream:
        if needle in line:
            return line
    raise AssertionError(f"no line with {needle!r}")
