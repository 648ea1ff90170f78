"""A command's story: the facts the topics hold about one id, in time order, and where it is now. Pure.

Example::

    story = assemble(facts)
    print(render(story))          # what ``bridge status ID`` prints
    body = story_json(story)      # what ``GET /v1/commands/{id}`` returns
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from bridge.status.facts import (
    CommandSeen,
    DeadLetterSeen,
    LedgerSeen,
    LifecycleSeen,
    OutcomeSeen,
    ParkedSeen,
    Where,
)

ID_REUSED = "id_reused"
_RANK = {"received": 0, "duplicate_absorbed": 2}  # at the same instant: received first, absorbed last


class Phase(StrEnum):
    """Where the command is now (its first record, or the one that was answered)."""

    UNKNOWN = "unknown"  # no topic holds the id (within the partitions its key maps to)
    NOT_CONSUMED = "not_consumed"  # in its command topic; the group has not reached it
    WAITING = "waiting"  # fetched by its owner, queued behind an earlier command of its key
    IN_FLIGHT = "in_flight"  # dispatched to its target, not answered yet
    PARKED = "parked"  # waiting in the parking topic until its target is back (or its deadline)
    ANSWERED = "answered"  # its outcome event is published
    DEAD_LETTERED = "dead_lettered"  # published to the dead-letter topic instead of an outcome
    ABSORBED = "absorbed"  # consumed without an outcome: the ledger knew the id as done


@dataclass(frozen=True, slots=True)
class Progress:
    """The consumer group's position in one command partition."""

    topic: str
    partition: int
    committed: int | None  # next offset the group will read; None: nothing committed yet
    end: int  # the partition's high watermark when it was read


@dataclass(frozen=True, slots=True)
class Live:
    """What only the member that owns the partition knows, at the moment it was asked."""

    member: str
    queued_behind: int | None = None  # offset of the earlier command of its key it waits for
    in_flight: bool = False
    attempt: int | None = None
    next_attempt_at_ms: int | None = None
    circuit: str | None = None  # the target's circuit: closed, open or half_open


@dataclass
class Facts:
    command_id: str
    key: bytes
    partitions: dict[str, int] = field(default_factory=dict)  # each command topic -> partition read
    commands: list[CommandSeen] = field(default_factory=list)
    ledger: list[LedgerSeen] = field(default_factory=list)
    parked: list[ParkedSeen] = field(default_factory=list)
    outcomes: list[OutcomeSeen] = field(default_factory=list)
    dead_letters: list[DeadLetterSeen] = field(default_factory=list)
    lifecycle: list[LifecycleSeen] = field(default_factory=list)
    progress: dict[tuple[str, int], Progress] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what the lookup did not read, and why


@dataclass(frozen=True, slots=True)
class Step:
    at_ms: int
    kind: str
    text: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Story:
    command_id: str
    key: str
    phase: Phase
    summary: str
    steps: tuple[Step, ...]
    record: Where | None = None  # the command record the phase is about
    workflow: str | None = None  # the last lifecycle status, when its workflow is tracked
    live: Live | None = None
    payload: dict[str, Any] | None = None
    notes: tuple[str, ...] = ()  # what the lookup did not read, and what stood in for it


def assemble(facts: Facts, live: Live | None = None) -> Story:
    key = facts.key.decode("utf-8", "replace")
    if not (facts.commands or facts.outcomes or facts.dead_letters or facts.parked):
        summary = "unknown id: no topic holds it"
        return Story(facts.command_id, key, Phase.UNKNOWN, summary, (), notes=tuple(facts.notes))
    primary = _primary(facts)
    steps = [*_command_steps(facts, primary), *_other_steps(facts)]
    steps.sort(key=lambda step: (step.at_ms, _RANK.get(step.kind, 1)))
    phase, summary = _phase(facts, primary, live)
    workflow = max(facts.lifecycle, key=lambda e: e.sequence).status if facts.lifecycle else None
    if workflow is not None:
        summary += f"; workflow {workflow}"
    payload = next((c.payload for c in facts.commands if c.where == primary), None)
    return Story(
        facts.command_id,
        key,
        phase,
        summary,
        tuple(steps),
        primary,
        workflow,
        live,
        payload,
        tuple(facts.notes),
    )


