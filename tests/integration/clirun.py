"""Run ``bridge`` as a user would: a subprocess, its exit code, stdout and stderr."""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Mapping
from pathlib import Path

SCRIPT = Path(sys.executable).parent / "bridge"
BRIDGE = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "bridge"]


async def bridge_cli(
    *args: str,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout_s: float = 60.0,
    module: bool = False,
) -> tuple[int, str, str]:
    """The installed ``bridge`` script (beside this interpreter) with ``args``.

    ``module``: ``python -m bridge`` instead, so that ``PYTHONPATH`` decides which package runs.
    """
    process = await asyncio.create_subprocess_exec(
        *([sys.executable, "-m", "bridge"] if module else BRIDGE),
        *args,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(stdin), timeout_s)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def one_line_error(err: str) -> str:
    """The single stderr line of an operator error (asserts there is one and no traceback)."""
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]
