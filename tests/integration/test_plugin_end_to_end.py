"""The example plugin (plugins/workflow-bridge-airflow) carries commands end to end on the real broker:
``bridge run`` in a subprocess with ``providers: {plugins: [airflow]}``, its sandbox over real HTTP."""

from __future__ import annotations

import asyncio
import signal
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bridge.config.settings import TopicSettings
from bridge.local.broker import RunningBroker, create_topics
from bridge.local.stack import local_config, topic_layout
from bridge.providers.plugins import enable
from bridge.sandbox import start_sandbox
from bridge.sandbox.config import SandboxConfig
from tests.integration.conftest import bridge_run

pytestmark = pytest.mark.integration
airflow_sandbox = pytest.importorskip("workflow_bridge_airflow.sandbox")


@pytest.fixture
async def sandbox() -> AsyncIterator[Any]:
    """The sandbox with the plugin's emulation: it serves the sandboxes of the catalog's plugins."""
    enable(["airflow"])
    settings = airflow_sandbox.AirflowSandboxSettings(queued_s=0.2, run_duration_s=1.0)
    running = await start_sandbox(config=SandboxConfig(providers={"airflow": settings}))
    try:
        yield running
    finally:
        await running.stop()
        enable(())


def _config(broker: RunningBroker, sandbox: Any, prefix: str) -> dict[str, Any]:
    topics = {
        name: f"{prefix}.{name}"
        for name in ("run_commands", "control_commands", "run_outcomes", "control_outcomes", "dead_letter")
    } | {name: f"{prefix}.{name}" for name in ("ledger", "lifecycle", "parked")}
    raw = local_config(
        broker.bootstrap,
        sandbox.url,
        metrics_port=None,
        overrides={"topics": topics, "kafka": {"group_id": f"{prefix}-bridge"}},
    )
    target = airflow_sandbox.SANDBOX.local.targets(sandbox.url)[airflow_sandbox.LOCAL_TARGET]
    raw["targets"] = {airflow_sandbox.LOCAL_TARGET: {**target, "allow_http": True}}
    raw["providers"] = {"plugins": ["airflow"]}
    return raw


async def _events(consumer: AIOKafkaConsumer, wanted: int, within_s: float) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + within_s
    while len(found) < wanted and asyncio.get_running_loop().time() < deadline:
        batch = await consumer.getmany(timeout_ms=200)
        found += [orjson.loads(r.value) for records in batch.values() for r in records]
    return found


async def test_airflow_commands_run_end_to_end_through_bridge_run(
    broker: RunningBroker, sandbox: Any, tmp_path: Path
) -> None:
    prefix = f"af{uuid.uuid4().hex[:8]}"
    raw = _config(broker, sandbox, prefix)
    t = raw["topics"]
    await create_topics(broker.bootstrap, topic_layout(TopicSettings(**t)))
    process = await bridge_run(raw, tmp_path / "config.yaml", airflow_sandbox.SANDBOX.local.env)
    consumer = AIOKafkaConsumer(
        t["run_outcomes"],
        t["control_outcomes"],
        t["dead_letter"],
        t["lifecycle"],
        bootstrap_servers=broker.bootstrap,
        auto_offset_reset="earliest",
    )
    producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
    await consumer.start()
    await producer.start()
    try:
        trigger = {"target": airflow_sandbox.LOCAL_TARGET, "operation": "airflow.trigger_dag_run"}
        runs = {
            f"{prefix}-ok": {**trigger, "dag_id": airflow_sandbox.DAG, "conf": {"day": "2025-01-31"}},
            f"{prefix}-fails": {**trigger, "dag_id": airflow_sandbox.FAILING_DAG},
            f"{prefix}-no-dag": {**trigger, "dag_id": "no_such_dag"},
        }
        for command_id, fields in runs.items():
            doc = orjson.dumps({"id": command_id, **fields})
            await producer.send_and_wait(t["run_commands"], doc, key=command_id.encode())
        events = await _events(consumer, 3, within_s=60)
        outcomes = {
            e["data"]["command_id"]: e["data"] for e in events if e["type"].startswith("workflow.outcome.")
        }
        assert outcomes[f"{prefix}-ok"]["status"] == "queued", outcomes
        assert outcomes[f"{prefix}-fails"]["status"] == "queued"
        rejected = outcomes[f"{prefix}-no-dag"]
        assert rejected["status"] == "rejected" and "DAG not found" in rejected["error"]["message"]

        run_id = outcomes[f"{prefix}-ok"]["provider_ref"]
        assert run_id.startswith("wfb-")
        # tracking follows both runs to their end, over the plugin's status read
        ends = await _lifecycle_ends(consumer, events, {f"{prefix}-ok", f"{prefix}-fails"})
        assert ends == {f"{prefix}-ok": "completed", f"{prefix}-fails": "failed"}, ends
        lifecycle = [e["data"] for e in events if e["type"].startswith("workflow.lifecycle.")]
        assert {data["provider"] for data in lifecycle} == {"airflow"}
        assert {data["provider_ref"] for data in lifecycle} >= {run_id}

        # control: mark the finished run failed (Airflow lets an operator correct a run's state)
        mark = {"target": airflow_sandbox.LOCAL_TARGET, "operation": "airflow.set_dag_run_state"}
        mark |= {"dag_id": airflow_sandbox.DAG, "dag_run_id": run_id, "state": "failed"}
        await producer.send_and_wait(t["control_commands"], orjson.dumps({"id": f"{prefix}-mark", **mark}))
        later = await _events(consumer, 1, within_s=30)
        control = [e["data"] for e in later if e["data"]["command_id"] == f"{prefix}-mark"]
        assert control and control[0]["status"] == "applied" and control[0]["provider_ref"] == run_id
        assert sandbox.state.emulator("airflow").runs[(airflow_sandbox.DAG, run_id)].state == "failed"
    finally:
        await producer.stop()
        await consumer.stop()
        process.send_signal(signal.SIGTERM)
        assert process.stderr is not None
        stderr = await asyncio.wait_for(process.stderr.read(), 30)
        assert await process.wait() == 0, stderr.decode()[-2000:]


async def _lifecycle_ends(
    consumer: AIOKafkaConsumer, events: list[dict[str, Any]], commands: set[str]
) -> dict[str, str]:
    """The terminal lifecycle state tracking published for each command."""
    ends: dict[str, str] = {}
    deadline = asyncio.get_running_loop().time() + 30
    while True:
        for event in events:
            data = event["data"]
            ended = event["type"] in ("workflow.lifecycle.completed", "workflow.lifecycle.failed")
            if data["command_id"] in commands and ended:
                ends[data["command_id"]] = data["status"]
        if set(ends) == commands or asyncio.get_running_loop().time() > deadline:
            return ends
        events += await _events(consumer, 1, within_s=1)


async def test_a_plugin_installed_but_not_allowed_is_not_loaded_by_bridge_run(
    broker: RunningBroker, sandbox: Any, tmp_path: Path
) -> None:
    raw = _config(broker, sandbox, f"af{uuid.uuid4().hex[:8]}")
    del raw["providers"]
    config, env = tmp_path / "config.yaml", airflow_sandbox.SANDBOX.local.env
    process = await bridge_run(raw, config, env, stdout=asyncio.subprocess.PIPE)
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    lines = stderr.decode().splitlines()
    assert lines[0] == f"bridge: invalid configuration in {config}:"
    assert "Input tag 'airflow' found using 'provider' does not match any of the expected tags" in lines[1]
    assert "Traceback" not in stderr.decode() and stdout == b""
