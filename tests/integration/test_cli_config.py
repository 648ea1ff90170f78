"""``bridge check-config``, ``bridge run`` without targets and ``bridge --version``, as a user runs them."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from bridge.observability import build
from bridge.observability.metrics import Metrics
from tests.integration.clirun import bridge_cli, one_line_error

pytestmark = pytest.mark.integration

PACKAGE = Path(build.__file__).resolve().parents[1]
CREDENTIALS = {"ZUORA_EU_CLIENT_ID": "id-1", "ZUORA_EU_CLIENT_SECRET": "secret-1"}
ZUORA_EU = """\
targets:
  zuora-eu:
    provider: zuora
    base_url: https://rest.eu.zuora.com
    client_id: {env: ZUORA_EU_CLIENT_ID}
    client_secret: {env: ZUORA_EU_CLIENT_SECRET}
"""


def write(tmp_path: Path, text: str, name: str = "config.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def test_the_readmes_override_example_reaches_the_target_zuora_eu(tmp_path: Path) -> None:
    config = write(tmp_path, ZUORA_EU)
    variable = "BRIDGE__TARGETS__ZUORA_EU__RETRY__MAX_ATTEMPTS"

    code, out, err = await bridge_cli(
        "check-config", "--config", str(config), env={**CREDENTIALS, variable: "3"}
    )
    assert (code, out, err) == (0, "configuration OK: 1 target(s): zuora-eu\n", "")

    # the value lands in zuora-eu's retry settings: an invalid one is refused there, naming the variable
    code, out, err = await bridge_cli(
        "check-config", "--config", str(config), env={**CREDENTIALS, variable: "0"}
    )
    assert code == 2 and out == ""
    head, line = err.strip().splitlines()
    assert head == f"bridge: invalid configuration from environment variable {variable}:"
    assert line.startswith(
        "  - targets.zuora-eu.retry.max_attempts: Input should be greater than or equal to 1"
    )
    assert line.endswith(f"(set by {variable})")
    assert str(config) not in err


async def test_an_override_matching_two_targets_is_refused_in_one_line(tmp_path: Path) -> None:
    config = write(tmp_path, ZUORA_EU + ZUORA_EU.replace("targets:\n", "").replace("zuora-eu:", "zuora.eu:"))
    env = {**CREDENTIALS, "BRIDGE__TARGETS__ZUORA_EU__TIMEOUT_S": "5"}
    code, out, err = await bridge_cli("check-config", "--config", str(config), env=env)
    assert (code, out) == (2, "")
    assert one_line_error(err) == (
        "bridge: environment variable BRIDGE__TARGETS__ZUORA_EU__TIMEOUT_S: zuora_eu matches zuora-eu and "
        "zuora.eu: rename one so that their names differ in more than case, '-' and '.'"
    )


async def test_a_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    config = write(tmp_path, ZUORA_EU + "engine:\n  max_in_flight: [10\n")
    code, out, err = await bridge_cli("check-config", "--config", str(config), env=CREDENTIALS)
    assert (code, out) == (2, "")
    line = one_line_error(err)
    assert line.startswith(f"bridge: config file {config} is not valid YAML at line 9, column 1: ")
    assert line.endswith("(while parsing a flow sequence at line 8, column 18)")


@pytest.mark.parametrize("text", ["", "targets: {}\n"], ids=["empty", "no-targets"])
async def test_no_targets_warns_in_check_config_and_stops_run(tmp_path: Path, text: str) -> None:
    config = write(tmp_path, text)

    code, out, err = await bridge_cli("check-config", "--config", str(config))
    assert (code, out) == (0, "configuration OK: 0 target(s)\n")
    empty = "is empty and " if not text else ""
    assert one_line_error(err) == (
        f"warning: {config} {empty}configures no targets, so every command would be rejected "
        "(unknown target); `bridge run` refuses to start with it"
    )

    code, out, err = await bridge_cli("run", "--config", str(config))
    assert (code, out) == (2, "")
    assert one_line_error(err) == (
        f"bridge run: {config} configures no targets, so every command would be rejected (unknown target): "
        "add one under `targets:`"
    )


async def test_version_and_revision_match_the_build_info_metric(tmp_path: Path) -> None:
    code, out, err = await bridge_cli("--version", cwd=tmp_path)
    assert (code, err) == (0, "")
    scrape = generate_latest(Metrics().registry).decode()
    info = next(line for line in scrape.splitlines() if line.startswith("bridge_build_info{"))
    assert f'version="{build.version()}"' in info and f'revision="{build.revision()}"' in info
    assert out == f"workflow-bridge {build.version()} (revision {build.revision()})\n"
    if (PACKAGE.parent / ".git").exists():
        assert build.revision() != "unknown"


async def test_version_outside_a_checkout_says_unknown_and_an_image_value_wins(tmp_path: Path) -> None:
    shutil.copytree(PACKAGE, tmp_path / "bridge", ignore=shutil.ignore_patterns("__pycache__"))
    env = {"PYTHONPATH": str(tmp_path), "BRIDGE_GIT_REVISION": ""}
    code, out, err = await bridge_cli("--version", cwd=tmp_path, env=env, module=True)
    assert (code, out, err) == (0, f"workflow-bridge {build.version()} (revision unknown)\n", "")

    env["BRIDGE_GIT_REVISION"] = "0123abcd"
    code, out, _ = await bridge_cli("--version", cwd=tmp_path, env=env, module=True)
    assert (code, out) == (0, f"workflow-bridge {build.version()} (revision 0123abcd)\n")
