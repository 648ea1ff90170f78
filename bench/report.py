"""Render the performance page's figures from a suite results file, so that the docs quote a run.

    python -m bench.report            # rewrite the marked block of docs/performance.md from the newest file
    python -m bench.report --check    # exit 1 when the block is not what the file it names renders
    python -m bench.report --results bench/results/suite-20261205-053000.yaml

The block lies between ``<!-- suite-results: FILE -->`` and ``<!-- suite-results:end -->``; FILE
is the results file it was rendered from (``bench/results/suite-*.yaml``, written by
``python -m bench.run --suite``). Exit codes: 0 done (or up to date), 1 ``--check`` found it stale,
2 a usage error (no results file, no block, an unreadable file).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench import suite_results

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "performance.md"
BLOCK = re.compile(r"<!-- suite-results: (?P<file>\S+) -->\n(?P<body>.*?)<!-- suite-results:end -->", re.S)

QUIET_SHARE = 0.05  # the largest share of the machine other processes may take in a quiet run


class ReportError(Exception):
    """An operator mistake, said in one line."""


def _median(doc: dict[str, Any], scenario: str, run: str, field: str) -> float | None:
    values = [
        r[field]
        for r in doc["rows"]
        if r["scenario"] == scenario and r["run"] == run and r[field] is not None
    ]
    return statistics.median(values) if values else None


def _n(value: float | None, fmt: str = "{:,.0f}") -> str:
    return "-" if value is None else fmt.format(value)


def _quiet_or_shared(share_max: float) -> str:
    """How the page names the machine: quiet when other processes never took 5 % of it."""
    return "quiet" if share_max < QUIET_SHARE else "shared with other work"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def render(doc: dict[str, Any]) -> str:
    """Pure: the block's Markdown for one results document."""
    load = doc["foreign_load"]
    m = lambda scenario, run, field: _median(doc, scenario, run, field)  # noqa: E731
    lines = [
        f"Measured {doc['date']} at commit `{doc['commit']}` with `{doc['command']}` on "
        f"{doc['machine']['cpus']} cores ({_quiet_or_shared(load['share_max'])}): load average "
        f"{load['load_average_start'][0]:.1f} at the start, {load['load_average_end'][0]:.1f} at the end; "
        f"processes outside the benchmark used a median {_pct(load['share_median'])} "
        f"(at most {_pct(load['share_max'])}) of the machine during the runs. Medians of the rounds.",
        "",
        "| scenario | bridge, every guarantee on | baselines in the same run |",
        "|---|---|---|",
        "| 50 ms provider, 5,000 commands, 1,000 keys, 4 partitions | "
        f"{_n(m('i-50ms', 'bridge', 'commands_per_s'))} commands/s, "
        f"{_n(m('i-50ms', 'bridge', 'cpu_ms_per_command'), '{:.3f}')} ms CPU per command, "
        f"{_n(m('i-50ms', 'bridge', 'http_calls_per_command'), '{:.2f}')} HTTP calls per command | "
        f"HTTP-only {_n(m('i-50ms', 'http-only', 'commands_per_s'))} requests/s at "
        f"{_n(m('i-50ms', 'http-only', 'cpu_ms_per_command'), '{:.3f}')} ms CPU each; FastStream "
        f"`max_workers` {_n(m('i-50ms', 'faststream-workers', 'commands_per_s'))} commands/s |",
        "| 0 ms provider, 10,000 commands | "
        f"{_n(m('ii-0ms', 'bridge', 'commands_per_s'))} commands/s, "
        f"{_n(m('ii-0ms', 'bridge', 'cpu_ms_per_command'), '{:.3f}')} ms CPU per command, "
        f"{_n(m('ii-0ms', 'bridge', 'http_calls_per_command'), '{:.2f}')} HTTP calls per command | "
        f"HTTP-only {_n(m('ii-0ms', 'http-only', 'commands_per_s'))} requests/s at "
        f"{_n(m('ii-0ms', 'http-only', 'cpu_ms_per_command'), '{:.3f}')} ms CPU each |",
        "| fed at half the 0 ms rate | "
        f"added p50 {_n(m('iii-paced-50%', 'bridge', 'added_p50_ms'), '{:.1f}')} ms, "
        f"p99 {_n(m('iii-paced-50%', 'bridge', 'added_p99_ms'), '{:.1f}')} ms | "
        f"Kafka floor e2e p99 {_n(m('iii-paced-50%', 'kafka-floor', 'e2e_p99_ms'), '{:.1f}')} ms |",
        "| 5,000 commands held (2 s provider) | "
        f"peak RSS {_n(m('iv-5000-held', 'bridge', 'peak_rss_mb'), '{:.1f}')} MB | |",
    ]
    if doc["guarantees"]:
        lines += [
            "",
            "The cost of each guarantee (the 50 ms scenario, each off in turn, alternated in the same run):",
            "",
            "| run | commands/s | CPU ms per command | HTTP calls per command |",
            "|---|---|---|---|",
        ]
        for g in doc["guarantees"]:
            name = (
                "every guarantee on (defaults)"
                if g["run"] == "bridge"
                else g["run"].removeprefix("bridge[").removesuffix("]")
            )
            lines.append(
                f"| {name} | {_n(g['commands_per_s'])} | {_n(g['cpu_ms_per_command'], '{:.3f}')} | "
                f"{_n(g['http_calls_per_command'], '{:.2f}')} |"
            )
    goals = [g for g in doc["goals"] if g["what"].startswith("goal: ")]
    if goals:
        lines += ["", "The goals of issue 26 in this run:", ""]
        for g in goals:
            op = "≥" if g["at_least"] else "≤"
            verdict = "**met**" if g["passed"] else "**missed**"
            what = g["what"].removeprefix("goal: ")
            lines.append(
                f"- {g['scenario']}: {what} = {_n(g['value'], '{:,.2f}')} ({op} {g['target']:g}): {verdict}"
            )
    return "\n".join(lines) + "\n"


