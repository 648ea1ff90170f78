"""Figures that stay true (issue 26): the docs quote the suite's results files, and a figure that no
results file holds fails here."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.report import BLOCK, render, rewrite, stale
from bench.suite_results import load

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results"
NUMBER = re.compile(r"\d[\d,]*(?:\.\d+)?")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FIGURE = re.compile(r"(\d[\d,]*(?:\.\d+)?)(?:[\u2013-](\d[\d,]*(?:\.\d+)?))? (?:commands/s|ms of CPU|ms CPU)")


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench.report", *argv], cwd=ROOT, capture_output=True, text=True, timeout=60
    )


def held() -> set[float]:
    """Every number in every results file: what a figure in the docs may quote."""
    texts = "\n".join(p.read_text() for p in sorted(RESULTS.iterdir()) if p.suffix in {".md", ".yaml"})
    return {float(n.replace(",", "")) for n in NUMBER.findall(texts)}


def test_the_performance_page_shows_what_its_results_file_renders() -> None:
    done = run("--check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "docs/performance.md: up to date"


def test_every_throughput_and_cpu_figure_in_the_docs_is_held_by_a_results_file() -> None:
    numbers = held()
    missing = []
    for page in PAGES:
        text = BLOCK.sub("", page.read_text())  # the block is checked against its own file above
        for match in FIGURE.finditer(text):
            for number in filter(None, match.groups()):
                if float(number.replace(",", "")) not in numbers:
                    missing.append(f"{page.relative_to(ROOT)}: {match[0]!r}")
    assert not missing, "figures that no file in bench/results/ holds: " + "; ".join(missing)


def test_a_block_edited_by_hand_is_stale(tmp_path: Path) -> None:
    page = (ROOT / "docs" / "performance.md").read_text()
    found = BLOCK.search(page)
    assert found is not None
    doc = load(ROOT / found["file"])
    edited = page.replace(found["body"], found["body"].replace(" commands/s", "0 commands/s", 1))
    assert edited != page
    assert stale(edited) is not None and stale(page) is None
    assert render(doc) == found["body"]


def test_rewrite_puts_the_rendering_of_the_named_file_between_the_markers() -> None:
    page = (ROOT / "docs" / "performance.md").read_text()
    found = BLOCK.search(page)
    assert found is not None
    text = "before\n<!-- suite-results: old.yaml -->\nstale figures\n<!-- suite-results:end -->\nafter\n"
    again = rewrite(text, ROOT / found["file"])
    assert again.startswith(f"before\n<!-- suite-results: {found['file']} -->\n")
    assert again.endswith("<!-- suite-results:end -->\nafter\n") and "stale figures" not in again


def test_render_says_every_goal_met_or_missed() -> None:
    doc: dict[str, Any] = {
        "date": "2026-12-05 05:00 UTC",
        "commit": "abc",
        "command": "python -m bench.run --suite",
        "machine": {"cpus": 2},
        "foreign_load": {
            "load_average_start": [3.0],
            "load_average_end": [4.0],
            "share_median": 0.1,
            "share_max": 0.3,
        },
        "goals": [
            {
                "scenario": "i-50ms",
                "what": "goal: commands/s, every guarantee on",
                "value": 2600.0,
                "target": 2500,
                "at_least": True,
                "passed": True,
            },
            {
                "scenario": "ii-0ms",
                "what": "goal: commands/s, every guarantee on",
                "value": 2000.0,
                "target": 3000,
                "at_least": True,
                "passed": False,
            },
            {
                "scenario": "i-50ms",
                "what": "bridge / sequential",
                "value": 100.0,
                "target": 40,
                "at_least": True,
                "passed": True,
            },
        ],
        "guarantees": [],
        "rows": [
            {
                "scenario": "i-50ms",
                "run": "bridge",
                "commands_per_s": 2600.0,
                "cpu_ms_per_command": 0.3,
                "http_calls_per_command": 1.0,
                "added_p50_ms": None,
                "added_p99_ms": None,
                "e2e_p99_ms": None,
                "peak_rss_mb": None,
            }
        ],
    }
    text = render(doc)
    assert "- i-50ms: commands/s, every guarantee on = 2,600.00 (≥ 2500): **met**" in text
    assert "- ii-0ms: commands/s, every guarantee on = 2,000.00 (≥ 3000): **missed**" in text
    assert "sequential" not in text  # only the goals
    assert "load average 3.0 at the start, 4.0 at the end" in text and "median 10%" in text
    assert "| 0 ms provider, 10,000 commands | - commands/s" in text  # not measured: a dash, not a guess


def test_report_without_a_results_file_says_so_in_one_line() -> None:
    done = run("--results", "bench/results/no-such-file.yaml")
    assert done.returncode == 2
    assert (
        done.stderr.startswith("bench.report: cannot read the results file") and done.stderr.count("\n") == 1
    )
    assert "Traceback" not in done.stderr
