"""One target's outage never slows another (issue 12), on the real broker and the sandbox over HTTP.

Target A (workfloo) fails in one of three ways while target B (Zuora) is healthy; A gets many commands
per key. Parking is on (the default). Printed (``-s``): B's throughput during the outage as a ratio
of its throughput under the same load with A healthy, in the same run, and B's p99 send-to-outcome
latency in both phases. Asserted, never timings: fetching never paused, B's commands all succeeded
while A was down, A's commands answered during the outage ended within their bound (retry budget +
one call's timeout) and the rest were parked; after A recovers every parked command succeeds, every
command has exactly one outcome and per-key order holds for both targets.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from bridge.local.broker import free_port
from bridge.parking.records import read_parked
from bridge.sandbox import workfloo as workfloo_sandbox
from bridge.sandbox import zuora as zuora_sandbox
from tests.integration.conftest import Stack, parked_records, workfloo_command, zuora_command
from tests.integration.proxy import CuttableProxy

pytestmark = pytest.mark.integration

A, B = workfloo_sandbox.LOCAL_TARGET, zuora_sandbox.LOCAL_TARGET
A_KEYS, A_PER_KEY, B_KEYS, B_PER_KEY = 30, 10, 20, 15
BUDGET_S, TOTAL_S = 4.0, 3.0
BOUND_MS = (BUDGET_S + TOTAL_S + 1.0) * 1000  # a call may start just before the budget ends
A_TARGET = {
    "retry": {"max_attempts": 5, "budget_s": BUDGET_S, "max_retry_after_s": 60},
    "timeouts": {"connect_s": 1, "total_s": TOTAL_S},
    "circuit": {
        "failure_threshold": 5,
        "open_s": 2,
        "slow_call_s": 1.5,
        "silent_s": 1.5,
        "max_unanswered": 10,
    },
    "bulkhead": {"max_in_flight": 100, "max_calls": 16},
    "parking": {"retry_s": 1},  # parked work comes back soon after recovery
}
FAULTS = {
    "retry_after": {"fail_next": {"count": 100_000, "status": 503, "retry_after": "30"}},
    "hang": {"timeout_next": {"count": 100_000, "delay_s": 3600}},
}


@pytest.fixture
async def proxy(stack: Stack) -> AsyncIterator[CuttableProxy]:
    """A's way to the sandbox, so that the 'refused' mode can cut it and restore it."""
    running = CuttableProxy(free_port(), int(stack.sandbox.url.rsplit(":", 1)[1]))
    await running.restore()
    yield running
    await running.close()


def b_commands(run: str) -> list[tuple[bytes, dict[str, Any]]]:
    return [
        (f"b{k}".encode(), zuora_command(f"{run}-b-{k}-{n}")) for n in range(B_PER_KEY) for k in range(B_KEYS)
    ]


def a_commands(run: str) -> list[tuple[bytes, dict[str, Any]]]:
    return [
        (f"a{k}".encode(), workfloo_command(f"{run}-a-{k}-{n}"))
        for n in range(A_PER_KEY)
        for k in range(A_KEYS)
    ]


def mixed(run: str) -> list[tuple[bytes, dict[str, Any]]]:
    """A's and B's commands interleaved."""
    return [c for pair in zip(a_commands(run), b_commands(run), strict=True) for c in pair]


async def send_all(stack: Stack, commands: list[tuple[bytes, dict[str, Any]]]) -> float:
    """Produce without waiting for each acknowledgement (a burst); returns when the burst began."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.broker.bootstrap, linger_ms=5)
    await producer.start()
    began = time.monotonic()
    try:
        futures = [
            await producer.send(stack.settings.topics.run_commands, orjson.dumps(doc), key=key)
            for key, doc in commands
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()
    return began


async def collect_timed(
    stack: Stack, count: int, within_s: float, wanted: set[str] | None = None
) -> list[tuple[float, dict[str, Any]]]:
    """Outcomes with their arrival times: ``count`` of them, or until every ``wanted`` id has one."""
    found: list[tuple[float, dict[str, Any]]] = []
    missing = set(wanted) if wanted is not None else set()
    deadline = time.monotonic() + within_s
    while (missing if wanted is not None else len(found) < count) and time.monotonic() < deadline:
        for event in await stack.collect(count - len(found), within_s=0.05):
            found.append((time.monotonic(), event["data"]))
            missing.discard(event["data"]["command_id"])
    return found


def b_figures(began: float, timed: list[tuple[float, dict[str, Any]]]) -> tuple[float, float]:
    """B's commands/s over its burst and its p99 send-to-outcome latency (s)."""
    arrivals = [t for t, data in timed if data["target"] == B]
    latencies = sorted(t - began for t in arrivals)
    return len(arrivals) / (max(arrivals) - began), statistics.quantiles(latencies, n=100)[98]


