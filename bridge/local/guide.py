"""What ``bridge local`` tells its user besides the events: the banner with the addresses, and the
blocks with the summary, the addresses again and what to try next (once the examples settle, on
SIGUSR1, at the end). Every line fits 80 columns but a long path to the ``bridge`` executable.

Example::

    console.print(*banner(os.getpid(), where, examples=16, prefix="demo-101010-"))
    console.print(*block("examples settled in 6.2s", tally.summary(), where, next_steps(...)))
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from bridge.local.screen import WIDTH, header


def addresses(bootstrap: str, sandbox_url: str, metrics_port: int | None) -> list[str]:
    return [
        f"broker   {bootstrap}",
        f"sandbox  {sandbox_url}",
        f"metrics  http://127.0.0.1:{metrics_port}/metrics",
    ]


def banner(pid: int, where: list[str], examples: int, prefix: str) -> list[str]:
    sending = (
        f"sending {examples} example commands: every operation, one twice, one not JSON"
        if examples
        else "no example commands (--no-examples)"
    )
    intro = f"workflow-bridge local stack (pid {pid}): broker, sandbox providers, bridge"
    return [intro, *(f"  {a}" for a in where), sending, "", header(prefix)]


def rule(title: str) -> str:
    """``-- title ------``, as wide as the screen."""
    text = f"-- {title} "
    return text + "-" * (WIDTH - len(text))


def block(title: str, summary: list[str], where: list[str], steps: list[str]) -> list[str]:
    return ["", rule(title), *summary, *where, *steps]


def next_steps(exe: str, bootstrap: str, command_file: Path | None, pid: int) -> list[str]:
    """``command_file``: a command to send (None: there is none, the user writes one)."""
    command = f"@{command_file}" if command_file else "'<a command as JSON>'"
    return [
        "next, in another shell:",
        f"  {exe} send --bootstrap {bootstrap} {command}",
        f"  {exe} tail --bootstrap {bootstrap} --from-beginning",
        f"  kill -USR1 {pid}  (this summary again); Ctrl-C stops everything",
    ]


def bridge_executable(argv0: str, cwd: Path) -> str:
    """How the user calls ``bridge`` from ``cwd``: its name when PATH finds this one, else the path
    it was run by (relative when under ``cwd``: ``.venv/bin/bridge`` after ``make run``)."""
    run = Path(argv0)
    if run.name != "bridge":
        return "bridge"  # python -m bridge, or a test harness
    found = shutil.which("bridge")
    if found and Path(found).resolve() == run.resolve():
        return "bridge"
    with contextlib.suppress(ValueError):
        return str(run.absolute().relative_to(cwd))
    return str(run)
