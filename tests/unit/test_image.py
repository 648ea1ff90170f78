"""The image's build, short of a Docker engine: the version baked into it is the package's, the
builder's version guard refuses another, the labels and environment carry the version and the git
revision, and the build context (.dockerignore) builds a wheel that ships the examples and the
LICENSE. hadolint and the chart's contract with the Dockerfile: helm/check.py (test_helm_chart.py)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile

import pytest
import yaml

import bridge
from tests.deploy_support import EXAMPLES, ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text(encoding="utf-8")
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_version_is_the_packages():
    chart = yaml.safe_load((ROOT / "helm" / "workflow-bridge" / "Chart.yaml").read_text(encoding="utf-8"))
    defaults = re.findall(r"^ARG VERSION=(\S+)$", DOCKERFILE, re.M)
    assert defaults == [PROJECT["version"]] * 2  # the builder's and the runtime's
    assert bridge.__version__ == PROJECT["version"] == chart["appVersion"]


def _version_guard() -> str:
    """The builder's check, as the shell gets it (Docker joins the continued lines)."""
    joined = DOCKERFILE.replace("\\\n", "")
    [code] = re.findall(r'^RUN python -c "(.*?)" "\$\{VERSION\}"', joined, re.M)
    return code


@pytest.mark.parametrize(("version", "error"), [(PROJECT["version"], ""), ("9.9.9", "VERSION=9.9.9 but")])
def test_the_builder_refuses_a_version_that_is_not_the_packages(tmp_path, version, error):
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    result = subprocess.run(
        [sys.executable, "-c", _version_guard(), version],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert (result.returncode == 0) == (not error)
    assert error in result.stderr
    if error:
        assert result.stderr.strip() == f"VERSION=9.9.9 but pyproject.toml says {PROJECT['version']}"


def test_the_image_carries_the_version_and_the_revision():
    runtime = DOCKERFILE[DOCKERFILE.index("AS runtime") :]
    assert "ARG GIT_REVISION=unknown" in runtime
    for line in (
        'org.opencontainers.image.version="${VERSION}"',
        'org.opencontainers.image.revision="${GIT_REVISION}"',
        'org.opencontainers.image.licenses="Apache-2.0"',
        'ENV BRIDGE_GIT_REVISION="${GIT_REVISION}"',
    ):
        assert line in runtime


def _build_context(target):
    """The files .dockerignore lets into the build context (its allow-list after `*`)."""
    allowed = [
        line[1:].rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.startswith("!")
    ]
    for name in allowed:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy(source, target / name)
    return allowed


def test_the_build_context_builds_a_wheel_with_the_examples_and_the_license(tmp_path):
    context = tmp_path / "context"
    context.mkdir()
    assert sorted(_build_context(context)) == ["LICENSE", "README.md", "bridge", "pyproject.toml"]
    # the builder's `pip wheel .`, without the dependencies' wheels
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(tmp_path), "."],
        cwd=context,
        check=True,
        capture_output=True,
        timeout=300,
    )
    [wheel] = tmp_path.glob(f"workflow_bridge-{PROJECT['version']}-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        license_text = archive.read(next(n for n in names if n.endswith("licenses/LICENSE"))).decode()
    assert {f"bridge/examples/{p.name}" for p in EXAMPLES.glob("*.yaml")} <= names
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert license_text == (ROOT / "LICENSE").read_text(encoding="utf-8")
    assert license_text.lstrip().startswith(
        "Apache License\n                           Version 2.0, January 2004"
    )
