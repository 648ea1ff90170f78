"""Order-keeping parking (issue 12) on the real broker and the sandbox: while a target's circuit is
open its commands (and every later command of their keys) wait in the parking topic instead of in
memory; after recovery they come back in key order, each with exactly one outcome, also across a
kill -9 of the bridge that parked them."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.errors import ConfigError
from bridge.local.broker import create_topics
from bridge.parking.records import read_parked
from bridge.sandbox import workfloo as workfloo_sandbox
from tests.integration.conftest import Stack, parked_records, start_process, workfloo_command

pytestmark = pytest.mark.integration

A = workfloo_sandbox.LOCAL_TARGET
KEYS, PER_KEY = 10, 6
PARKING = {
    "retry": {"max_attempts": 2, "budget_s": 1, "base_backoff_s": 0.05, "max_backoff_s": 0.1},
    "circuit": {"failure_threshold": 3, "open_s": 2},
    "parking": {"retry_s": 1, "max_delay_s": 120},
}
DOWN = {"fail_next": {"count": 100_000, "status": 503}}


def commands(run: str) -> list[tuple[bytes, dict[str, Any]]]:
    return [
        (f"k{k}".encode(), workfloo_command(f"{run}-{k}-{n}")) for n in range(PER_KEY) for k in range(KEYS)
    ]


def in_key_order(events: list[dict[str, Any]]) -> bool:
    seen: dict[str, list[int]] = {}
    for e in events:
        _, key, seq = e["data"]["command_id"].rsplit("-", 2)
        seen.setdefault(key, []).append(int(seq))
    return all(seqs == sorted(seqs) for seqs in seen.values())


async def parked_until(stack: Stack, count: int, tries: int = 20) -> list[Any]:
    """The parking topic's records, once it holds ``count`` of them (or after ``tries`` reads)."""
    for _ in range(tries):
        found = await parked_records(stack)  # each read takes about 3 s
        if len(found) >= count:
            break
    return found