def _primary(facts: Facts) -> Where | None:
    """The record whose fate is the command's: the answered one, else the dead-lettered one (not a
    reused id), else the parked one, else the one the ledger dispatched, else the first."""
    answered = [o.source for o in facts.outcomes]
    lettered = [d.source for d in facts.dead_letters if d.source is not None and d.reason != ID_REUSED]
    parked = [p.command for p in facts.parked]
    dispatched = [
        Where(e.topic, facts.partitions.get(e.topic, -1), e.command_offset)
        for e in facts.ledger
        if e.command_offset is not None and e.command_offset >= 0
    ]
    for found in (answered, lettered, parked, dispatched):
        if found:
            return min(found, key=lambda w: w.offset)
    first = min(facts.commands, key=lambda c: (c.timestamp_ms, c.where.offset), default=None)
    return first.where if first else None


def _command_steps(facts: Facts, primary: Where | None) -> list[Step]:
    steps = []
    refused = {d.source for d in facts.dead_letters if d.reason == ID_REUSED}
    answered = [o.at_ms for o in facts.outcomes if o.source == primary]
    for seen in facts.commands:
        w = seen.where
        fields = {
            "topic": w.topic,
            "partition": w.partition,
            "offset": w.offset,
            "time": iso(seen.timestamp_ms),
        }
        fields["key"] = seen.key.decode("utf-8", "replace") if seen.key is not None else None
        steps.append(Step(seen.timestamp_ms, "received", f"received  {w}", fields))
        if w == primary or w in refused:
            continue  # the primary's fate is the phase; a refused reuse has its dead letter step
        progress = facts.progress.get((w.topic, w.partition))
        if progress is not None and progress.committed is not None and w.offset < progress.committed:
            text = f"duplicate absorbed  {w}: the id was already done; no call, no second outcome"
            at = max([seen.timestamp_ms, *answered])  # absorbed once the first one was done
            steps.append(Step(at, "duplicate_absorbed", text, {"record": str(w)}))
        else:
            steps.append(
                Step(seen.timestamp_ms, "not_consumed", f"not consumed yet  {w}", {"record": str(w)})
            )
    return steps


def _other_steps(facts: Facts) -> list[Step]:
    steps = []
    for e in facts.ledger:
        if e.state == "dispatched":
            text = f"dispatched  attempt {e.attempt}"
            steps.append(
                Step(e.at_ms, "dispatched", text, {"attempt": e.attempt, "offset": e.command_offset})
            )
        elif e.state == "released":
            text = "released: parked after its dispatch, it runs again when it comes back"
            steps.append(Step(e.at_ms, "released", text, {}))
    for p in facts.parked:
        fields = {"reason": p.reason, "due": iso(p.due_ms), "until": iso(p.until_ms), "times": p.count}
        text = "parked  " + "  ".join(f"{name}={value or '-'}" for name, value in fields.items())
        steps.append(Step(p.at_ms, "parked", text, {**fields, "record": str(p.where)}))
    steps += [
        Step(o.at_ms, "answered", "answered  " + _outcome_text(o), _outcome_fields(o)) for o in facts.outcomes
    ]
    for d in facts.dead_letters:
        kind = "id_reused" if d.reason == ID_REUSED else "dead_lettered"
        text = "refused: id reused with another payload" if kind == "id_reused" else "dead-lettered"
        text += f"  reason={d.reason}  {d.detail}  {d.where}"
        fields = {"reason": d.reason, "detail": d.detail, "record": str(d.where)}
        steps.append(Step(d.at_ms, kind, text, {**fields, "source": str(d.source) if d.source else None}))
    for event in sorted(facts.lifecycle, key=lambda e: e.sequence):
        steps.append(_lifecycle_step(event))
    return steps


def _lifecycle_step(e: LifecycleSeen) -> Step:
    text = f"workflow {e.status}  provider={e.provider_status or '-'}"
    text += f"  waiting_for={e.waiting_for}" if e.waiting_for else ""
    text += f"  [{e.detail}]" if e.detail else ""
    fields = {"status": e.status, "provider_status": e.provider_status, "sequence": e.sequence}
    fields |= {"waiting_for": e.waiting_for, "detail": e.detail}
    return Step(e.at_ms, "lifecycle", text, fields)


