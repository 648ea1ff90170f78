"""The documented plugin commands, run as a user runs them: ``bridge sandbox --plugin airflow`` and
``bridge topics generate --config`` (the contracts include the plugins the configuration loads)."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parents[2]
BRIDGE = [sys.executable, "-m", "bridge"]
pytest.importorskip("workflow_bridge_airflow")


async def test_bridge_sandbox_serves_a_plugins_sandbox():
    process = await asyncio.create_subprocess_exec(
        *BRIDGE, "sandbox", "--port", "0", "--plugin", "airflow", stdout=asyncio.subprocess.PIPE
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
        url = line.split(" listening on ")[1].split(" ")[0]
        auth = base64.b64encode(b"sandbox-airflow:sandbox-airflow-password").decode()
        async with (
            aiohttp.ClientSession(headers={"Authorization": f"Basic {auth}"}) as session,
            session.get(f"{url}/airflow/api/v1/dags/nightly_etl/dagRuns/a%2Fb") as answer,
        ):
            assert answer.status == 404
            assert answer.content_type == "application/problem+json"
            assert (await answer.json(content_type=None))["title"] == "DAGRun not found"
    finally:
        process.send_signal(signal.SIGINT)
        await asyncio.wait_for(process.wait(), 30)


def test_bridge_sandbox_with_a_plugin_that_is_not_installed():
    result = subprocess.run(
        [*BRIDGE, "sandbox", "--plugin", "nope"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    missing = "provider plugin 'nope' is not installed (no entry point 'nope' in workflow_bridge.providers)"
    assert result.stderr == f"bridge: {missing}\n"


def test_topics_generate_includes_the_plugins_the_configuration_loads(tmp_path: Path):
    topics = tmp_path / "topics"
    topics.mkdir()
    for spec in (ROOT / "topics").glob("*.yaml"):
        if spec.name != "asyncapi.yaml":
            shutil.copy(spec, topics / spec.name)
    config = tmp_path / "config.yaml"
    config.write_text("providers: {plugins: [airflow]}\n")
    env = {**os.environ}
    result = subprocess.run(
        [*BRIDGE, "topics", "generate", "--dir", str(topics), "--config", str(config)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    examples = {p.name for p in (topics / "examples").iterdir()}
    assert "run-command.airflow.trigger_dag_run.json" in examples
    assert "control-command.airflow.set_dag_run_state.json" in examples
    schemas = "".join(p.read_text() for p in (topics / "schemas").iterdir())
    assert "airflow.trigger_dag_run" in schemas and '"airflow"' in schemas
    assert "8x8, Apache Airflow)" in " ".join((topics / "asyncapi.yaml").read_text().split())

    # without the configuration, the same files are the built-ins' only: out of date now
    check = subprocess.run(
        [*BRIDGE, "topics", "generate", "--dir", str(topics), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 1
    assert "run-command.airflow.trigger_dag_run.json" in check.stdout