async def collect_ids(
    stack: Stack, wanted: set[str], within_s: float, seen: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """``seen`` and what arrives until every wanted id has an outcome, then anything straggling."""
    events = list(seen)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not wanted <= {e["data"]["command_id"] for e in events} and loop.time() < deadline:
        events += await stack.collect(len(wanted), within_s=1)
    return events + await stack.collect(1, within_s=2)  # and nothing more


@pytest.mark.timeout(240)
@pytest.mark.parametrize("ledger", [True, False], ids=["ledger", "no-ledger"])
async def test_parked_commands_come_back_in_key_order_after_recovery(stack: Stack, ledger: bool) -> None:
    stack.configure(targets={A: PARKING}, ledger={"enabled": ledger})  # parking is on by default
    await stack.fault("workfloo", DOWN)
    await stack.start_bridge()
    sent = commands(uuid.uuid4().hex[:6])
    await stack.send(*sent)
    parked = await parked_until(stack, KEYS)
    assert len(parked) >= KEYS, "the keys' commands were not parked while the circuit was open"
    reasons = {read_parked(r.headers).reason for r in parked}  # type: ignore[union-attr]
    assert reasons <= {"circuit_open", "key_parked"}, reasons
    # a command's retries that the opening circuit cut short are parked too: only one that used up its
    # attempts before the circuit opened is answered during the outage, and with an error
    early = await stack.collect(len(sent), within_s=1)
    assert all(e["data"]["status"] == "error" for e in early)

    await stack.fault("workfloo", {})
    events = await collect_ids(stack, {doc["id"] for _, doc in sent}, 150, early)
    ids = [e["data"]["command_id"] for e in events]
    assert sorted(ids) == sorted(doc["id"] for _, doc in sent)  # exactly one outcome each
    assert in_key_order(events)
    late = [e["data"] for e in events if e["data"]["status"] != "error"]
    print(f"\nparking: {len(parked)} parked record(s); {len(late)} of {len(sent)} queued after recovery")
    assert len(late) == len(sent) - len(early)  # every parked command ran after recovery
    assert len(early) <= 3  # the failures that opened the circuit (threshold 3), if they used their attempts
    sample = stack.bridges[0][0].metrics.registry.get_sample_value
    topic = {"topic": stack.settings.topics.run_commands}
    assert sample("bridge_commands_consumed_total", topic) == len(sent)  # a replay is not consumed again
    assert sample("bridge_replayed_total", topic) >= len({(r.partition, r.offset) for r in parked})


@pytest.mark.timeout(300)
async def test_kill_9_while_parked_loses_nothing_and_keeps_key_order(stack: Stack, tmp_path: Path) -> None:
    await stack.fault("workfloo", DOWN)
    run = uuid.uuid4().hex[:6]
    sent = commands(run)
    await stack.send(*sent)
    process = await start_process(
        stack, tmp_path, targets={A: PARKING}, observability={"log_level": "WARNING"}
    )
    assert len(await parked_until(stack, KEYS)) >= KEYS
    early = await stack.collect(len(sent), within_s=1)
    process.kill()  # SIGKILL while commands are parked
    await process.communicate()
    parked = len(await parked_records(stack))

    # later commands of the parked keys arrive while the target is still down: they must wait behind
    # the parked ones, which only the parked set restored from the parking topic knows about
    later = [(f"k{k}".encode(), workfloo_command(f"{run}-{k}-{n}")) for n in (PER_KEY,) for k in range(KEYS)]
    await stack.send(*later)
    stack.configure(targets={A: PARKING})
    await stack.start_bridge()
    await asyncio.sleep(3)
    await stack.fault("workfloo", {})
    events = await collect_ids(stack, {doc["id"] for _, doc in sent + later}, 200, early)
    ids = [e["data"]["command_id"] for e in events]
    print(f"\nkill -9 while parked: {parked} parked record(s) at the kill, {len(ids)} outcome(s)")
    assert set(ids) == {doc["id"] for _, doc in sent + later}  # nothing lost
    assert len(ids) == len(set(ids)), "a command was answered twice"
    assert in_key_order(events)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("ledger", [True, False], ids=["ledger", "no-ledger"])
async def test_a_rebalance_while_parked_commands_come_back_answers_each_once_in_key_order(
    stack: Stack, ledger: bool
) -> None:
    """With the ledger off too (issue 25.4): a graceful rebalance replays no parked command twice."""
    stack.configure(targets={A: PARKING}, ledger={"enabled": ledger})
    await stack.fault("workfloo", DOWN)
    first = await stack.start_bridge()
    run = uuid.uuid4().hex[:6]
    sent = commands(run)
    await stack.send(*sent)
    assert len(await parked_until(stack, KEYS)) >= KEYS
    early = await stack.collect(len(sent), within_s=1)
    await stack.fault("workfloo", {"latency_ms": 1500})  # back, slowly: its parked commands take a while
    while not any(e["data"]["status"] == "queued" for e in early):  # the first member brings them back
        more = await stack.collect(1, within_s=60)
        assert more, "no parked command came back"
        early += more
    await stack.start_bridge()  # a second member: the group takes partitions away mid-replay
    events = await collect_ids(stack, {doc["id"] for _, doc in sent}, 180, early)
    ids = [e["data"]["command_id"] for e in events]
    drained = first.engine.stats.drained if first.engine is not None else 0
    print(f"\nrebalance while parked work comes back: {len(ids)} outcome(s), {drained} routine(s) drained")
    assert sorted(ids) == sorted(doc["id"] for _, doc in sent)  # exactly one outcome each
    assert in_key_order(events)
    assert drained > 0  # the revocation found work of the first member to drain


@pytest.mark.timeout(240)
async def test_a_command_parked_for_an_hour_holds_up_only_the_later_commands_of_its_key(stack: Stack) -> None:
    far = {
        "retry": {**PARKING["retry"], "max_retry_after_s": 3600},
        "parking": {"retry_s": 1, "max_delay_s": 7200},
    }
    stack.configure(targets={A: {**PARKING, **far}})
    await stack.fault("workfloo", {"rate_limit_next": {"count": 1, "retry_after": "3600"}})
    await stack.start_bridge()
    run = uuid.uuid4().hex[:6]
    slow = (b"slow", workfloo_command(f"{run}-slow-0"))
    await stack.send(slow)
    first = await parked_until(stack, 1)
    at = read_parked(first[0].headers)
    assert at is not None and at.reason == "retry_after"
    assert at.due_ms / 1000 - time.time() > 3000  # our setup: it is really due in about an hour

    await stack.fault("workfloo", DOWN)  # the circuit opens: other keys' commands park, due in 1 s
    others = commands(run)
    behind = (b"slow", workfloo_command(f"{run}-slow-1"))  # parks behind the first (key_parked)
    await stack.send(*others, behind)
    parked = await parked_until(stack, KEYS + 2)
    later = [r for r in parked if r.partition == first[0].partition and r.offset > first[0].offset]
    assert any(r.key != b"slow" for r in later), "no other key parked behind it on its parking partition"
    await stack.fault("workfloo", {})
    events = await collect_ids(stack, {doc["id"] for _, doc in others}, 150, [])
    ids = [e["data"]["command_id"] for e in events]
    print(f"\nparked for an hour: {len(parked)} parked record(s); {len(ids)} outcome(s) meanwhile")
    assert sorted(ids) == sorted(doc["id"] for _, doc in others)  # each once; neither of key slow
    assert in_key_order(events)
    assert sum(e["data"]["status"] == "queued" for e in events) >= len(others) - 3  # came back and ran


async def test_a_parking_topic_missing_or_not_co_partitioned_is_a_start_up_error(stack: Stack) -> None:
    prefix = stack.settings.topics.parked
    settings = stack.configure(topics={"parked": f"{prefix}-one-partition"})
    await create_topics(stack.broker.bootstrap, {settings.topics.parked: 1})
    with pytest.raises(ConfigError, match=r"parking topic '.*' has 1 partition\(s\) but command topic"):
        await asyncio.wait_for(Bridge(settings).run(), 30)
    missing = stack.configure(topics={"parked": f"{prefix}-missing"})
    with pytest.raises(ConfigError, match="does not exist: create it with `bridge topics apply`"):
        await asyncio.wait_for(Bridge(missing).run(), 30)
