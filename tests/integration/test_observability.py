"""A running bridge's HTTP endpoints: /metrics carries every series the dashboard and alerts query,
/readyz turns not-ready with a reason when the engine stalls, and no label holds command content."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import Stack, workfloo_command
from tests.unit.observability.test_observability_names import METRIC, alert_queries, dashboard_queries

pytestmark = pytest.mark.integration


async def get(port: int, path: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}{path}") as resp:
        return resp.status, await resp.text()


async def test_metrics_scrape_has_everything_the_dashboard_and_alerts_use(stack: Stack) -> None:
    await stack.fault("workfloo", {"fail_next": {"count": 1, "status": 503}})  # so a retry is counted
    bridge = await stack.start_bridge()
    secret_id = f"cmd-{uuid.uuid4().hex}"
    await stack.send(
        (b"a", workfloo_command(secret_id)),
        (b"b", workfloo_command("x-unknown", target="attacker-chosen-target")),
    )
    await stack.send((b"c", b"junk"), topic=stack.settings.topics.run_commands)
    assert len(await stack.collect(3)) == 3
    await asyncio.sleep(0.5)  # one commit interval, so lag and commit series exist
    port = bridge.health_port
    status, body = await get(port, "/metrics")
    assert status == 200
    names = {s.name for f in text_string_to_metric_families(body) for s in f.samples}
    used = {n for q in dashboard_queries() + alert_queries() for n in METRIC.findall(q)}
    assert not used - names, f"queried but not exported by a running bridge: {sorted(used - names)}"
    assert secret_id not in body and "attacker-chosen-target" not in body  # labels are bounded
    assert 'target="unknown"' in body
    assert "process_resident_memory_bytes" in body
    lag_timers = [
        s.value
        for f in text_string_to_metric_families(body)
        for s in f.samples
        if s.name == "bridge_event_loop_lag_seconds_count"
    ]
    assert lag_timers and lag_timers[0] > 0, "the event-loop lag watcher observed nothing"
    assert (await get(port, "/healthz"))[0] == 200
    ready_status, ready_body = await get(port, "/readyz")
    assert ready_status == 200 and '"ready":true' in ready_body.replace(" ", "")


async def test_a_stalled_engine_turns_not_ready_and_says_why(stack: Stack) -> None:
    stack.configure(observability={"stall_after_s": 1.0})
    await stack.fault("workfloo", {"latency_ms": 5000})
    bridge = await stack.start_bridge()
    await stack.send((b"slow", workfloo_command(f"slow-{uuid.uuid4().hex[:6]}")))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while True:
        status, body = await get(bridge.health_port, "/readyz")
        if status == 503 and "stalled" in body:
            break
        assert loop.time() < deadline, f"never turned not-ready: {status} {body}"
        await asyncio.sleep(0.2)
    assert "in flight" in body
    await stack.collect(1, within_s=30)  # the slow call finishes: progress again
    deadline = loop.time() + 10
    while (await get(bridge.health_port, "/readyz"))[0] != 200:
        assert loop.time() < deadline, "did not turn ready again after progress"
        await asyncio.sleep(0.2)
