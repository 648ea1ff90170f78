"""The bridge as a real process: SIGTERM drain, and commands produced by a non-Python client."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path
from typing import Any

import pytest

from bridge.sandbox import workfloo as workfloo_sandbox
from bridge.sandbox.workfloo import WORKFLOO_DEFINITION_WITH_LINKS, WORKFLOO_SCENARIO
from tests.integration.conftest import Stack, by_command, start_process, zuora_command

pytestmark = pytest.mark.integration


def zuora_run(i: int, prefix: str) -> tuple[bytes, dict[str, Any]]:
    return (f"{prefix}-{i}".encode(), zuora_command(f"{prefix}-{i}"))


async def test_sigterm_finishes_in_flight_work_commits_and_exits_zero(stack: Stack, tmp_path: Path) -> None:
    await stack.fault("zuora", {"latency_ms": 1500})
    prefix = f"drain-{uuid.uuid4().hex[:6]}"
    await stack.send(*[zuora_run(i, prefix) for i in range(5)])
    process = await start_process(stack, tmp_path, engine={"drain_grace_s": 10})
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30
    while len([r for r in await stack.requests("zuora") if "/run" in r["path"]]) < 5:
        assert loop.time() < deadline, "the bridge never called the sandbox"
        await asyncio.sleep(0.1)
    process.send_signal(signal.SIGTERM)  # all five calls are in flight, each needs ~1.5 s more
    assert process.stderr is not None
    stderr = await asyncio.wait_for(process.stderr.read(), 30)
    assert await process.wait() == 0, stderr.decode()[-2000:]
    outcomes = by_command(await stack.collect(5))
    assert {o["status"] for o in outcomes.values()} == {"queued"} and len(outcomes) == 5

    # everything finished was committed: a new member of the group has nothing to replay
    await stack.fault("zuora", {})
    await stack.send(zuora_run(99, prefix))
    await stack.start_bridge()
    later = await stack.collect(1, within_s=40)  # the group first waits out the old member's session
    assert [e["data"]["command_id"] for e in later] == [f"{prefix}-99"]
    assert await stack.collect(1, within_s=2) == []  # and nothing finished before SIGTERM came back


async def test_command_produced_by_librdkafka_with_zstd(stack: Stack) -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka")
    await stack.start_bridge()
    doc = {
        "id": f"rdkafka-{uuid.uuid4().hex[:6]}",
        "target": workfloo_sandbox.LOCAL_TARGET,
        "operation": "workfloo.execute",
        "definition_id": WORKFLOO_DEFINITION_WITH_LINKS,
        "scenario_id": WORKFLOO_SCENARIO,
    }
    import orjson

    def produce() -> None:
        producer = confluent_kafka.Producer(
            {
                "bootstrap.servers": stack.broker.bootstrap,
                "compression.type": "zstd",
                "enable.idempotence": False,
            }
        )
        producer.produce(
            stack.settings.topics.run_commands,
            orjson.dumps(doc),
            key=b"rdkafka",
            headers=[("origin", b"librdkafka")],
        )
        assert producer.flush(15) == 0

    await asyncio.to_thread(produce)
    [event] = await stack.collect(1)
    assert event["data"]["command_id"] == doc["id"] and event["data"]["status"] == "queued"


async def test_kill_9_mid_stream_loses_nothing_and_duplicates_stay_bounded(
    stack: Stack, tmp_path: Path
) -> None:
    in_flight = 20
    await stack.fault("zuora", {"latency_ms": 150})
    prefix = f"kill-{uuid.uuid4().hex[:6]}"
    commands = [zuora_run(i, prefix) for i in range(120)]
    await stack.send(*commands)
    process = await start_process(stack, tmp_path, engine={"max_in_flight": in_flight})
    first = await stack.collect(30, within_s=60)
    process.kill()  # SIGKILL: no drain, no final commit
    await process.wait()
    assert 30 <= len(first) < len(commands)

    await stack.fault("zuora", {})
    await stack.start_bridge()
    expected = {doc["id"] for _, doc in commands}
    events = list(first)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 90
    while {e["data"]["command_id"] for e in events} != expected:
        assert loop.time() < deadline, (
            f"missing outcomes: {sorted(expected - {e['data']['command_id'] for e in events})[:5]}"
        )
        events += await stack.collect(1, within_s=2)
    events += await stack.collect(1, within_s=2)  # stragglers
    ids = [e["data"]["command_id"] for e in events]
    duplicates = {i for i in ids if ids.count(i) > 1}
    # at most what the killed process held in flight, plus what it finished within one commit interval
    # (0.2 s at <= 20 / 0.15 s = 27 commands)
    assert len(ids) - len(set(ids)) <= in_flight + 27
    assert all(e["data"]["status"] == "queued" for e in events)
    refs: dict[str, set[str]] = {}
    for e in events:
        refs.setdefault(e["data"]["command_id"], set()).add(e["data"]["provider_ref"])
    # Zuora saw the same Idempotency-Key for a redelivered command and replayed the same instance
    assert all(len(refs[d]) == 1 for d in duplicates)
    keys_by_path: dict[str, set[str]] = {}
    for r in await stack.requests("zuora"):
        if r["path"].endswith("/run"):
            keys_by_path.setdefault(r["headers"]["idempotency-key"], set()).add(r["path"])
    assert len(keys_by_path) == len(expected)  # one key per command, however often it was sent
