"""Sample the bridge process with py-spy and summarise the collapsed stacks.

    python -m bench.run --suite --profile bench/results/profile   # one collapsed file per scenario
    python -m bench.profile bench/results/profile/i-50ms.txt      # top functions, self and inclusive

py-spy is optional (``pip install py-spy``); it is only needed for ``--profile``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Child

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise RuntimeError("--profile needs py-spy: .venv/bin/pip install py-spy")
    return found


def start_py_spy(pid: int, out: Path, rate: int = 100) -> Child:
    """``py-spy record`` of ``pid`` in collapsed-stack ("raw") format; it ends when the process does."""
    argv = [py_spy(), "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "-o", str(out)]
    return Child.spawn("py-spy", argv, out.with_suffix(".log"))


def frame_name(frame: str) -> str:
    """``func (path/to/module.py:12)`` -> ``module.py:func`` (line numbers folded together)."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{Path(match['file']).name}:{match['func']}"


@dataclass
class Summary:
    samples: int
    self_time: Counter[str]
    inclusive: Counter[str]

    def top(self, counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, 100.0 * count / self.samples) for name, count in counter.most_common(n)]


def summarise(text: str) -> Summary:
    total = 0
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        count = int(match["count"])
        frames = [frame_name(f) for f in match["stack"].split(";") if f.strip()]
        if not frames:
            continue
        total += count
        self_time[frames[-1]] += count
        for name in set(frames):
            inclusive[name] += count
    return Summary(total, self_time, inclusive)


def render(summary: Summary, n: int = 25) -> str:
    lines = [f"{summary.samples} samples (non-idle)", "", "self %   function"]
    lines += [f"{pct:6.1f}   {name}" for name, pct in summary.top(summary.self_time, n)]
    lines += ["", "incl %   function"]
    lines += [f"{pct:6.1f}   {name}" for name, pct in summary.top(summary.inclusive, n)]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile")
    parser.add_argument("collapsed", type=Path, help="py-spy --format raw output")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    print(render(summarise(args.collapsed.read_text()), args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
