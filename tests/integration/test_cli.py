"""The shell commands users run against a broker: ``bridge send`` and ``bridge tail``."""

from __future__ import annotations

import asyncio
import sys
import uuid

import pytest

from bridge.sandbox import zuora as zuora_sandbox
from bridge.sandbox.zuora_runs import ZUORA_TASK_ERROR
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


async def bridge_cli(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_send_publishes_to_the_right_topic_and_tail_prints_the_outcome(stack: Stack, tmp_path) -> None:
    command_id = f"cli-{uuid.uuid4().hex[:6]}"
    config = tmp_path / "topics.yaml"
    config.write_text(
        "topics:\n" + "".join(f"  {k}: {v}\n" for k, v in stack.settings.topics.model_dump().items())
    )
    await stack.start_bridge()
    doc = (
        f'{{"id":"{command_id}","target":"{zuora_sandbox.LOCAL_TARGET}","operation":"zuora.rerun_task",'
        f'"task_id":"{ZUORA_TASK_ERROR}"}}'
    )
    code, out, err = await bridge_cli(
        "send", "--config", str(config), "--bootstrap", stack.broker.bootstrap, doc
    )
    assert code == 0, err
    assert stack.settings.topics.control_commands in out  # a control command goes to the control topic
    code, out, err = await bridge_cli(
        "tail",
        "--config",
        str(config),
        "--bootstrap",
        stack.broker.bootstrap,
        "--from-beginning",
        "--count",
        "1",
        "--timeout",
        "30",
    )
    assert code == 0, err
    assert "applied" in out and command_id in out


async def test_send_refuses_an_invalid_command_without_publishing(stack: Stack) -> None:
    code, _, err = await bridge_cli(
        "send",
        "--bootstrap",
        stack.broker.bootstrap,
        '{"id":"x","target":"t","operation":"zuora.run_workflow","workflow_id":"nope"}',
    )
    assert code == 2 and "workflow_id" in err
