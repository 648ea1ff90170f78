"""Figures of one scenario row, the targets of the issue, the table and the JSON report."""

from __future__ import annotations

import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

RESULTS_DIR = Path(__file__).parent / "results"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass
class Row:
    """One line of the table: the bridge or a baseline in one scenario."""

    scenario: str
    kind: str  # bridge | sequential | http-only | kafka-only
    commands: int
    seconds: float
    latency_ms: float
    e2e_p50_ms: float | None = None
    e2e_p99_ms: float | None = None
    added_p50_ms: float | None = None
    added_p99_ms: float | None = None
    service_p50_ms: float | None = None
    service_p99_ms: float | None = None
    peak_rss_mb: float | None = None
    cpu_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.commands / self.seconds if self.seconds > 0 else 0.0

    @property
    def cpu_ms_per_command(self) -> float | None:
        return self.cpu_s * 1000 / self.commands if self.cpu_s is not None and self.commands else None

    def with_latencies(self, e2e_ms: Sequence[float]) -> Row:
        self.e2e_p50_ms = percentile(e2e_ms, 0.50)
        self.e2e_p99_ms = percentile(e2e_ms, 0.99)
        added = [v - self.latency_ms for v in e2e_ms]
        self.added_p50_ms = percentile(added, 0.50)
        self.added_p99_ms = percentile(added, 0.99)
        return self

    def with_service(self, service_ms: Sequence[float]) -> Row:
        """Time spent on one command once picked up (no backlog wait)."""
        self.service_p50_ms = percentile(service_ms, 0.50)
        self.service_p99_ms = percentile(service_ms, 0.99)
        return self

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "commands_per_s": round(self.rate, 1)}


@dataclass(frozen=True, slots=True)
class Target:
    scenario: str
    what: str
    value: float | None
    threshold: float
    at_least: bool

    @property
    def passed(self) -> bool:
        if self.value is None:
            return False
        return self.value >= self.threshold if self.at_least else self.value <= self.threshold

    def line(self) -> str:
        op = ">=" if self.at_least else "<="
        shown = "n/a" if self.value is None else f"{self.value:,.2f}"
        verdict = "PASS" if self.passed else "MISS"
        return f"{verdict}  {self.scenario}: {self.what} = {shown} (target {op} {self.threshold:g})"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


FASTSTREAM_KINDS = ("faststream", "faststream-workers", "faststream-partitions")


def _medians(values: dict[str, list[float | None]]) -> dict[str, float | None]:
    found = {kind: [v for v in vs if v is not None] for kind, vs in values.items()}
    return {kind: statistics.median(vs) if vs else None for kind, vs in found.items()}


def ratios(rows: Sequence[Row], scenario: str) -> dict[str, float | None]:
    """bridge ÷ each baseline of the same scenario (commands/s; CPU per command ÷ per HTTP request),
    each the median over the rounds of that run."""
    mine = [r for r in rows if r.scenario == scenario]
    rate = _medians({r.kind: [x.rate for x in mine if x.kind == r.kind] for r in mine})
    cpu = _medians({r.kind: [x.cpu_ms_per_command for x in mine if x.kind == r.kind] for r in mine})
    bridge = rate.get("bridge")
    found = {
        "x_sequential": ratio(bridge, rate.get("sequential")),
        "of_http_only": ratio(bridge, rate.get("http-only")),
        "of_kafka_only": ratio(bridge, rate.get("kafka-only")),
        "cpu_vs_http": ratio(cpu.get("bridge"), cpu.get("http-only")),
    }
    for kind in FASTSTREAM_KINDS:
        if kind in rate:
            found[f"x_{kind}"] = ratio(bridge, rate[kind])
    return found


def _num(value: float | None, fmt: str = "{:,.1f}") -> str:
    return "-" if value is None else fmt.format(value)


def _pair(a: float | None, b: float | None) -> str:
    return f"{_num(a)} / {_num(b)}"


HEADER = (
    "scenario",
    "run",
    "cmds/s",
    "e2e p50/p99 ms",
    "svc p50/p99 ms",
    "added p50/p99 ms",
    "RSS MB",
    "CPU s",
    "CPU ms/cmd",
    "x seq",
    "/HTTP",
    "/Kafka",
)


def table(rows: Sequence[Row]) -> str:
    lines = [HEADER]
    for row in rows:
        rel = ratios(rows, row.scenario) if row.kind == "bridge" else {}
        lines.append(
            (
                row.scenario,
                row.kind,
                _num(row.rate),
                _pair(row.e2e_p50_ms, row.e2e_p99_ms),
                _pair(row.service_p50_ms, row.service_p99_ms),
                _pair(row.added_p50_ms, row.added_p99_ms),
                _num(row.peak_rss_mb),
                _num(row.cpu_s, "{:,.2f}"),
                _num(row.cpu_ms_per_command, "{:.3f}"),
                _num(rel.get("x_sequential")),
                _num(rel.get("of_http_only"), "{:.0%}"),
                _num(rel.get("of_kafka_only"), "{:.0%}"),
            )
        )
    return _render(lines)


def _render(lines: Sequence[Sequence[str]]) -> str:
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    out = [" | ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)) for line in lines]
    out.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(out)


PHASE_HEADER = ("fetch wait", "key wait", "provider", "own", "outcome")
"""The phases of bench/decompose.py, in order."""


def phase_table(rows: Sequence[Row]) -> str:
    """p50 / p99 ms of each phase (bench/decompose.py) for every run that carried the timing header."""
    titles = (f"{h} p50/p99" for h in PHASE_HEADER)
    lines: list[tuple[str, ...]] = [("scenario", "run", *titles, "e2e p50/p99")]
    for row in rows:
        found = row.extra.get("phases") or {}
        if found:
            cells = tuple(_pair(*found[name]) for name in PHASE_HEADER)
            lines.append((row.scenario, row.kind, *cells, _pair(row.e2e_p50_ms, row.e2e_p99_ms)))
    return _render(lines) if len(lines) > 1 else ""


def write_json(args: dict[str, Any], rows: Sequence[Row], targets: Sequence[Target]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    scenarios = sorted({r.scenario for r in rows})
    doc = {
        "args": args,
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "rows": [r.to_json() for r in rows],
        "ratios": {s: ratios(rows, s) for s in scenarios},
        "targets": [{**asdict(t), "passed": t.passed} for t in targets],
    }
    path.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2))
    return path
