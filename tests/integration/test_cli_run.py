"""``bridge run`` refuses to start in one line and a non-zero exit, never a traceback: a taken
metrics port, a broker it cannot reach within ``kafka.startup_timeout_s``, a missing topic."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from bridge.config.settings import TopicSettings
from bridge.local.broker import RunningBroker, create_topics, free_port
from bridge.local.stack import SANDBOX_ENV, local_config, topic_layout
from tests.integration.clirun import bridge_cli

pytestmark = pytest.mark.integration


def write_config(tmp_path: Path, bootstrap: str, **overrides: Any) -> Path:
    raw = local_config(bootstrap, "http://127.0.0.1:9", metrics_port=None, overrides=overrides)
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(raw))
    return config


def unique_topics() -> dict[str, str]:
    prefix = f"t{uuid.uuid4().hex[:8]}"
    return {role: f"{prefix}.{name}" for role, name in TopicSettings().model_dump().items()}


async def run_refused(config: Path) -> str:
    """Run ``bridge run``; assert exit 2 and no traceback; the last stderr line (the reason)."""
    code, _, err = await bridge_cli("run", "--config", str(config), env=SANDBOX_ENV, timeout_s=90)
    assert "Traceback" not in err, err
    assert code == 2, err
    return err.strip().splitlines()[-1]


async def test_a_taken_metrics_port(broker: RunningBroker, tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        config = write_config(tmp_path, broker.bootstrap, observability={"port": port})
        reason = await run_refused(config)
    assert reason == (
        f"bridge run: cannot serve health and metrics on 127.0.0.1:{port} (observability.port): "
        "Address already in use"
    )


async def test_an_unreachable_broker_after_the_start_up_bound(tmp_path: Path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    config = write_config(tmp_path, bootstrap, kafka={"startup_timeout_s": 2})
    began = time.monotonic()
    reason = await run_refused(config)
    assert reason.startswith(
        f"bridge run: cannot reach the Kafka broker at {bootstrap} within 2s (kafka.startup_timeout_s): "
    )
    assert time.monotonic() - began < 30


async def test_a_missing_command_topic(broker: RunningBroker, tmp_path: Path) -> None:
    topics = unique_topics()
    present = {k: v for k, v in topics.items() if k != "control_commands"}
    await create_topics(
        broker.bootstrap,
        {n: c for n, c in topic_layout(TopicSettings(**topics)).items() if n in present.values()},
    )
    reason = await run_refused(write_config(tmp_path, broker.bootstrap, topics=topics))
    assert reason == (
        f"bridge run: topic(s) {topics['control_commands']} do not exist on {broker.bootstrap}: "
        "create them with `bridge topics apply --config <this config>`"
    )


async def test_a_missing_ledger_topic(broker: RunningBroker, tmp_path: Path) -> None:
    topics = unique_topics()
    layout = topic_layout(TopicSettings(**topics))
    await create_topics(broker.bootstrap, {n: c for n, c in layout.items() if n != topics["ledger"]})
    reason = await run_refused(write_config(tmp_path, broker.bootstrap, topics=topics))
    assert reason.startswith(f"bridge: ledger topic '{topics['ledger']}' does not exist: create it with")
