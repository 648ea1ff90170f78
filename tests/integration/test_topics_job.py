"""The chart's topics Job, run as its pod runs it: the rendered args and the rendered Kafka-only
config file, `bridge` as a subprocess, against a broker of its own (the Job creates the specs'
real topic names, which the shared session broker's tests must not see).

The image has no checkout: there `bridge topics` reads the specs shipped in the package. Here it
runs from the repository root, where `topics/` is the same set of specs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator

import pytest
import yaml

from bridge.contracts import load_specs
from bridge.local.broker import RunningBroker
from tests.deploy_support import BRIDGE, ROOT, run
from tests.integration.conftest import StartBroker
from tests.unit.test_helm_chart import check

pytestmark = pytest.mark.integration


@pytest.fixture
def own_broker(start_test_broker: StartBroker) -> Iterator[RunningBroker]:
    running = asyncio.run(start_test_broker())  # of the kind under test (--broker)
    yield running
    running.kill()


def rendered_job(values: dict | None) -> tuple[list[str], dict]:
    """The Job container's args and the config file its ConfigMap mounts."""
    docs = check.documents(check.render(values))
    [job] = check.by_kind(docs, "Job")
    [container] = job["spec"]["template"]["spec"]["containers"]
    hook_config = next(c for c in check.by_kind(docs, "ConfigMap") if "kafka.yaml" in c["data"])
    return container["args"], yaml.safe_load(hook_config["data"]["kafka.yaml"])


def run_job(args: list[str], config: dict, bootstrap: str, tmp_path) -> tuple[int, str, str]:
    path = tmp_path / "kafka.yaml"
    config = {"kafka": {**config["kafka"], "bootstrap_servers": bootstrap}}
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    argv = [BRIDGE, *args[:-1], str(path)]
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE__")}
    result = run(argv, environ, timeout=120)
    return result.returncode, result.stdout, result.stderr


def test_the_job_creates_the_topics_and_a_second_run_finds_them(own_broker, tmp_path):
    args, config = rendered_job(None)
    assert config["kafka"]["bootstrap_servers"] == "kafka:9092"  # the chart's default, replaced here
    code, out, err = run_job(args, config, own_broker.bootstrap, tmp_path)
    assert code == 0, err
    created = [line.removeprefix("created ") for line in out.splitlines() if line.startswith("created ")]
    assert sorted(created) == sorted(spec.name for spec in load_specs(ROOT / "topics"))
    assert "DRIFT" not in out and "Traceback" not in err

    # pre-upgrade: the same Job again creates nothing and passes
    code, out, err = run_job(args, config, own_broker.bootstrap, tmp_path)
    assert code == 0, err
    assert "created" not in out and "DRIFT" not in out

    # mode check passes on the topics apply made
    check_args, _ = rendered_job({"topicsJob": {"mode": "check"}})
    code, out, err = run_job(check_args, config, own_broker.bootstrap, tmp_path)
    assert code == 0, err


def test_the_job_in_check_mode_fails_when_the_topics_are_missing(own_broker, tmp_path):
    args, config = rendered_job({"topicsJob": {"mode": "check"}})
    code, out, err = run_job(args, config, own_broker.bootstrap, tmp_path)
    assert code == 1, (out, err)
    assert "DRIFT workflow.run.commands" in out
    assert "Traceback" not in err
