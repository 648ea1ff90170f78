"""The cost of each guarantee and the issue-26 goals, from one suite run's rows.

The 50 ms scenario runs with the defaults (every guarantee on) and with the ledger, tracking and
parking each off, alternated A/B/A/B in one run; the table shows each variant's commands/s, CPU per
command and HTTP calls per command (tracking's status reads count), medians of the rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from bench.scenarios import Variant
from bench.stats import Row, Target

GUARANTEES = (
    Variant("bridge[ledger off]", timing=False, settings=(("ledger.enabled", False),)),
    Variant("bridge[tracking off]", timing=False, settings=(("targets.*.tracking.enabled", False),)),
    Variant("bridge[parking off]", timing=False, settings=(("parking.enabled", False),)),
)
"""The 50 ms scenario's variants: each guarantee off in turn (the base row has them all on)."""

RATE_50MS = 2500.0
RATE_0MS = 3000.0
CPU_PER_CALL = 2.0
"""CPU per command at most this many times the HTTP-only client's CPU per request, per HTTP call."""
OWN_P99_MS = 20.0


def calls_per_command(row: Row) -> float | None:
    """The HTTP calls the bridge made per command during the run (its calls and status reads)."""
    counted = row.extra.get("http_calls")
    if not counted or not row.commands:
        return None
    return float(counted["calls"] + counted["status_reads"]) / row.commands


def _median(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


@dataclass(frozen=True, slots=True)
class Cost:
    """One variant of the guarantee table: medians over its rounds."""

    kind: str
    rate: float | None
    cpu_ms: float | None
    calls: float | None
    rounds: int

    def ratio_to(self, base: Cost) -> tuple[float | None, float | None]:
        """(commands/s, CPU per command) of this variant ÷ the defaults'."""
        rate = self.rate / base.rate if self.rate and base.rate else None
        cpu = self.cpu_ms / base.cpu_ms if self.cpu_ms and base.cpu_ms else None
        return rate, cpu


def cost_of(rows: Sequence[Row], scenario: str, kind: str) -> Cost:
    mine = [r for r in rows if r.scenario == scenario and r.kind == kind]
    return Cost(
        kind,
        _median([r.rate for r in mine]),
        _median([r.cpu_ms_per_command for r in mine]),
        _median([calls_per_command(r) for r in mine]),
        len(mine),
    )


def guarantee_costs(rows: Sequence[Row], scenario: str) -> list[Cost]:
    return [cost_of(rows, scenario, kind) for kind in ("bridge", *(v.kind for v in GUARANTEES))]


def guarantee_table(costs: Sequence[Cost]) -> str:
    """The costs as a Markdown table; the first row is the defaults."""
    base = costs[0]
    lines = [
        "| run | commands/s | CPU ms/command | HTTP calls/command | commands/s ÷ defaults | CPU ÷ defaults |",
        "|---|---|---|---|---|---|",
    ]
    for cost in costs:
        rate, cpu = cost.ratio_to(base)
        name = "defaults (every guarantee on)" if cost is base else cost.kind
        lines.append(
            f"| {name} | {_n(cost.rate, '{:,.0f}')} | {_n(cost.cpu_ms, '{:.3f}')} | "
            f"{_n(cost.calls, '{:.2f}')} | {_n(rate, '{:.2f}')} | {_n(cpu, '{:.2f}')} |"
        )
    return "\n".join(lines)


def _n(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def cpu_per_call_ratio(rows: Sequence[Row], scenario: str) -> float | None:
    """Bridge CPU per command ÷ (HTTP-only CPU per request x the bridge's HTTP calls per command)."""
    bridge = cost_of(rows, scenario, "bridge")
    http = cost_of(rows, scenario, "http-only")
    if bridge.cpu_ms is None or http.cpu_ms is None or not bridge.calls:
        return None
    return bridge.cpu_ms / (http.cpu_ms * bridge.calls)


def throughput_goals(rows: Sequence[Row], fifty: str, zero: str) -> list[Target]:
    """The issue's goals for the two preloaded scenarios, every guarantee on."""
    return [
        Target(
            fifty,
            "goal: commands/s, every guarantee on",
            cost_of(rows, fifty, "bridge").rate,
            RATE_50MS,
            True,
        ),
        Target(
            zero, "goal: commands/s, every guarantee on", cost_of(rows, zero, "bridge").rate, RATE_0MS, True
        ),
        Target(
            fifty,
            "goal: CPU/command ÷ (HTTP-only CPU/request x HTTP calls/command)",
            cpu_per_call_ratio(rows, fifty),
            CPU_PER_CALL,
            False,
        ),
        Target(
            zero,
            "goal: CPU/command ÷ (HTTP-only CPU/request x HTTP calls/command)",
            cpu_per_call_ratio(rows, zero),
            CPU_PER_CALL,
            False,
        ),
    ]
