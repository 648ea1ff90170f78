"""The shipped example configurations (``examples/``, the same files as the package's
``bridge/examples/``) pass ``bridge check-config`` run as a user runs it and cover every provider.
That the wheel (and so the image) ships them: tests/unit/test_image.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from bridge.config.settings import TopicSettings
from bridge.providers.catalog import CATALOG
from tests.deploy_support import BRIDGE, EXAMPLES, ROOT, run, secret_refs, secrets_environ

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.yaml"))


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.name)
def test_check_config_accepts_the_example(example, tmp_path):
    result = run(
        [BRIDGE, "check-config", "--config", f"examples/{example.name}"], secrets_environ(example, tmp_path)
    )
    assert result.returncode == 0, result.stderr
    names = ", ".join(sorted(load(example)["targets"]))
    assert f"configuration OK: {len(load(example)['targets'])} target(s): {names}" in result.stdout


def test_without_its_secrets_check_config_names_each_missing_one():
    """Outside a pod nothing resolves: one line per credential, exit 2, no traceback."""
    environ = {"PATH": "/usr/bin:/bin"}
    result = run([BRIDGE, "check-config", "--config", "examples/config.yaml"], environ)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for path, ref in secret_refs(load(EXAMPLES / "config.yaml")):
        field = ".".join(path)
        missing = (
            f"environment variable {ref['env']}" if "env" in ref else f"cannot read secret file {ref['file']}"
        )
        assert any(field in line and missing in line for line in result.stderr.splitlines()), (
            field,
            result.stderr,
        )


def test_one_example_per_provider_and_all_of_them_in_config_yaml():
    in_config = {t["provider"] for t in load(EXAMPLES / "config.yaml")["targets"].values()}
    assert in_config == set(CATALOG.kinds)
    for kind in CATALOG.kinds:
        targets = load(EXAMPLES / f"{kind}.yaml")["targets"]
        assert [t["provider"] for t in targets.values()] == [kind]


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.name)
def test_examples_use_the_topics_that_bridge_topics_apply_creates(example):
    assert TopicSettings.model_validate(load(example).get("topics") or {}) == TopicSettings()


@pytest.mark.parametrize("example", EXAMPLE_FILES, ids=lambda p: p.name)
def test_no_credential_is_inline(example):
    """Every field named like a credential is a reference (the settings refuse inline ones anyway)."""
    refs = {path for path, _ in secret_refs(load(example))}
    config = load(example)
    for name, target in config["targets"].items():
        for field in ("username", "password", "client_id", "client_secret", "api_key"):
            if field in target:
                assert ("targets", name, field) in refs


def test_examples_folder_is_the_packaged_one():
    assert EXAMPLES.resolve() == (ROOT / "bridge" / "examples").resolve()
