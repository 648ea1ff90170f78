"""The command ledger on the real broker, with the sandbox over real HTTP: a command id runs once."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bridge.app import Bridge
from bridge.errors import ConfigError
from bridge.ledger.entries import (
    CommandEntry,
    DoneFields,
    EntryState,
    decode,
    encode_dispatched,
    encode_done,
    fingerprint,
)
from bridge.local.broker import create_topics
from bridge.messages.commands import Command, CommandFamily
from bridge.messages.parsing import Parsed
from bridge.providers.parsing import parse_command
from bridge.sandbox import eightbyeight as eightbyeight_sandbox
from bridge.sandbox import workfloo as workfloo_sandbox
from bridge.sandbox.eightbyeight import EIGHTBYEIGHT_RUNNABLE, EIGHTBYEIGHT_SUSPENDED
from tests.integration.conftest import (
    Stack,
    by_command,
    eight_command,
    workfloo_command,
    zilliant_command,
    zuora_command,
)
from tests.integration.test_process import start_process

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def as_command(doc: dict[str, Any], family: CommandFamily = CommandFamily.RUN) -> Command:
    parsed = parse_command(orjson.dumps(doc), family, 1_000_000)
    assert isinstance(parsed, Parsed), parsed
    return parsed.command


async def produce(
    stack: Stack, records: list[tuple[str, int | None, bytes | None, bytes, list[Any]]]
) -> None:
    """(topic, partition, key, value, headers) records, acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.broker.bootstrap, linger_ms=5)
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, partition=partition, headers=headers)
            for topic, partition, key, value, headers in records
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def send_to_partition(
    stack: Stack, doc: dict[str, Any], *, topic: str | None = None, headers: list[Any] | None = None
) -> None:
    key = doc["id"].encode()
    await produce(
        stack, [(topic or stack.settings.topics.run_commands, 0, key, orjson.dumps(doc), headers or [])]
    )


