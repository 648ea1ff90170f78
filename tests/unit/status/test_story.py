"""The story of a command, assembled from facts (bridge/status/facts.py, bridge/status/story.py)."""

from __future__ import annotations

import itertools

import orjson
import pytest

from bridge.ledger.entries import DoneFields, encode_dispatched, encode_done, entry_key
from bridge.messages.commands import CommandFamily
from bridge.messages.outcomes import OutcomeData, SourceRecord, Status, encode_outcome
from bridge.messages.wire import Header
from bridge.parking.records import ParkedAt, parked_headers
from bridge.status.facts import (
    CommandSeen,
    DeadLetterSeen,
    LedgerSeen,
    LifecycleSeen,
    OutcomeSeen,
    ParkedSeen,
    RawRecord,
    Where,
    read_command,
    read_dead_letter,
    read_ledger,
    read_outcome,
    read_parking,
)
from bridge.status.lookup import needles, parse_since, partition_of
from bridge.status.story import Facts, Live, Phase, Progress, assemble, render, story_json
from tests.unit.test_layout import reachable

RUN = "workflow.run.commands"
T0 = 1_764_900_000_000
CMD = Where(RUN, 2, 100)


def command(offset: int = 100, at: int = T0) -> CommandSeen:
    return CommandSeen(Where(RUN, 2, offset), at, b"cmd-1", "z", "zilliant.queue_job", {"id": "cmd-1"})


def facts(*commands: CommandSeen, committed: int | None = None, end: int = 101) -> Facts:
    f = Facts("cmd-1", b"cmd-1", {RUN: 2}, list(commands))
    f.progress = {(RUN, 2): Progress(RUN, 2, committed, end)}
    return f


def outcome(source: Where = CMD, at: int = T0 + 50, status: str = "queued") -> OutcomeSeen:
    return OutcomeSeen(Where("o", 2, 7), at, source, status, "job-1", 202, 1, None, None)


def test_nothing_found_is_an_unknown_id() -> None:
    story = assemble(Facts("cmd-1", b"cmd-1"))
    assert story.phase is Phase.UNKNOWN and story.steps == ()
    assert story_json(story)["state"] == "unknown"


def test_what_was_not_read_is_said_in_text_and_json() -> None:
    facts = Facts("cmd-1", b"cmd-1", notes=["t[0]: offsets 5-90: the ledger of pod-1 stood in"])
    story = assemble(facts)
    assert story.phase is Phase.UNKNOWN
    assert render(story).splitlines()[-1] == "note: t[0]: offsets 5-90: the ledger of pod-1 stood in"
    assert story_json(story)["notes"] == ["t[0]: offsets 5-90: the ledger of pod-1 stood in"]
    assert story_json(assemble(Facts("cmd-1", b"cmd-1")))["notes"] == []


def test_a_record_the_group_has_not_reached_is_not_consumed_with_its_lag() -> None:
    story = assemble(facts(command(100), committed=97, end=105))
    assert story.phase is Phase.NOT_CONSUMED
    assert story.summary == (f"not consumed yet: 3 record(s) before it in {RUN}[2] (group at 97, lag 8)")
    assert [s.kind for s in story.steps] == ["received"]


def test_answered_then_duplicate_absorbed_then_reused_id_in_time_order() -> None:
    f = facts(command(100), command(101, T0 + 60), command(102, T0 + 70), committed=103)
    f.ledger = [LedgerSeen(RUN, "dispatched", T0 + 10, 100, 1), LedgerSeen(RUN, "done", T0 + 55, 100, 1)]
    f.outcomes = [outcome()]
    f.dead_letters = [DeadLetterSeen(Where("dlq", 0, 3), T0 + 80, Where(RUN, 2, 102), "id_reused", "x")]
    story = assemble(f)
    assert story.phase is Phase.ANSWERED and story.record == CMD
    assert story.summary == "answered: queued  ref=job-1  http=202  attempts=1"
    kinds = [s.kind for s in story.steps]
    assert kinds == [
        "received",
        "dispatched",
        "answered",
        "received",
        "duplicate_absorbed",
        "received",
        "id_reused",
    ]
    early = facts(command(100), command(101, T0 + 1), committed=102)
    early.outcomes = [outcome()]
    kinds = [s.kind for s in assemble(early).steps]  # a duplicate sent before the first was answered
    assert kinds == ["received", "received", "answered", "duplicate_absorbed"]
    assert [s.at_ms for s in story.steps] == sorted(s.at_ms for s in story.steps)