def _phase(facts: Facts, primary: Where | None, live: Live | None) -> tuple[Phase, str]:
    outcome = next((o for o in facts.outcomes if o.source == primary), None)
    if outcome is not None:
        return Phase.ANSWERED, "answered: " + _outcome_text(outcome)
    letter = next((d for d in facts.dead_letters if d.source == primary), None)
    if letter is not None:
        return Phase.DEAD_LETTERED, f"dead-lettered: {letter.reason} ({letter.detail})"
    if live is not None and live.queued_behind is not None:
        return Phase.WAITING, f"waiting behind offset {live.queued_behind} of its key"
    if live is not None and live.in_flight:
        return Phase.IN_FLIGHT, "in flight now" + _live_text(live)
    parked = [p for p in facts.parked if p.command == primary]
    if parked:
        last = max(parked, key=lambda p: (p.count, p.at_ms))
        return Phase.PARKED, (
            f"parked: {last.reason or 'target unavailable'}, due {iso(last.due_ms)}, "
            f"answered by {iso(last.until_ms)} at the latest (parked {last.count} time(s))"
        )
    progress = facts.progress.get((primary.topic, primary.partition)) if primary else None
    behind = (
        progress is None
        or progress.committed is None
        or primary is None
        or primary.offset >= progress.committed
    )
    dispatched = [
        e for e in facts.ledger if e.state == "dispatched" and primary and e.command_offset == primary.offset
    ]
    if dispatched and behind:
        return Phase.IN_FLIGHT, f"dispatched (attempt {dispatched[-1].attempt}), not answered yet"
    if primary is not None and progress is not None and behind:
        committed = progress.committed or 0
        return Phase.NOT_CONSUMED, (
            f"not consumed yet: {primary.offset - committed} record(s) before it in "
            f"{primary.topic}[{primary.partition}] (group at {committed}, lag {progress.end - committed})"
        )
    if primary is not None and not behind:
        return (
            Phase.ABSORBED,
            "consumed without an outcome: absorbed as a duplicate of a command already done",
        )
    return Phase.NOT_CONSUMED, "not consumed yet"


def _live_text(live: Live) -> str:
    parts = [f", attempt {live.attempt}" if live.attempt else ""]
    if live.next_attempt_at_ms:
        parts.append(f", next attempt at {iso(live.next_attempt_at_ms)}")
    return "".join(parts)


def _outcome_text(o: OutcomeSeen) -> str:
    text = o.status + (f"  ref={o.provider_ref}" if o.provider_ref else "")
    text += f"  http={o.http_status}" if o.http_status else ""
    text += f"  attempts={o.attempts}"
    return text + (f"  [{o.error_kind}] {o.error_message}" if o.error_kind else "")


def _outcome_fields(o: OutcomeSeen) -> dict[str, Any]:
    return {
        "status": o.status,
        "provider_ref": o.provider_ref,
        "http_status": o.http_status,
        "attempts": o.attempts,
        "error_kind": o.error_kind,
        "error_message": o.error_message,
        "record": str(o.where),
        "source": str(o.source),
    }


def iso(ms: int | None) -> str | None:
    if ms is None or ms < 0:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def render(story: Story) -> str:
    """The text ``bridge status`` prints: a head line, the state, then one line per step."""
    lines = [
        f"command {story.command_id}  key {story.key}" + (f"  record {story.record}" if story.record else "")
    ]
    lines.append(f"state: {story.phase.value}  ({story.summary})")
    if story.live is not None:
        live = story.live
        circuit = f"  circuit={live.circuit}" if live.circuit else ""
        lines.append(f"owner: {live.member}{circuit}")
    lines += [f"  {iso(step.at_ms) or '-':24}  {step.text}" for step in story.steps]
    lines += [f"note: {note}" for note in story.notes]
    return "\n".join(lines)


def story_json(story: Story, *, payload: bool = False) -> dict[str, Any]:
    """The JSON body of ``GET /v1/commands/{id}`` and of ``bridge status --json``."""
    body: dict[str, Any] = {
        "command_id": story.command_id,
        "key": story.key,
        "state": story.phase.value,
        "summary": story.summary,
        "record": None if story.record is None else _where_json(story.record),
        "workflow": story.workflow,
        "steps": [{"at": iso(s.at_ms), "kind": s.kind, "text": s.text, **s.fields} for s in story.steps],
        "notes": list(story.notes),
    }
    if story.live is not None:
        live = story.live
        body["owner"] = {
            "member": live.member,
            "queued_behind": live.queued_behind,
            "in_flight": live.in_flight,
            "attempt": live.attempt,
            "next_attempt_at": iso(live.next_attempt_at_ms),
            "circuit": live.circuit,
        }
    if payload:
        body["payload"] = story.payload
    return body


def _where_json(where: Where) -> dict[str, Any]:
    return {"topic": where.topic, "partition": where.partition, "offset": where.offset}