async def ledger_entries(stack: Stack) -> list[CommandEntry]:
    """Every committed entry of the ledger topic (read_committed), to each partition's last stable offset
    (a transaction left open by a killed bridge holds the high watermark out of reach until it ends)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=stack.broker.bootstrap, enable_auto_commit=False, isolation_level="read_committed"
    )
    await consumer.start()
    try:
        tps = [TopicPartition(stack.settings.topics.ledger, p) for p in range(4)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        found: list[CommandEntry] = []
        remaining = set(tps)
        while remaining:
            batch = await consumer.getmany(*remaining, timeout_ms=200)
            for records in batch.values():
                found += [e for r in records if (e := decode(r.key, r.value)) is not None]
            for tp in list(remaining):
                hw = consumer.last_stable_offset(tp)
                if hw is None or hw < 0:
                    hw = consumer.highwater(tp)
                if hw is not None and await consumer.position(tp) >= hw:
                    remaining.discard(tp)
        return found
    finally:
        await consumer.stop()


def sample(bridge: Bridge, name: str, **labels: str) -> float:
    return bridge.metrics.registry.get_sample_value(name, labels) or 0.0


async def wait_for(condition: Any, within_s: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():
        assert loop.time() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


async def calls(stack: Stack, provider: str, method: str = "POST") -> list[dict[str, Any]]:
    return [r for r in await stack.requests(provider) if r["method"] == method]


# -- the rules ----------------------------------------------------------------------------------------


async def test_same_command_twice_is_called_once_and_another_payload_is_dead_lettered(stack: Stack) -> None:
    bridge = await stack.start_bridge()
    doc = workfloo_command(uid("twice"))
    await stack.send((b"k", doc), (b"k", doc))
    [outcome] = await stack.collect(1)
    await wait_for(lambda: sample(bridge, "bridge_duplicates_total", reason="done") == 1)
    assert outcome["data"]["status"] == "queued"
    assert await stack.collect(1, within_s=1) == []  # no second outcome

    await stack.send((b"k", {**doc, "form": {"email": "other@example.com"}}))
    [letter] = await stack.collect(1)
    assert dict(letter.headers)["dlq.reason"] == b"id_reused"
    assert len(await calls(stack, "workfloo")) == 1  # the sandbox's request log: one call in all
    assert sample(bridge, "bridge_duplicates_total", reason="id_reused") == 1


async def test_restart_after_the_outcome_but_before_the_commit_neither_calls_nor_answers_again(
    stack: Stack, tmp_path: Path
) -> None:
    doc = workfloo_command(uid("uncommitted"))
    await stack.send((b"k", doc))
    # the at-least-once window: with transactions the outcome, done entry and offset commit together
    kafka = {"transactions": "off"}
    process = await start_process(stack, tmp_path, engine={"commit_interval_s": 3600}, kafka=kafka)
    [outcome] = await stack.collect(1, within_s=60)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not any(
        e.command_id == doc["id"] and e.state is EntryState.DONE for e in await ledger_entries(stack)
    ):
        assert loop.time() < deadline, "no done entry"
    process.kill()  # SIGKILL: the offset was never committed (commit interval of an hour)
    await process.communicate()  # reads the stderr pipe to its end, so its transport closes

    bridge = await stack.start_bridge()  # the command is redelivered
    await wait_for(lambda: sample(bridge, "bridge_duplicates_total", reason="done") == 1, 60)
    assert outcome["data"]["status"] == "queued"
    assert await stack.collect(1, within_s=1) == []
    assert len(await calls(stack, "workfloo")) == 1


async def test_a_failed_command_runs_again_only_when_re_driven(stack: Stack) -> None:
    stack.configure(targets={workfloo_sandbox.LOCAL_TARGET: {"retry": {"max_attempts": 1}}})
    await stack.fault("workfloo", {"error_rate": 1.0, "error_status": 500})
    bridge = await stack.start_bridge()
    doc = workfloo_command(uid("redrive"))
    await stack.send((b"k", doc))
    [failed] = await stack.collect(1)
    assert failed["data"]["status"] == "error"
    await stack.fault("workfloo", {})

    await stack.send((b"k", doc))  # not re-driven: the normal rules, a duplicate
    await wait_for(lambda: sample(bridge, "bridge_duplicates_total", reason="done") == 1)
    await produce(
        stack,
        [(stack.settings.topics.run_commands, None, b"k", orjson.dumps(doc), [("bridge.redrive", b"1")])],
    )
    [again] = await stack.collect(1)
    assert again["data"]["status"] == "queued"
    assert len(await calls(stack, "workfloo")) == 2  # the failed attempt and the re-driven one
    done = [
        e for e in await ledger_entries(stack) if e.command_id == doc["id"] and e.state is EntryState.DONE
    ]
    assert [(e.status, e.attempt) for e in done] == [("error", 1), ("queued", 2)]


# -- dispatched but not done: on_unknown -----------------------------------------------------------------


async def crashed_after_dispatch(stack: Stack, doc: dict[str, Any], family: CommandFamily) -> None:
    """The ledger entry a bridge killed between its dispatched write and its outcome leaves behind."""
    topic = (
        stack.settings.topics.run_commands
        if family is CommandFamily.RUN
        else stack.settings.topics.control_commands
    )
    key, value = encode_dispatched(
        topic, doc["id"], fingerprint(as_command(doc, family)), 0, int(time.time() * 1000)
    )
    await produce(stack, [(stack.settings.topics.ledger, 0, key, value, [])])
    await send_to_partition(stack, doc, topic=topic)


@pytest.mark.parametrize(
    ("provider", "make", "expected"),
    [
        ("zuora", lambda i: zuora_command(i), "queued"),  # retry: Zuora's Idempotency-Key makes it safe
        ("zilliant", zilliant_command, "outcome_unknown"),  # report
        ("workfloo", workfloo_command, "outcome_unknown"),  # report
    ],
)
async def test_on_unknown_defaults_per_provider(
    stack: Stack, provider: str, make: Any, expected: str
) -> None:
    doc = make(uid(f"unknown-{provider}"))
    await crashed_after_dispatch(stack, doc, CommandFamily.RUN)
    bridge = await stack.start_bridge()
    [event] = await stack.collect(1)
    data = event["data"]
    sent = [r for r in await calls(stack, provider) if "token" not in r["path"]]
    if expected == "queued":
        assert data["status"] == "queued" and len(sent) == 1
        assert (
            sample(bridge, "bridge_unknown_outcomes_total", target=doc["target"], resolution="retried") == 1
        )
    else:
        assert (
            data["status"] == "error" and data["error"]["kind"] == expected and not data["error"]["retryable"]
        )
        assert "Check in" in data["error"]["message"] and sent == []
        assert (
            sample(bridge, "bridge_unknown_outcomes_total", target=doc["target"], resolution="reported") == 1
        )
    assert sample(bridge, "bridge_duplicates_total", reason="in_doubt") == 1


async def test_8x8_reads_before_it_writes(stack: Stack) -> None:
    already = eight_command(uid("suspended"), instance_id=EIGHTBYEIGHT_SUSPENDED)
    pending = eight_command(uid("runnable"), instance_id=EIGHTBYEIGHT_RUNNABLE)
    await crashed_after_dispatch(stack, already, CommandFamily.CONTROL)
    await crashed_after_dispatch(stack, pending, CommandFamily.CONTROL)
    bridge = await stack.start_bridge()
    outcomes = by_command(await stack.collect(2))
    assert outcomes[already["id"]]["status"] == "applied"
    assert outcomes[pending["id"]]["status"] == "applied"
    requests = await stack.requests("8x8")
    patched = [r["path"].rsplit("/", 1)[1] for r in requests if r["method"] == "PATCH"]
    read = [r["path"].rsplit("/", 1)[1] for r in requests if r["method"] == "GET"]
    assert sorted(read) == sorted([EIGHTBYEIGHT_SUSPENDED, EIGHTBYEIGHT_RUNNABLE])
    assert patched == [EIGHTBYEIGHT_RUNNABLE]  # the suspended instance needed no PATCH
    target = eightbyeight_sandbox.LOCAL_TARGET
    assert sample(bridge, "bridge_unknown_outcomes_total", target=target, resolution="already_applied") == 1
    assert sample(bridge, "bridge_unknown_outcomes_total", target=target, resolution="not_yet_applied") == 1


# -- restore and retention -------------------------------------------------------------------------------


async def test_restore_of_a_large_partition_and_retention_expiry(stack: Stack) -> None:
    topic, now = stack.settings.topics.run_commands, int(time.time() * 1000)
    remembered, expired = workfloo_command(uid("remembered")), workfloo_command(uid("expired"))
    done = DoneFields("queued", "ref", "event")
    filler = [encode_done(topic, f"old-{i}", i, i, now - DAY_MS, done) for i in range(50_000)]
    stale_at = now - 8 * DAY_MS  # beyond the 7 days of ledger.retention_s: forgotten
    entries = [
        *filler,
        encode_done(topic, remembered["id"], fingerprint(as_command(remembered)), 1, now - DAY_MS, done),
        encode_done(topic, expired["id"], fingerprint(as_command(expired)), 2, stale_at, done),
    ]
    await produce(stack, [(stack.settings.topics.ledger, 0, k, v, []) for k, v in entries])
    await send_to_partition(stack, remembered)
    await send_to_partition(stack, expired)

    bridge = await stack.start_bridge()
    [outcome] = await stack.collect(1)
    assert outcome["data"]["command_id"] == expired["id"]  # forgotten, so it ran
    await wait_for(lambda: sample(bridge, "bridge_duplicates_total", reason="done") == 1)
    assert await stack.collect(1, within_s=1) == []
    # the filler, remembered, and expired's new entry
    assert sample(bridge, "bridge_ledger_entries") == 50_002
    assert sample(bridge, "bridge_ledger_restore_seconds_count") >= 1
    assert len(await calls(stack, "workfloo")) == 1


async def test_ledger_partition_mismatch_is_a_start_up_error(stack: Stack) -> None:
    settings = stack.configure(topics={"ledger": uid("one-partition-ledger")})
    await create_topics(stack.broker.bootstrap, {settings.topics.ledger: 1})
    with pytest.raises(ConfigError, match="has 1 partition\\(s\\) but command topic"):
        await asyncio.wait_for(Bridge(settings).run(), 30)


# -- crashes and rebalances --------------------------------------------------------------------------------


def call_counts(requests: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in requests:
        if r["method"] == "POST":
            command_id = r["body"]["form"]["cmd"]
            counts[command_id] = counts.get(command_id, 0) + 1
    return counts


def stream(prefix: str, count: int, keys: int) -> list[tuple[bytes, dict[str, Any]]]:
    commands = []
    for i in range(count):
        doc = workfloo_command(f"{prefix}-{i}")
        doc["form"] = {"cmd": doc["id"]}  # the sandbox's request log then tells which command called
        commands.append((f"key-{i % keys}".encode(), doc))
    return commands


async def collect_all(stack: Stack, expected: set[str], first: list[Any], within_s: float) -> list[Any]:
    events = list(first)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while {e["data"]["command_id"] for e in events} != expected:
        assert loop.time() < deadline, f"{len(expected - {e['data']['command_id'] for e in events})} missing"
        events += await stack.collect(500, within_s=1)
    return events + await stack.collect(1, within_s=2)  # stragglers


@pytest.mark.timeout(400)
async def test_kill_9_mid_stream_repeats_at_most_the_dispatched_calls(stack: Stack, tmp_path: Path) -> None:
    await stack.fault("workfloo", {"latency_ms": 100})
    commands = stream(uid("kill"), 2000, keys=200)
    await stack.send(*commands)
    # WARNING: the per-outcome info lines would fill the unread stderr pipe and block the process
    process = await start_process(
        stack, tmp_path, engine={"max_in_flight": 200}, observability={"log_level": "WARNING"}
    )
    first = await stack.collect(600, within_s=120)
    process.kill()  # SIGKILL mid-stream
    await process.communicate()  # reads the stderr pipe to its end, so its transport closes
    entries = await ledger_entries(stack)  # nothing writes the ledger now: its state at the kill
    states: dict[str, EntryState] = {}
    for entry in entries:
        states[entry.command_id] = entry.state
    held = {i for i, state in states.items() if state is EntryState.DISPATCHED}
    done = {i for i, state in states.items() if state is EntryState.DONE}

    await stack.fault("workfloo", {})
    await stack.start_bridge()
    events = await collect_all(stack, {doc["id"] for _, doc in commands}, first, 180)
    per_id: dict[str, int] = {}
    for e in events:
        per_id[e["data"]["command_id"]] = per_id.get(e["data"]["command_id"], 0) + 1
    counts = call_counts(await stack.requests("workfloo"))
    beyond_one = sum(n - 1 for n in counts.values() if n > 1)
    print(f"\nkill -9: {len(held)} id(s) dispatched-not-done at the kill, {beyond_one} repeated call(s)")
    assert beyond_one <= len(held)
    assert all(per_id[i] == 1 for i in done), "an id whose done was acknowledged was answered twice"
    assert all(counts.get(doc["id"], 0) <= 1 for _, doc in commands if doc["id"] not in held)


@pytest.mark.timeout(300)
async def test_rebalance_the_new_owner_restores_and_no_id_is_called_twice(stack: Stack) -> None:
    await stack.fault("workfloo", {"latency_ms": 300})
    commands = stream(uid("rebalance"), 300, keys=60)
    # a short grace: the old owner abandons in-flight work, which a bridge without ledger would repeat
    stack.configure(engine={"max_in_flight": 40, "drain_grace_s": 0.05})
    await stack.start_bridge()
    await stack.send(*commands)
    first = await stack.collect(20, within_s=60)
    second = await stack.start_bridge()
    events = await collect_all(stack, {doc["id"] for _, doc in commands}, first, 180)
    counts = call_counts(await stack.requests("workfloo"))
    assert max(counts.values()) == 1, "an id was called twice across the rebalance"
    assert second.engine is not None and second.engine.stats.assigned
    assert sample(second, "bridge_ledger_restore_seconds_count") >= 1  # the newcomer restored first
    unknown = [e for e in events if (e["data"]["error"] or {}).get("kind") == "outcome_unknown"]
    print(f"\nrebalance: {len(unknown)} abandoned command(s) reported as outcome_unknown, none called twice")
