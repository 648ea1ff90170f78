"""Helpers for the tests that run the deployment path as a user would: the shipped example
configurations, ``bridge check-config`` and ``helm/check.py`` as subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent
BRIDGE = str(BIN / "bridge")


def secret_refs(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], dict[str, str]]]:
    """(path to the field, the reference) for every ``{env: ...}`` / ``{file: ...}`` in a config."""
    if isinstance(node, dict):
        if set(node) in ({"env"}, {"file"}):
            yield path, node
            return
        for key, value in node.items():
            yield from secret_refs(value, (*path, str(key)))


def secrets_environ(config_file: Path, secret_dir: Path) -> dict[str, str]:
    """An environment in which every credential of ``config_file`` resolves, as in a pod: each
    ``{env: VAR}`` is set, and each ``{file: PATH}`` is pointed at a file under ``secret_dir``
    through the documented override ``BRIDGE__<FIELD PATH>__FILE``."""
    config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE__")}
    for i, (path, ref) in enumerate(secret_refs(config)):
        if "env" in ref:
            environ[ref["env"]] = f"example-secret-{i}"
        else:
            local = secret_dir / f"secret-{i}"
            local.write_text(f"example-secret-{i}\n", encoding="utf-8")
            environ["BRIDGE__" + "__".join(p.upper() for p in path) + "__FILE"] = str(local)
    return environ


def run(
    argv: list[str], environ: Mapping[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=ROOT,
        env=dict(environ or os.environ),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