def test_a_parked_command_says_why_and_until_when() -> None:
    f = facts(command(100), committed=101)
    f.parked = [
        ParkedSeen(Where("p", 2, 0), CMD, T0 + 5, T0 + 30_000, T0 + 3_600_000, 1, "circuit_open"),
        ParkedSeen(Where("p", 2, 1), CMD, T0 + 31_000, T0 + 60_000, T0 + 3_600_000, 2, "circuit_open"),
    ]
    story = assemble(f)
    assert story.phase is Phase.PARKED
    assert story.summary.startswith("parked: circuit_open, due 2025-12-05T02:01:00.000Z")
    assert story.summary.endswith("(parked 2 time(s))")


def test_a_parked_command_answered_later_is_answered_with_its_parking_in_the_story() -> None:
    f = facts(command(100), committed=101)
    f.parked = [ParkedSeen(Where("p", 2, 0), CMD, T0 + 5, T0 + 30_000, T0 + 3_600_000, 1, "retry_after")]
    f.outcomes = [outcome(at=T0 + 40_000)]
    story = assemble(f)
    assert story.phase is Phase.ANSWERED
    assert [s.kind for s in story.steps] == ["received", "parked", "answered"]


def test_dispatched_without_an_answer_is_in_flight() -> None:
    f = facts(command(100), committed=100)
    f.ledger = [LedgerSeen(RUN, "dispatched", T0 + 10, 100, 2)]
    assert assemble(f).summary == "dispatched (attempt 2), not answered yet"


def test_a_dead_letter_of_the_record_is_its_fate() -> None:
    f = facts(command(100), committed=101)
    f.dead_letters = [DeadLetterSeen(Where("dlq", 0, 3), T0 + 5, CMD, "too_large", "value is 4000 bytes")]
    story = assemble(f)
    assert story.phase is Phase.DEAD_LETTERED
    assert story.summary == "dead-lettered: too_large (value is 4000 bytes)"


def test_the_owner_knows_it_waits_behind_an_earlier_command_of_its_key() -> None:
    story = assemble(facts(command(100), committed=99), Live("pod-1", queued_behind=99, circuit="closed"))
    assert story.phase is Phase.WAITING and story.summary == "waiting behind offset 99 of its key"
    assert story_json(story)["owner"]["queued_behind"] == 99
    assert "owner: pod-1  circuit=closed" in render(story)


def test_the_owner_knows_its_attempt_and_the_next_one() -> None:
    live = Live("pod-1", in_flight=True, attempt=1, next_attempt_at_ms=T0 + 6000, circuit="closed")
    story = assemble(facts(command(100), committed=100), live)
    assert story.phase is Phase.IN_FLIGHT
    assert story.summary == "in flight now, attempt 1, next attempt at 2025-12-05T02:00:06.000Z"


def test_lifecycle_events_follow_the_outcome_and_name_the_workflow_state() -> None:
    f = facts(command(100), committed=101)
    f.outcomes = [outcome()]
    f.lifecycle = [
        LifecycleSeen(Where("l", 2, 1), T0 + 900, CMD, "completed", "Finished", None, None, 2),
        LifecycleSeen(Where("l", 2, 0), T0 + 400, CMD, "running", "OPEN", None, None, 1),
    ]
    story = assemble(f)
    assert story.workflow == "completed" and story.summary.endswith("; workflow completed")
    assert [s.text for s in story.steps][-2:] == [
        "workflow running  provider=OPEN",
        "workflow completed  provider=Finished",
    ]


def test_the_payload_is_in_the_json_only_when_asked() -> None:
    story = assemble(facts(command(100)))
    assert "payload" not in story_json(story)
    assert story_json(story, payload=True)["payload"] == {"id": "cmd-1"}


def raw(
    value: bytes | None, key: bytes | None = b"cmd-1", headers: tuple[Header, ...] = (), topic: str = RUN
) -> RawRecord:
    return RawRecord(topic, 2, 100, T0, key, value, headers)


