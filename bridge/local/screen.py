"""What ``bridge local`` prints: one line of at most 80 columns per event, and a tally of what it saw.

Pure: no I/O. :mod:`bridge.local.watch` reads the topics and hands each record's parts here.
A line is ``STATUS  COMMAND  OPERATION  facts``; a command id loses the run's own prefix (``demo-HHMMSS-``)
and is shortened in the middle when still too long; the facts are cut with "…" at the edge.

Example::

    tally = Tally()
    tally.command(("workflow.run.commands", 0, 7), b'{"id": "demo-1-a", ...}')
    print(outcome_line(event["data"], prefix="demo-1-"))
    tally.outcome(event["data"])
    print("\\n".join(tally.summary()))
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

WIDTH = 80
STATUS_WIDTH = 9
ID_WIDTH = 21
OPERATION_WIDTH = 19
ELLIPSIS = "…"

OUTCOME_STATUSES = ("queued", "applied", "conflict", "rejected", "error")
RUN_STATES = ("completed", "failed", "stopped", "lost", "waiting", "running")
TERMINAL = frozenset({"completed", "failed", "stopped", "lost"})

Source = tuple[str, int, int]
"""A record's topic, partition and offset."""

# error kinds the status and the HTTP code already say: their room goes to the message
_SAID_BY_STATUS = frozenset({"provider_rejected", "conflict"})
# "provider rejected the command (404): ELEMENT_NOT_EXIST..." -> the part after the status says more
_STATUS_PREFIX = re.compile(r"^[^():]*\((\d{3})\):\s*")


def fit(text: str, width: int = WIDTH) -> str:
    """``text`` on one line (its line breaks and tabs become spaces), cut to ``width`` with an ellipsis."""
    flat = re.sub(r"[\r\n\t]+", " ", text)
    return flat if len(flat) <= width else flat[: width - 1] + ELLIPSIS


