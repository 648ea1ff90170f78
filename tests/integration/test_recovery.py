"""Parked work comes back when its target does (issue 25.1), on the real broker and the sandbox over
real HTTP: a target down (answering 503, or refusing connections), its commands parked with a
``parking.retry_s`` of 60 s and the default circuit (``open_s`` 30 s; parked work probes it every
``parking.probe_s``, 5 s); once it heals, every parked command is answered within 10 s, in key
order, each once, long before the timer would have brought them back."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from bridge.local.broker import free_port
from bridge.sandbox import workfloo as workfloo_sandbox
from tests.integration.conftest import Stack, workfloo_command
from tests.integration.proxy import CuttableProxy
from tests.integration.test_observability import get
from tests.integration.test_parking import in_key_order, parked_until

pytestmark = pytest.mark.integration

A = workfloo_sandbox.LOCAL_TARGET
KEYS, PER_KEY = 8, 5
RECOVERY_S = 10.0
TARGET = {
    "retry": {"max_attempts": 2, "budget_s": 1, "base_backoff_s": 0.05, "max_backoff_s": 0.1},
    "circuit": {"failure_threshold": 3},  # open_s 30 s, parking.probe_s 5 s: the defaults
    "timeouts": {"connect_s": 1, "total_s": 2},
    "parking": {"retry_s": 60, "max_delay_s": 600},  # the timer alone: a minute after the heal
    "tracking": {"enabled": False},
}


async def heal_and_time(stack: Stack, heal: Any, sent: list[tuple[bytes, dict[str, Any]]]) -> float:
    """Heal the target, then the seconds until the last command of ``sent`` is answered."""
    wanted = {doc["id"] for _, doc in sent}
    events = await stack.collect(len(sent), within_s=1)  # answered during the outage (the first few)
    await heal()
    healed = time.monotonic()
    last = healed
    while not wanted <= {e["data"]["command_id"] for e in events}:
        assert time.monotonic() - healed < 90, "parked commands were not answered after the heal"
        more = await stack.collect(len(sent), within_s=0.5)
        if more:
            last = time.monotonic()
            events += more
    events += await stack.collect(1, within_s=2)  # and nothing more
    ids = [e["data"]["command_id"] for e in events]
    assert sorted(ids) == sorted(wanted), "a command was lost or answered twice"
    assert in_key_order(events)
    assert sum(e["data"]["status"] == "queued" for e in events) >= len(sent) - 3  # ran after the heal
    return last - healed


def commands() -> list[tuple[bytes, dict[str, Any]]]:
    run = uuid.uuid4().hex[:6]
    return [
        (f"k{k}".encode(), workfloo_command(f"{run}-{k}-{n}")) for n in range(PER_KEY) for k in range(KEYS)
    ]


@pytest.mark.timeout(180)
async def test_commands_parked_while_the_target_answers_503_come_back_within_seconds_of_its_heal(
    stack: Stack,
) -> None:
    stack.configure(targets={A: TARGET})
    await stack.fault("workfloo", {"fail_next": {"count": 100_000, "status": 503}})
    bridge = await stack.start_bridge()
    sent = commands()
    await stack.send(*sent)
    assert len(await parked_until(stack, KEYS)) >= KEYS
    await asyncio.sleep(3)  # the circuit opened, its probes from the parked work failed meanwhile
    assert bridge.health_port is not None
    status, body = await get(bridge.health_port, "/readyz")  # what the kubelet and an SRE see (21.7)
    assert status == 200 and "parked" in body and "answered at once" not in body, body

    async def heal() -> None:
        await stack.fault("workfloo", {})

    took = await heal_and_time(stack, heal, sent)
    print(f"\nrecovery (503): the last parked command answered {took:.1f} s after the heal")
    assert took < RECOVERY_S
    sample = bridge.metrics.registry.get_sample_value
    whys = {
        w: sample("bridge_parked_returns_total", {"target": A, "why": w})
        for w in ("due", "probe", "recovered")
    }
    print(f"how parked commands came back: {whys}")
    early = sum(
        sample("bridge_parked_returns_total", {"target": A, "why": w}) or 0 for w in ("probe", "recovered")
    )
    assert early >= KEYS


@pytest.mark.timeout(180)
async def test_commands_parked_while_the_target_refuses_connections_come_back_within_seconds(
    stack: Stack,
) -> None:
    proxy = CuttableProxy(free_port(), int(stack.sandbox.url.rsplit(":", 1)[1]))
    await proxy.restore()
    try:
        url = f"http://127.0.0.1:{proxy.listen_port}/workfloo-sandbox"
        stack.configure(targets={A: {**TARGET, "base_url": url}})
        await proxy.cut()
        await stack.start_bridge()
        sent = commands()
        await stack.send(*sent)
        assert len(await parked_until(stack, KEYS)) >= KEYS
        await asyncio.sleep(3)
        took = await heal_and_time(stack, proxy.restore, sent)
    finally:
        await proxy.close()
    print(f"\nrecovery (refused): the last parked command answered {took:.1f} s after the heal")
    assert took < RECOVERY_S
