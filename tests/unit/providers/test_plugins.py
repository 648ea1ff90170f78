"""Provider plugins: nothing installed loads unless the configuration names it; a plugin that fails to
load, needs another API version or clashes is refused at start-up with one line and exit code 2."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bridge.errors import ConfigError
from bridge.providers.catalog import CATALOG
from bridge.providers.plugins import PluginError, enable, incompatibility
from bridge.providers.settings import parse_settings

AIRFLOW_TARGET = {
    "provider": "airflow",
    "base_url": "https://airflow.example.com",
    "username": {"env": "AF_USER"},
    "password": {"env": "AF_PASSWORD"},
}
ENV = {"AF_USER": "u", "AF_PASSWORD": "p"}


@pytest.fixture(autouse=True)
def builtins_only():
    yield
    enable(())


def test_an_installed_plugin_is_not_loaded_unless_the_configuration_names_it():
    with pytest.raises(ConfigError, match="does not match any of the expected tags"):
        parse_settings({"targets": {"etl": AIRFLOW_TARGET}}, ENV)
    assert "airflow" not in CATALOG.kinds and "airflow.trigger_dag_run" not in CATALOG.operations


def test_a_named_plugin_joins_the_catalog_before_the_targets_validate():
    settings = parse_settings(
        {"providers": {"plugins": ["airflow"]}, "targets": {"etl": AIRFLOW_TARGET}}, ENV
    )
    assert settings.targets["etl"].provider == "airflow"
    assert CATALOG.provider_of("airflow.trigger_dag_run") == "airflow"
    parse_settings({}, {})  # a configuration without it: the catalog is the built-ins again
    assert "airflow" not in CATALOG.kinds


@pytest.mark.parametrize(
    ("declared", "problem"),
    [("1.0", None), (None, "declares no api_version"), ("2.0", "needs provider API 2.0"), ("1.99", "1.99")],
)
def test_the_api_version_check(declared, problem):
    reason = incompatibility(declared)
    assert reason is None if problem is None else problem in (reason or "")


def test_a_plugin_that_is_not_installed_is_refused_in_one_line():
    with pytest.raises(PluginError, match=r"^provider plugin 'camunda' is not installed \(no entry point"):
        enable(["camunda"])


# -- installed packages, as pip leaves them: a dist-info with entry_points.txt on the path ------------


def _package(site: Path, name: str, module: str, source: str, entry_points: str) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[workflow_bridge.providers]\n{entry_points}\n")
    (site / f"{module}.py").write_text(source)


@pytest.fixture
def site(tmp_path: Path) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    _package(
        site,
        "broken-plugin",
        "broken_plugin",
        "raise RuntimeError('no such\\nthing')\n",
        "broken = broken_plugin:SPEC",
    )
    spec = "from bridge.providers.zuora import SPEC as S\nfrom dataclasses import replace\n"
    _package(site, "clash-plugin", "clash_plugin", spec + "SPEC = S\n", "zuora = clash_plugin:SPEC")
    _package(
        site,
        "old-plugin",
        "old_plugin",
        spec + "SPEC = replace(S, kind='old', api_version='0.9')\n",
        "old = old_plugin:SPEC",
    )
    return site


def _bridge(site: Path, tmp_path: Path, config: str, *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(config)
    env = {**os.environ, "PYTHONPATH": str(site)}
    command = [sys.executable, "-m", "bridge", *args, "--config", str(path)]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.mark.parametrize(
    ("plugin", "message"),
    [
        (
            "broken",
            "provider plugin 'broken' (broken-plugin 1.0) failed to load: RuntimeError: no such thing",
        ),
        (
            "zuora",
            "provider plugin 'zuora' (clash-plugin 1.0) clashes: two providers declare the same kind 'zuora'",
        ),
        ("old", "provider plugin 'old' (old-plugin 1.0) needs provider API 0.9; this bridge has 1.0"),
    ],
)
def test_bridge_run_refuses_a_bad_plugin_with_one_line_and_exit_2(site, tmp_path, plugin, message):
    result = _bridge(site, tmp_path, f"providers: {{plugins: [{plugin}]}}\n", "run")
    assert result.returncode == 2
    assert result.stderr == f"bridge: {message}\n"


def test_bridge_providers_list_shows_built_in_loaded_and_available(site, tmp_path):
    result = _bridge(site, tmp_path, "providers: {plugins: [airflow]}\n", "providers", "list")
    assert result.returncode == 0, result.stderr
    rows = [tuple(line.split()[:3]) for line in result.stdout.splitlines()[1:]]
    assert ("zuora", "built-in", "workflow-bridge") in rows
    assert ("airflow", "loaded", "workflow-bridge-airflow") in rows
    assert ("broken", "available", "broken-plugin") in rows
    assert ("zuora", "available", "clash-plugin") in rows  # installed, not named: not loaded, no clash
    assert all(
        line.endswith("(not in providers.plugins)")
        for line in result.stdout.splitlines()
        if "available" in line
    )


def test_bridge_check_config_with_a_target_of_a_plugin_not_allowed(site, tmp_path):
    target = "{provider: airflow, base_url: 'https://a.example', username: {env: U}, password: {env: P}}"
    config = f"targets:\n  etl: {target}\n"
    result = _bridge(site, tmp_path, config, "check-config")
    assert result.returncode == 2
    assert "targets.etl: Input tag 'airflow' found using 'provider' does not match" in result.stderr
    assert "Traceback" not in result.stderr
