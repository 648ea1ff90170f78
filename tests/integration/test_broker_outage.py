"""A broker outage on the real broker (issue 25.5): the broker paused (SIGSTOP) or its connections
refused (a cut proxy in front of it) for 8 s while commands flow. Readiness turns NOT ready within
a second or two of the outage and ready again within a second or two of its end; the logs say it in
one line when it starts and one when it ends (with how many repeated client lines were held back),
not in hundreds of lines a second; nothing is lost and nothing is answered twice."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable

import pytest

from bridge.app import Bridge
from tests.integration.conftest import Stack, workfloo_command
from tests.integration.proxy import CuttableProxy
from tests.integration.test_broker_faults import proxied  # noqa: F401 - the fixture

pytestmark = pytest.mark.integration
OUTAGE_S = 8.0
FOLLOW_S = 3.0  # readiness follows the broker within this, both ways (probe each 1 s, timeout 1.5 s)


async def until(condition: Callable[[], bool], within_s: float) -> float:
    """Seconds until ``condition()`` holds (fails after ``within_s``)."""
    began = time.monotonic()
    while not condition():
        assert time.monotonic() - began < within_s, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic() - began


async def one_outage(
    stack: Stack,
    caplog: pytest.LogCaptureFixture,
    begin: Callable[[], Awaitable[None]],
    end: Callable[[], Awaitable[None]],
) -> tuple[float, float, list[logging.LogRecord]]:
    bridge: Bridge = await stack.start_bridge()
    run = uuid.uuid4().hex[:6]
    first = [(f"k{n}".encode(), workfloo_command(f"{run}-a-{n}")) for n in range(20)]
    await stack.send(*first)
    assert len(await stack.collect(len(first), within_s=60)) == len(first)
    await until(lambda: bridge.readiness().ready, 20)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        await begin()
        down = await until(lambda: not bridge.readiness().ready, 30)
        await asyncio.sleep(OUTAGE_S - down)
        await end()
        up = await until(lambda: bridge.readiness().ready, 30)
        await asyncio.sleep(1.0)
        records = list(caplog.records)
    later = [(f"k{n}".encode(), workfloo_command(f"{run}-b-{n}")) for n in range(20)]
    await stack.send(*later)
    events = await stack.collect(len(later), within_s=60)
    events += await stack.collect(1, within_s=2)
    ids = [e["data"]["command_id"] for e in events]
    assert sorted(ids) == sorted(doc["id"] for _, doc in later)  # none lost, none twice
    return down, up, records


def report(mode: str, down: float, up: float, records: list[logging.LogRecord]) -> None:
    loud = [r for r in records if r.levelno >= logging.WARNING]
    print(
        f"\nbroker {mode} for {OUTAGE_S:.0f}s: NOT ready after {down:.1f}s, ready {up:.1f}s after it "
        f"ended; {len(records)} log line(s), {len(loud)} at warning or above"
    )
    started = [r for r in records if r.getMessage().startswith("Kafka broker outage: ")]
    over = [r for r in records if r.getMessage().startswith("Kafka broker outage over")]
    assert len(started) == 1 and len(over) == 1, [r.getMessage() for r in records]
    assert down < FOLLOW_S and up < FOLLOW_S
    assert len(loud) < 40, [f"{r.name}: {r.getMessage()}" for r in loud]  # was about 180 a second
    kinds = Counter((r.name, str(r.msg)) for r in records if r.name.startswith("aiokafka"))
    assert all(n == 1 for n in kinds.values()), kinds  # each kind of client message once a minute


@pytest.mark.timeout(180)
async def test_a_broker_whose_connections_are_refused_is_one_line_each_way_and_readiness_follows(
    proxied: tuple[Stack, CuttableProxy],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    stack, proxy = proxied
    down, up, records = await one_outage(stack, caplog, proxy.cut, proxy.restore)
    report("refusing connections", down, up, records)
    over = next(r for r in records if r.getMessage().startswith("Kafka broker outage over"))
    assert "repeated log line(s) held back" in over.getMessage()  # the client's repeats, counted


@pytest.mark.timeout(180)
async def test_a_paused_broker_is_one_line_each_way_and_readiness_follows(
    proxied: tuple[Stack, CuttableProxy],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    stack, _ = proxied
    pid = stack.broker.process.pid

    async def pause() -> None:
        os.kill(pid, signal.SIGSTOP)

    async def resume() -> None:
        os.kill(pid, signal.SIGCONT)

    try:
        down, up, records = await one_outage(stack, caplog, pause, resume)
    finally:
        os.kill(pid, signal.SIGCONT)
    report("paused (SIGSTOP)", down, up, records)
