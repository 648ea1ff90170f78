"""What a redrive run tells: one printed line and one log line per record, a summary, and metrics.

The tools are short-lived processes, so their metrics go to a Prometheus text file (``--metrics-file``,
e.g. for node_exporter's textfile collector) instead of a scrape endpoint.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import orjson
from prometheus_client import CollectorRegistry, write_to_textfile
from prometheus_client import Counter as PromCounter

from bridge.redrive.select import (
    Action,
    Coordinates,
    DeadLetterView,
    Decision,
    RecordLike,
    histogram,
    view_dead_letter,
)

log = logging.getLogger("bridge.redrive")
_PAST = {Action.REPLAY: "replayed", Action.QUARANTINE: "quarantined", Action.UNREPLAYABLE: "unreplayable"}


class ReplayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.records = PromCounter(
            "bridge_replays_total",
            "Records considered by bridge dlq replay / bridge redrive, by what was done with them.",
            ["kind", "result"],
            registry=self.registry,
        )

    def write(self, path: Path) -> None:
        write_to_textfile(str(path), self.registry)


def result_label(action: Action, dry_run: bool) -> str:
    """The metric and log vocabulary: ``replayed`` (``would_replay`` in a dry run), ``quarantined``, ..."""
    return "would_replay" if dry_run and action is Action.REPLAY else _PAST[action]


@dataclass
class Report:
    kind: str  # "dlq" or "redrive"
    dry_run: bool
    metrics: ReplayMetrics = field(default_factory=ReplayMetrics)
    results: Counter[str] = field(default_factory=Counter)
    reasons: list[str] = field(default_factory=list)

    @property
    def replayed(self) -> int:
        return self.results[result_label(Action.REPLAY, self.dry_run)]

    def record(
        self, at: Coordinates, decision: Decision, reason: str, to: Coordinates | str | None, **extra: object
    ) -> None:
        result = result_label(decision.action, self.dry_run)
        self.results[result] += 1
        self.reasons.append(reason)
        self.metrics.records.labels(self.kind, result).inc()
        command = f"{extra['command_id']}  " if "command_id" in extra else ""
        print(f"{result:13} {at}  {command}{reason:16} -> {to or '-'}  {decision.why}".rstrip(), flush=True)
        fields = {"action": result, "from": str(at), "to": str(to) if to else None, "reason": reason}
        log.info("%s %s %s", self.kind, result, at, extra={**fields, "why": decision.why, **extra})

    def summary(self) -> str:
        totals = ", ".join(f"{n} {name}" for name, n in sorted(self.results.items())) or "nothing selected"
        lines = [f"{self.kind}{' (dry run)' if self.dry_run else ''}: {totals}"]
        if self.reasons:
            lines.append("by reason:")
        lines += [f"  {reason:24} {n}" for reason, n in histogram(self.reasons)]
        return "\n".join(lines)


def age(timestamp_ms: int, now_ms: int) -> str:
    seconds = max(0, now_ms - timestamp_ms) // 1000
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def dead_letter_line(view: DeadLetterView, now_ms: int) -> str:
    source = str(view.source) if view.source else "-"
    return (
        f"{view.at.partition}/{view.at.offset:<6} {age(view.timestamp_ms, now_ms):>4} ago  {view.reason:16}"
        f" from {source}  replays={view.replay_count}  {view.detail}"
    )


def dead_letter_json(view: DeadLetterView) -> str:
    return orjson.dumps(view, default=str).decode()


def describe_record(record: RecordLike, now_ms: int) -> str:
    """``bridge dlq show``: the dead letter's place, age, every header and its value."""
    view = view_dead_letter(record)
    when = datetime.fromtimestamp(record.timestamp / 1000, UTC).isoformat(timespec="seconds")
    lines = [
        f"dead letter  {view.at}  {when} ({age(view.timestamp_ms, now_ms)} ago)",
        f"reason       {view.reason}: {view.detail}",
        f"source       {view.source or '-'}",
        f"replays      {view.replay_count}",
        "headers",
        *(f"  {name}: {value.decode('utf-8', errors='replace')}" for name, value in record.headers),
        f"key          {_text(record.key)}",
        "value",
        _text(record.value),
    ]
    return "\n".join(lines)


def _text(data: bytes | None) -> str:
    if data is None:
        return "(none)"
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return repr(data)