def block_in(text: str) -> re.Match[str]:
    found = BLOCK.search(text)
    if found is None:
        raise ReportError(
            f"no '<!-- suite-results: FILE -->' ... '<!-- suite-results:end -->' block in {PAGE}"
        )
    return found


def _load(path: Path) -> dict[str, Any]:
    try:
        return suite_results.load(path)
    except (OSError, ValueError) as exc:
        raise ReportError(f"cannot read the results file: {exc}") from None


def rewrite(text: str, results: Path) -> str:
    found = block_in(text)
    head = f"<!-- suite-results: {results.resolve().relative_to(ROOT)} -->\n"
    return (
        text[: found.start()]
        + head
        + render(_load(results))
        + "<!-- suite-results:end -->"
        + text[found.end() :]
    )


def stale(text: str) -> str | None:
    """Why the page's block is not what its results file renders, or None when it is."""
    found = block_in(text)
    path = ROOT / found["file"]
    if not path.is_file():
        return f"the block quotes {found['file']}, which does not exist"
    if found["body"] != render(_load(path)):
        return f"the block differs from what {found['file']} renders (python -m bench.report)"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.report", description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=None, help="a suite results file (default: the newest)")
    p.add_argument("--check", action="store_true", help="exit 1 when the page's block is stale")
    args = p.parse_args(argv)
    try:
        text = PAGE.read_text()
        if args.check:
            why = stale(text)
            print(f"docs/performance.md: {why or 'up to date'}")
            return 1 if why else 0
        results = args.results or suite_results.newest()
        if results is None:
            raise ReportError("no bench/results/suite-*.yaml yet: run python -m bench.run --suite first")
        PAGE.write_text(rewrite(text, results))
    except ReportError as exc:
        print(f"bench.report: {exc}", file=sys.stderr)
        return 2
    print(f"docs/performance.md: the figures now come from {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
