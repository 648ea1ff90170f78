"""Several bridge members of one group on this machine, started as one command: what scaling out
gives when one member is bound by its own core (bench/results/2026-12-06-one-member.md).

    python -m bench.run --commands 10000 --latency-ms 50 --no-baselines \\
        --bridge-cmd ".venv/bin/python -m bench.members 2"

It takes the arguments the benchmark gives a bridge (``run --config FILE``) and starts that many
``python -m bridge`` processes: the first with ``FILE``, each other with a copy whose listeners
(metrics, admin) pick free ports. SIGTERM and SIGINT go to every member; the exit code is the
first member's. The benchmark samples this process's CPU, not the members': its CPU per command
reads 0 here, and only commands/s, latency and the outcome check count.
"""

from __future__ import annotations

import copy
import signal
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import yaml


def member_config(raw: dict[str, Any]) -> dict[str, Any]:
    """Another member's configuration: the same group and topics; a listener with a fixed port
    (the first member holds it) picks a free one. Pure."""
    other = copy.deepcopy(raw)
    for section in ("observability", "admin"):
        listener = other.get(section)
        if isinstance(listener, dict) and listener.get("port"):
            listener["port"] = 0
    return other


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    count, bridge_args = (int(args[0]), args[1:]) if args and args[0].isdigit() else (0, [])
    flag = bridge_args.index("--config") if "--config" in bridge_args else len(bridge_args)
    if count < 1 or flag + 1 >= len(bridge_args):
        print("usage: python -m bench.members N run --config FILE", file=sys.stderr)
        return 2
    at = flag + 1  # every member gets the same arguments but the file here
    config = Path(bridge_args[at])
    if not config.is_file():
        print(f"bench.members: {config} is not a file: give the bridge's configuration", file=sys.stderr)
        return 2
    raw = yaml.safe_load(config.read_text())
    commands = [[sys.executable, "-m", "bridge", *bridge_args]]
    for n in range(2, count + 1):
        path = config.with_name(f"{config.stem}.member{n}.yaml")
        path.write_text(yaml.safe_dump(member_config(raw)))
        own = [*bridge_args[:at], str(path), *bridge_args[at + 1 :]]
        commands.append([sys.executable, "-m", "bridge", *own])
    members = [subprocess.Popen(command) for command in commands]

    def forward(signum: int, _frame: FrameType | None) -> None:
        for member in members:
            if member.poll() is None:
                member.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    codes = [member.wait() for member in members]
    return codes[0]


if __name__ == "__main__":
    sys.exit(main())