def assert_key_order(timed: list[tuple[float, dict[str, Any]]]) -> None:
    seen: dict[str, list[int]] = {}
    for _, data in timed:
        _, target, key, seq = data["command_id"].rsplit("-", 3)
        seen.setdefault(target + key, []).append(int(seq))
    broken = {key: seqs for key, seqs in seen.items() if seqs != sorted(seqs)}
    assert broken == {}, f"outcomes out of key order: {broken}"


async def watch_pauses(stack: Stack, stop: asyncio.Event) -> bool:
    bridge = stack.bridges[0][0]
    paused = False
    while not stop.is_set():
        paused = paused or (bridge.engine is not None and bridge.engine.paused)
        await asyncio.sleep(0.005)
    return paused


async def warm(stack: Stack) -> None:
    await stack.send((b"warm", zuora_command(f"warm-{uuid.uuid4().hex[:6]}")))
    await stack.send((b"warm", workfloo_command(f"warm-{uuid.uuid4().hex[:6]}")))
    assert len(await stack.collect(2, within_s=30)) == 2


async def start_outage(stack: Stack, proxy: CuttableProxy, mode: str) -> None:
    if mode == "refused":
        await proxy.cut()
    else:
        await stack.fault("workfloo", FAULTS[mode])


async def end_outage(stack: Stack, proxy: CuttableProxy) -> None:
    await proxy.restore()
    await stack.fault("workfloo", {})


@pytest.mark.parametrize("mode", ["retry_after", "hang", "refused"])
async def test_one_target_down_never_slows_the_other(stack: Stack, proxy: CuttableProxy, mode: str) -> None:
    a_url = f"http://127.0.0.1:{proxy.listen_port}/workfloo-sandbox"
    stack.configure(targets={A: {**A_TARGET, "base_url": a_url}})
    await stack.start_bridge()
    await warm(stack)
    run = uuid.uuid4().hex[:6]

    healthy = await send_all(stack, mixed(f"{run}x"))  # the same load with A healthy: the baseline
    baseline = await collect_timed(stack, (A_KEYS * A_PER_KEY) + B_KEYS * B_PER_KEY, within_s=60)

    await start_outage(stack, proxy, mode)
    stop = asyncio.Event()
    watcher = asyncio.create_task(watch_pauses(stack, stop))
    outage = mixed(run)
    outage_began = await send_all(stack, outage)
    b_ids = {doc["id"] for _, doc in outage if doc["target"] == B}
    timed = await collect_timed(stack, len(outage), within_s=120, wanted=b_ids)
    stop.set()
    paused = await watcher
    parked = {orjson.loads(r.value)["id"]: read_parked(r.headers) for r in await parked_records(stack)}

    assert all(d["status"] == "queued" for _, d in baseline)
    rate0, p99_0 = b_figures(healthy, baseline)
    rate1, p99_1 = b_figures(outage_began, timed)
    during = [data for _, data in timed if data["target"] == A]
    print(
        f"\n[{mode}] B with A healthy: {rate0:.0f} commands/s, p99 {p99_0:.2f}s; "
        f"with A down: {rate1:.0f} commands/s (ratio {rate1 / rate0:.2f}), "
        f"p99 {p99_1:.2f}s ({p99_1 / p99_0:.2f} x); A: {len(during)} answered, {len(parked)} parked"
    )
    assert not paused  # fetching never stopped for B's sake (nor anyone's)
    assert all(d["status"] == "queued" for _, d in timed if d["target"] == B)
    assert all(d["status"] == "error" and d["error"]["retryable"] for d in during)
    assert all(d["duration_ms"] <= BOUND_MS for d in during)
    assert parked and not parked.keys() & {d["command_id"] for d in during}  # parked: not answered
    assert not [i for i in parked if i.startswith(f"{run}x-")]  # healthy A (the baseline) was never parked
    reasons = {at.reason for at in parked.values() if at is not None}
    assert reasons <= {"circuit_open", "key_parked", "bulkhead_full", "retry_after"}, reasons
    if mode == "retry_after":  # 30 s is beyond the budget: parked after its call, not answered
        assert "retry_after" in reasons

    await end_outage(stack, proxy)
    rest = {doc["id"] for _, doc in outage} - {d["command_id"] for _, d in timed}
    timed += await collect_timed(stack, len(rest), within_s=120, wanted=rest)
    ids = [data["command_id"] for _, data in timed]
    assert sorted(ids) == sorted(doc["id"] for _, doc in outage)  # exactly one outcome each
    assert_key_order(timed)
    after = {d["command_id"]: d for _, d in timed if d["command_id"] in parked}
    assert {d["status"] for d in after.values()} == {"queued"}  # every parked command ran after recovery
    assert await stack.collect(1, within_s=1.0) == []  # and nothing answered twice