def test_records_are_read_as_the_bridge_writes_them() -> None:
    value = orjson.dumps(
        {"id": "cmd-1", "target": "z", "operation": "zilliant.queue_job", "automation_id": "A"}
    )
    assert read_command(raw(value), CommandFamily.RUN, "cmd-1") is not None
    assert read_command(raw(value), CommandFamily.RUN, "cmd-10") is None  # a needle's false positive
    key, entry = encode_dispatched(RUN, "cmd-1", 7, 100, T0, 2)
    seen = read_ledger(raw(entry, key), frozenset({RUN}), "cmd-1")
    assert seen == LedgerSeen(RUN, "dispatched", T0, 100, 2)
    key, entry = encode_done(RUN, "cmd-1", 7, 100, T0, DoneFields("queued", "job-1", "e"))
    assert read_ledger(raw(entry, key), frozenset({RUN}), "cmd-1").status == "queued"  # type: ignore[union-attr]
    released = read_ledger(raw(None, entry_key(RUN, "cmd-1")), frozenset({RUN}), "cmd-1")
    assert released is not None and released.state == "released"
    at = ParkedAt(RUN, 100, T0, T0 + 5000, T0 + 9000, 1, "circuit_open")
    parked = read_parking(raw(value, headers=tuple(parked_headers(at, []))), frozenset({CMD}))
    assert parked is not None and parked.reason == "circuit_open" and parked.due_ms == T0 + 5000
    data = OutcomeData(
        command_id="cmd-1",
        target="z",
        provider="zilliant",
        operation="zilliant.queue_job",
        status=Status.QUEUED,
        provider_ref="job-1",
        http_status=202,
        attempts=1,
        source=SourceRecord(topic=RUN, partition=2, offset=100),
    )
    seen_outcome = read_outcome(raw(encode_outcome(data)), "cmd-1")
    assert seen_outcome is not None and seen_outcome.source == CMD and seen_outcome.provider_ref == "job-1"
    headers = (
        ("dlq.reason", b"too_large"),
        ("dlq.detail", b"big"),
        ("dlq.source.topic", RUN.encode()),
        ("dlq.source.partition", b"2"),
        ("dlq.source.offset", b"100"),
    )
    letter = read_dead_letter(raw(None, headers=headers), frozenset({CMD}), "cmd-1")
    assert letter is not None and letter.source == CMD and letter.reason == "too_large"


def test_lookup_helpers() -> None:
    assert partition_of(b"cmd-1", 4) == partition_of(b"cmd-1", 4) < 4
    assert needles('a"b', b"k") == (b'a"b', b'a\\"b')
    assert parse_since("2h", 10_000.0) == 10_000_000 - 7_200_000
    assert parse_since("2025-12-05T02:00:00Z", 0) == T0
    with pytest.raises(ValueError, match="duration"):
        parse_since("yesterday", 0)
    with pytest.raises(ValueError, match="offset"):
        parse_since("2025-12-05T02:00:00", 0)


@pytest.mark.parametrize("module", ["bridge.status.facts", "bridge.status.story"])
def test_the_story_is_pure(module: str) -> None:
    loaded = reachable(module)
    assert not [name for name in loaded if name.split(".")[0] in ("aiohttp", "aiokafka")], module


def test_windows_grow_from_the_starting_point_and_cover_the_range_once() -> None:
    from bridge.status.scan import plan_groups, plan_windows

    forward = plan_windows(0, 20_000, 8_000, newest_first=False)
    assert forward == [(0, 2000), (2000, 6000), (6000, 14000), (14000, 20000)]
    back = plan_windows(0, 20_000, 8_000, newest_first=True)
    assert back == [(18000, 20000), (14000, 18000), (6000, 14000), (0, 6000)]
    assert plan_windows(5, 5, 100, newest_first=True) == []
    assert [len(g) for g in plan_groups([(i, i + 1) for i in range(10)], 4)] == [1, 2, 4, 3]


def test_a_read_without_a_stop_is_cut_in_equal_parts_read_at_once() -> None:
    from bridge.status.scan import FIRST_WINDOW, plan_parts

    assert plan_parts(0, 20_000, 4) == [(0, 5000), (5000, 10000), (10000, 15000), (15000, 20000)]
    assert plan_parts(7, 7, 4) == []
    assert plan_parts(0, FIRST_WINDOW + 1, 4) == [(0, FIRST_WINDOW + 1)]  # none shorter than a window
    parts = plan_parts(3, 10_004, 3)
    assert parts[0][0] == 3 and parts[-1][1] == 10_004 and len(parts) == 3
    assert all(a[1] == b[0] for a, b in itertools.pairwise(parts))
