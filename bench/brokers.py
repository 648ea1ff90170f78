"""The same benchmark on the embedded Tansu and on Apache Kafka in one run (``--broker both``).

Each broker gets its own start (broker, sandbox, fresh topics); with ``--broker-rounds N`` the brokers
alternate (tansu, kafka, tansu, kafka, ...) so that the machine's changing load hits both alike. Rows
are named ``<broker>/<scenario>``; the comparison takes, for every scenario and run present on both
brokers, the median over the rounds of each figure and the ratio Kafka ÷ Tansu.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from bench.stats import Row, Target, ratio

BROKERS = ("tansu", "kafka")


def broker_order(choice: str, rounds: int) -> list[str]:
    """``both`` -> tansu, kafka repeated ``rounds`` times; one broker -> that broker, once."""
    return [*BROKERS] * max(1, rounds) if choice == "both" else [choice]


def tagged_rows(rows: Sequence[Row], broker: str, number: int) -> Iterator[Row]:
    for row in rows:
        row.scenario = f"{broker}/{row.scenario}"
        row.extra.update(broker=broker, broker_round=number)
        yield row


def tagged_targets(targets: Sequence[Target], broker: str) -> Iterator[Target]:
    for t in targets:
        yield Target(f"{broker}/{t.scenario}", t.what, t.value, t.threshold, t.at_least)


def tagged_checks(checks: dict[str, Any], broker: str, number: int) -> dict[str, Any]:
    return {f"{broker}/{label}@{number}": check for label, check in checks.items()}


FIGURES: tuple[tuple[str, Callable[[Row], float | None], str], ...] = (
    ("cmds/s", lambda r: r.rate if r.commands else None, "{:,.0f}"),
    ("CPU ms/cmd", lambda r: r.cpu_ms_per_command, "{:.3f}"),
    ("broker CPU ms/cmd", lambda r: _broker_cpu_ms(r), "{:.3f}"),
    ("added p50 ms", lambda r: r.added_p50_ms, "{:,.1f}"),
    ("added p99 ms", lambda r: r.added_p99_ms, "{:,.1f}"),
    ("foreign load", lambda r: r.extra.get("foreign_share"), "{:.0%}"),
)


def _broker_cpu_ms(row: Row) -> float | None:
    """The broker's CPU during the whole bridge run (start-up and group join included) per command."""
    cpu = (row.extra.get("other_cpu_s") or {}).get("broker")
    return cpu * 1000 / row.commands if cpu is not None and row.commands else None


def _median(rows: Sequence[Row], get: Callable[[Row], float | None]) -> float | None:
    values = [v for r in rows if (v := get(r)) is not None]
    return statistics.median(values) if values else None


def comparison(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """One entry per (scenario, run) measured on both brokers: each figure's medians and Kafka ÷ Tansu."""
    grouped: dict[tuple[str, str], dict[str, list[Row]]] = {}
    for row in rows:
        broker = row.extra.get("broker")
        if broker not in BROKERS:
            continue
        scenario = row.scenario.split("/", 1)[1]
        grouped.setdefault((scenario, row.kind), {b: [] for b in BROKERS})[broker].append(row)
    found = []
    for (scenario, kind), by_broker in grouped.items():
        if not all(by_broker.values()):
            continue
        entry: dict[str, Any] = {"scenario": scenario, "run": kind, "rounds": len(by_broker["kafka"])}
        for name, get, _ in FIGURES:
            tansu, kafka = _median(by_broker["tansu"], get), _median(by_broker["kafka"], get)
            entry[name] = {"tansu": tansu, "kafka": kafka, "kafka/tansu": ratio(kafka, tansu)}
        found.append(entry)
    return found


def comparison_table(entries: Sequence[dict[str, Any]]) -> str:
    """The comparison as a Markdown table: ``tansu | kafka | ratio`` for each figure."""
    if not entries:
        return ""
    head = ["scenario", "run", "rounds"]
    for name, _, _ in FIGURES:
        head += [f"{name} tansu", f"{name} kafka", "k/t" if name != "foreign load" else ""]
    head = [h for h in head if h]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for e in entries:
        cells = [e["scenario"], e["run"], str(e["rounds"])]
        for name, _, fmt in FIGURES:
            tansu, kafka, rel = (e[name][k] for k in ("tansu", "kafka", "kafka/tansu"))
            cells += [_fmt(tansu, fmt), _fmt(kafka, fmt)]
            if name != "foreign load":
                cells.append(_fmt(rel, "{:.2f}"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)
