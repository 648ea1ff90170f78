"""Broker outages, through a cuttable TCP proxy in front of a broker of the test's own."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bridge.app import Bridge
from bridge.local.abilities import detect_abilities
from bridge.local.broker import RunningBroker, free_port
from bridge.local.stack import local_settings
from tests.integration.conftest import Stack, StartBroker, create_spec_topics, workfloo_command
from tests.integration.proxy import CuttableProxy
from tests.integration.test_ledger import ledger_entries

pytestmark = pytest.mark.integration


@pytest.fixture
async def proxied(sandbox: Any, start_test_broker: StartBroker) -> AsyncIterator[tuple[Stack, CuttableProxy]]:
    proxy_port = free_port()
    broker = await start_test_broker(advertised_port=proxy_port)
    proxy = CuttableProxy(proxy_port, broker.port)
    await proxy.restore()
    view = RunningBroker(broker.process, proxy_port)  # every client, the tests' too, goes through the proxy
    abilities = await detect_abilities(view.bootstrap)
    settings = local_settings(
        view.bootstrap,
        sandbox.url,
        overrides={
            "kafka": {
                "group_id": f"g{uuid.uuid4().hex[:6]}",
                "request_timeout_ms": 5000,
                "enable_idempotence": abilities.idempotent_producer,
            },
            "engine": {"publish_retry_backoff_s": 0.2},
        },
    )
    await create_spec_topics(view.bootstrap, settings.topics)
    stack = Stack(view, sandbox, settings)
    try:
        yield stack, proxy
    finally:
        await proxy.restore()  # a test that failed mid-outage still shuts its bridge down cleanly
        await stack.close()
        await proxy.close()
        await broker.stop()


def command(name: str) -> tuple[bytes, dict[str, Any]]:
    return (name.encode(), workfloo_command(f"{name}-{uuid.uuid4().hex[:6]}"))


async def wait_for(predicate: Any, within_s: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not predicate():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


def metric(bridge: Bridge, name: str, **labels: str) -> float:
    return bridge.metrics.registry.get_sample_value(name, labels or None) or 0.0


async def test_broker_unreachable_at_start_then_recovers(proxied: tuple[Stack, CuttableProxy]) -> None:
    stack, proxy = proxied
    await proxy.cut()
    bridge = await stack.start_bridge()
    await asyncio.sleep(2.0)  # it keeps retrying with backoff meanwhile
    readiness = bridge.readiness()
    assert not readiness.ready and "broker" in readiness.reason
    await proxy.restore()
    key, doc = command("late-start")
    await stack.send((key, doc))
    [event] = await stack.collect(1, within_s=60)
    assert event["data"]["command_id"] == doc["id"] and event["data"]["status"] == "queued"
    await wait_for(lambda: bridge.readiness().ready, 20, "readiness after recovery")

    await proxy.cut()  # an outage with no traffic at all: the broker probe notices it
    await wait_for(
        lambda: "not connected" in bridge.readiness().reason, 30, "not-ready during an idle outage"
    )
    await proxy.restore()
    await wait_for(lambda: bridge.readiness().ready, 30, "readiness after the second recovery")


async def test_outage_mid_run_retries_the_publish_and_commits_only_after(
    proxied: tuple[Stack, CuttableProxy],
) -> None:
    stack, proxy = proxied
    await stack.fault("workfloo", {"latency_ms": 3000})
    bridge = await stack.start_bridge()
    key, doc = command("mid-run")
    await stack.send((key, doc))
    await wait_for(lambda: bridge.engine is not None and bridge.engine.stats.accepted == 1, 60, "the command")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while not any(e.command_id == doc["id"] for e in await ledger_entries(stack)):  # dispatched: called now
        assert loop.time() < deadline, "the ledger never recorded the dispatch"
    # a reader can see the dispatch entry before its producer has the acknowledgement (on Kafka the
    # answer to an acks=all produce can trail the fetch that shows the record): the call starts only
    # on that acknowledgement, and a cut in between would leave no call in flight
    await asyncio.sleep(0.5)  # well inside the provider's 3 s answer
    await proxy.cut()  # the provider call is in flight; its outcome cannot be published now
    assert bridge.engine is not None
    done: list[dict[str, Any]] = []

    async def provider_answered() -> None:
        while not done:
            done.extend(r for r in await stack.requests("workfloo") if r["status"] == 200)
            await asyncio.sleep(0.1)

    await asyncio.wait_for(provider_answered(), 30)
    # past the producer's request timeout the publish fails, is retried, and readiness says so
    await wait_for(lambda: not bridge.readiness().ready, 30, "not-ready while the broker is gone")
    assert any(why in bridge.readiness().reason for why in ("cannot publish", "not connected"))
    assert all(offset is None for offset in bridge.engine.committed_offsets().values())
    assert bridge.engine.stats.finished == 0
    await proxy.restore()
    events = await stack.collect(1, within_s=60)
    assert [e["data"]["command_id"] for e in events] == [doc["id"]]
    assert await stack.collect(1, within_s=3) == []  # published once, not once per failed attempt
    await wait_for(lambda: any(bridge.engine.committed_offsets().values()), 30, "the commit")  # type: ignore[union-attr]