def short_id(command_id: str, prefix: str = "", width: int = ID_WIDTH) -> str:
    """The id without the run's prefix; too long still: its head and its tail around an ellipsis."""
    if prefix and command_id.startswith(prefix) and len(command_id) > len(prefix):
        command_id = command_id[len(prefix) :]
    if len(command_id) <= width:
        return command_id
    tail = min(8, width // 3)
    return command_id[: width - tail - 1] + ELLIPSIS + command_id[-tail:]


def line(status: str, name: str, operation: str, facts: str) -> str:
    cols = [
        f"{fit(status, STATUS_WIDTH):<{STATUS_WIDTH}}",
        f"{name:<{ID_WIDTH}}",
        f"{fit(operation, OPERATION_WIDTH):<{OPERATION_WIDTH}}",
        " ".join(facts.split()),
    ]
    return fit(" ".join(cols)) if facts else " ".join(cols).rstrip()


def header(prefix: str) -> str:
    """The column titles; the ids below lose ``prefix`` (the run's), so the title shows it once."""
    return line("STATUS", short_id(f"ID {prefix}{ELLIPSIS}" if prefix else "ID"), "OPERATION", "FACTS")


def _attempts(n: int) -> str:
    return f"{n} attempts" if n > 1 else ""


def error_facts(data: Mapping[str, Any]) -> str:
    """``401 auth, 2 attempts: credentials refused``: HTTP status, error kind (unless the outcome's
    status says it), retries, then the message without its own "(404): " preamble."""
    error = data.get("error") or {}
    http = data.get("http_status")
    message = str(error.get("message", ""))
    found = _STATUS_PREFIX.match(message)
    if found and http and found.group(1) == str(http):
        message = message[found.end() :]
    kind = None if error.get("kind") in _SAID_BY_STATUS else error.get("kind")
    lead = " ".join(str(p) for p in (http, kind) if p)
    head = ", ".join(p for p in (lead, _attempts(data.get("attempts", 0))) if p)
    return f"{head}: {message}" if message else head


def outcome_line(data: Mapping[str, Any], prefix: str = "") -> str:
    status = str(data.get("status", "?"))
    if data.get("error"):
        facts = error_facts(data)
    else:
        ref = f"ref {data['provider_ref']}" if data.get("provider_ref") else ""
        http = f"http {data['http_status']}" if data.get("http_status") else ""
        facts = ", ".join(p for p in (ref, http, _attempts(data.get("attempts", 0))) if p)
    name = short_id(str(data.get("command_id", "?")), prefix)
    return line(status, name, str(data.get("operation") or "-"), facts)


def lifecycle_line(data: Mapping[str, Any], prefix: str = "") -> str:
    """``Suspended, waits for resume, 2.0s``: the provider's word first, the time since queued last."""
    facts = str(data.get("provider_status") or "?")
    if data.get("waiting_for"):
        facts += f", waits for {data['waiting_for']}"
    facts += f", {float(data.get('tracked_for_s') or 0):.1f}s"
    if data.get("detail"):
        facts += f": {data['detail']}"
    name = short_id(str(data.get("command_id", "?")), prefix)
    return line(str(data.get("status", "?")), name, str(data.get("operation") or "-"), facts)


def dead_letter_line(key: bytes | None, headers: Mapping[str, str], prefix: str = "") -> str:
    """A dead letter has no trustworthy id: its Kafka key names it."""
    name = short_id(f"key {key.decode(errors='replace')}", prefix) if key else "(no key)"
    return line("dlq", name, headers.get("dlq.reason", "?"), headers.get("dlq.detail", ""))


def repeat_line(command_id: str, operation: str, prefix: str = "") -> str:
    return line("again", short_id(command_id, prefix), operation, "same id sent again")


def trace_line(command: str, trace_id: str, span_names: Sequence[str]) -> str:
    """``--traces``: a trace's first 8 hex digits and its calls; the root "process" span is implied."""
    kept = [n.split(" ")[0] if n.startswith("publish ") else n for n in span_names]
    steps = " > ".join(n for n in kept if not n.startswith("process ")) or "no call, nothing published"
    return fit(f"{'trace':<{STATUS_WIDTH}} {command:<{ID_WIDTH}} {trace_id[:8]} {steps}")


def command_fields(value: bytes | None) -> tuple[str | None, str]:
    """The id and operation of a command record's value (CloudEvent or bare); no id: not a command."""
    try:
        doc = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return None, "-"
    data = doc.get("data") if isinstance(doc, dict) and "specversion" in doc else doc
    if not isinstance(doc, dict) or not isinstance(data, dict):
        return None, "-"
    command_id = doc.get("id") if "specversion" in doc else data.get("id")
    return (str(command_id) if command_id is not None else None), str(data.get("operation") or "-")


def source_of(data: Mapping[str, Any]) -> Source | None:
    src = data.get("source")
    if not isinstance(src, Mapping):
        return None
    return str(src.get("topic")), int(src.get("partition", -1)), int(src.get("offset", -1))


@dataclass
class Tally:
    """What was seen on the topics; the summary is computed from it, nothing is assumed."""

    commands: dict[Source, str | None] = field(default_factory=dict)
    """Every command record, and its id (None: not a readable command)."""
    answered: set[Source] = field(default_factory=set)
    dead: set[Source] = field(default_factory=set)
    outcomes: Counter[str] = field(default_factory=Counter)
    dead_letters: int = 0
    answered_ids: set[str] = field(default_factory=set)
    queued_ids: set[str] = field(default_factory=set)
    runs: dict[str, str] = field(default_factory=dict)
    """Command id -> the last lifecycle status seen."""

    def command(self, source: Source, command_id: str | None) -> bool:
        """Count a command record; True when its id was seen on an earlier record."""
        repeat = command_id is not None and command_id in self.commands.values()
        self.commands[source] = command_id
        return repeat

    def outcome(self, data: Mapping[str, Any]) -> None:
        status = str(data.get("status", "?"))
        self.outcomes[status] += 1
        self.answered_ids.add(str(data.get("command_id")))
        if status == "queued":
            self.queued_ids.add(str(data.get("command_id")))
        source = source_of(data)
        if source is not None:
            self.answered.add(source)

    def dead_letter(self, source: Source | None) -> None:
        self.dead_letters += 1
        if source is not None:
            self.dead.add(source)

    def lifecycle(self, data: Mapping[str, Any]) -> None:
        self.runs[str(data.get("command_id"))] = str(data.get("status", "?"))

    def _unanswered(self) -> list[str | None]:
        done = self.answered | self.dead
        return [cid for src, cid in self.commands.items() if src not in done]

    @property
    def absorbed(self) -> int:
        """Records with no outcome of their own whose id was answered on another record."""
        return sum(1 for cid in self._unanswered() if cid in self.answered_ids)

    @property
    def pending(self) -> int:
        return sum(1 for cid in self._unanswered() if cid not in self.answered_ids)

    def settled(self, expected_commands: int) -> bool:
        """Every command answered (or absorbed), and every queued run ended or waits on a person."""
        if len(self.commands) < expected_commands or self.pending:
            return False
        return all(self.runs.get(cid) in TERMINAL | {"waiting"} for cid in self.queued_ids)

    def summary(self) -> list[str]:
        n = len(self.commands)
        first = [
            f"{_count(n, 'command')}: {_count(sum(self.outcomes.values()), 'outcome')}",
            _count(self.dead_letters, "dead letter"),
            f"{_count(self.absorbed, 'duplicate')} absorbed",
        ]
        if self.pending:
            first.append(f"{self.pending} pending")
        order = [*OUTCOME_STATUSES, *sorted(set(self.outcomes) - set(OUTCOME_STATUSES))]
        outcomes = ", ".join(f"{self.outcomes[s]} {s}" for s in order if self.outcomes[s])
        states = Counter(self.runs.values())
        runs = ", ".join(f"{states[s]} {s}" for s in RUN_STATES if states[s])
        return [fit(", ".join(first)), fit(f"outcomes: {outcomes or 'none'}"), fit(f"runs: {runs or 'none'}")]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
