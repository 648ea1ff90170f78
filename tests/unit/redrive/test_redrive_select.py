"""The pure parts of redrive: provenance headers, views, filters, decisions, histograms, reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from prometheus_client import CollectorRegistry

from bridge.messages.outcomes import OutcomeData, SourceRecord, Status, encode_outcome
from bridge.messages.provenance import REDRIVE, REPLAY_COUNT, REPLAY_FROM, replay_count, replay_headers
from bridge.redrive.report import (
    ReplayMetrics,
    Report,
    age,
    dead_letter_json,
    dead_letter_line,
    describe_record,
    result_label,
)
from bridge.redrive.select import (
    Action,
    Coordinates,
    DeadLetterFilter,
    Decision,
    OutcomeFilter,
    TimeRange,
    decide_dead_letter,
    decide_put_back,
    histogram,
    latest_per_command,
    parse_time,
    resume_positions,
    time_range,
    view_dead_letter,
    view_outcome,
)

NOW = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
COMMANDS = frozenset({"run.commands", "control.commands"})


@dataclass
class Rec:
    topic: str = "dlq"
    partition: int = 0
    offset: int = 7
    timestamp: int = 1_000_000
    key: bytes | None = b"k"
    value: bytes | None = b"not json"
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def dead(reason: str = "invalid_json", topic: str = "run.commands", *extra: tuple[str, bytes]) -> Rec:
    headers = [
        ("traceparent", b"00-abc-def-01"),
        ("dlq.reason", reason.encode()),
        ("dlq.detail", b"not JSON at byte 0"),
        ("dlq.source.topic", topic.encode()),
        ("dlq.source.partition", b"3"),
        ("dlq.source.offset", b"41"),
        *extra,
    ]
    return Rec(headers=headers)


def outcome(command_id: str, status: Status, offset: int, ts: int, target: str = "wf") -> Rec:
    data = OutcomeData(
        command_id=command_id,
        target=target,
        provider=None,
        operation="workfloo.execute",
        status=status,
        source=SourceRecord(topic="run.commands", partition=1, offset=offset * 10),
    )
    return Rec(topic="run.outcomes", partition=1, offset=offset, timestamp=ts, value=encode_outcome(data))


def test_replay_count_is_zero_without_the_header_and_the_last_number_otherwise() -> None:
    assert replay_count([]) == 0
    assert replay_count([(REPLAY_COUNT, b"1"), (REPLAY_COUNT, b"2")]) == 2
    assert replay_count([(REPLAY_COUNT, b"two")]) == 0


def test_replay_headers_keep_the_originals_and_replace_dead_letter_and_old_provenance() -> None:
    original = [("traceparent", b"t"), ("dlq.reason", b"x"), (REPLAY_COUNT, b"1"), (REPLAY_FROM, b"old")]
    assert replay_headers(original, "dlq/0/7", 2, redrive=False) == [
        ("traceparent", b"t"),
        (REPLAY_FROM, b"dlq/0/7"),
        (REPLAY_COUNT, b"2"),
    ]
    assert replay_headers([(REDRIVE, b"1")], "o/1/2", 1, redrive=True)[-1] == (REDRIVE, b"1")
    assert [k for k, _ in replay_headers([(REDRIVE, b"1")], "o/1/2", 1, redrive=False)] == [
        REPLAY_FROM,
        REPLAY_COUNT,
    ]


def test_a_dead_letter_view_reads_the_dlq_headers() -> None:
    view = view_dead_letter(dead("invalid_json", "run.commands", (REPLAY_COUNT, b"2")))
    assert (view.reason, view.detail, view.replay_count) == ("invalid_json", "not JSON at byte 0", 2)
    assert view.source == Coordinates("run.commands", 3, 41) and str(view.at) == "dlq/0/7"
    assert view_dead_letter(Rec()).source is None and view_dead_letter(Rec()).reason == "unknown"


@pytest.mark.parametrize(
    ("selection", "selected"),
    [
        (DeadLetterFilter(), True),
        (DeadLetterFilter(reasons=frozenset({"invalid_json", "too_large"})), True),
        (DeadLetterFilter(reasons=frozenset({"too_large"})), False),
        (DeadLetterFilter(source_topics=frozenset({"run.commands"})), True),
        (DeadLetterFilter(source_topics=frozenset({"control.commands"})), False),
        (DeadLetterFilter(window=TimeRange(since_ms=1_000_000)), True),
        (DeadLetterFilter(window=TimeRange(since_ms=1_000_001)), False),
        (DeadLetterFilter(window=TimeRange(until_ms=1_000_000)), False),
    ],
)
def test_dead_letter_filters(selection: DeadLetterFilter, selected: bool) -> None:
    assert selection.matches(view_dead_letter(dead())) is selected


@pytest.mark.parametrize(
    ("record", "limit", "action"),
    [
        (dead(), 3, Action.REPLAY),
        (dead("invalid_json", "run.commands", (REPLAY_COUNT, b"2")), 3, Action.REPLAY),
        (dead("invalid_json", "run.commands", (REPLAY_COUNT, b"3")), 3, Action.QUARANTINE),
        (dead("invalid_json", "run.commands", (REPLAY_COUNT, b"1")), 0, Action.QUARANTINE),
        (dead("invalid_json", "someone.else"), 3, Action.UNREPLAYABLE),
        (dead("too_large", "run.commands", ("dlq.value_omitted_bytes", b"2000000")), 3, Action.UNREPLAYABLE),
        (Rec(headers=[("dlq.reason", b"invalid_json")]), 3, Action.UNREPLAYABLE),
    ],
)
def test_dead_letter_decisions(record: Rec, limit: int, action: Action) -> None:
    assert decide_dead_letter(view_dead_letter(record), limit, COMMANDS).action is action


def test_put_back_goes_only_to_configured_command_topics() -> None:
    assert decide_put_back("run.outcomes", 0, 3, COMMANDS).action is Action.UNREPLAYABLE
    assert decide_put_back("control.commands", 2, 3, COMMANDS) == Decision(Action.REPLAY)


def test_histogram_is_most_frequent_first_then_by_name() -> None:
    assert histogram(["b", "a", "c", "b", "a", "b"]) == [("b", 3), ("a", 2), ("c", 1)]
    assert histogram([]) == []


def test_an_outcome_view_reads_the_event_and_refuses_other_records() -> None:
    view = view_outcome(outcome("c-1", Status.ERROR, 4, 5))
    assert view is not None
    assert (view.command_id, view.status, view.target) == ("c-1", "error", "wf")
    assert view.source == Coordinates("run.commands", 1, 40) and view.at == Coordinates("run.outcomes", 1, 4)
    assert view_outcome(Rec(value=b"not json")) is None
    assert view_outcome(Rec(value=orjson.dumps({"data": {"command_id": "x"}}))) is None
    assert view_outcome(Rec(value=None)) is None


def test_only_the_latest_outcome_of_a_command_counts() -> None:
    views = [
        view_outcome(r)
        for r in (
            outcome("a", Status.ERROR, 1, 10),
            outcome("b", Status.ERROR, 2, 11),
            outcome("a", Status.QUEUED, 3, 12),
            outcome("c", Status.QUEUED, 4, 13),
            outcome("c", Status.ERROR, 5, 14),
        )
    ]
    latest = latest_per_command(v for v in views if v is not None)
    assert [(v.command_id, v.status) for v in latest] == [("b", "error"), ("a", "queued"), ("c", "error")]


def test_outcome_filter_by_status_target_and_time() -> None:
    view = view_outcome(outcome("a", Status.ERROR, 1, 10))
    assert view is not None
    assert OutcomeFilter("error").matches(view)
    assert not OutcomeFilter("conflict").matches(view)
    assert OutcomeFilter("error", frozenset({"wf", "other"})).matches(view)
    assert not OutcomeFilter("error", frozenset({"other"})).matches(view)
    assert not OutcomeFilter("error", window=TimeRange(since_ms=11)).matches(view)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("90s", NOW - timedelta(seconds=90)),
        ("15m", NOW - timedelta(minutes=15)),
        ("1.5h", NOW - timedelta(minutes=90)),
        ("2d", NOW - timedelta(days=2)),
        ("2026-12-01T08:00:00Z", datetime(2026, 12, 1, 8, tzinfo=UTC)),
        ("2026-12-01T10:00:00+02:00", datetime(2026, 12, 1, 8, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, expected: datetime) -> None:
    assert parse_time(text, NOW) == expected


@pytest.mark.parametrize("text", ["2026-12-01T08:00:00", "yesterday", "15 minutes"])
def test_parse_time_refuses_what_it_cannot_place(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text, NOW)


def test_time_range_in_milliseconds() -> None:
    window = time_range("1h", None, NOW)
    assert window == TimeRange(since_ms=int((NOW - timedelta(hours=1)).timestamp() * 1000))


def test_resume_positions_stop_at_the_first_record_left_for_later() -> None:
    scanned = {("o", 0): 10, ("o", 1): 5}
    left = [Coordinates("o", 0, 7), Coordinates("o", 0, 4), Coordinates("p", 2, 3)]
    assert resume_positions(scanned, left) == {("o", 0): 4, ("o", 1): 5, ("p", 2): 3}
    assert resume_positions(scanned, []) == scanned


def test_a_report_counts_logs_and_summarises(capsys: pytest.CaptureFixture[str]) -> None:
    metrics = ReplayMetrics(CollectorRegistry())
    report = Report("dlq", dry_run=True, metrics=metrics)
    report.record(Coordinates("dlq", 0, 1), Decision(Action.REPLAY), "invalid_json", "run.commands")
    report.record(
        Coordinates("dlq", 0, 2), Decision(Action.QUARANTINE, "replayed 3 times"), "too_large", None
    )
    report.record(Coordinates("dlq", 0, 3), Decision(Action.REPLAY), "invalid_json", "run.commands")
    assert report.replayed == 2
    assert report.summary().splitlines() == [
        "dlq (dry run): 1 quarantined, 2 would_replay",
        "by reason:",
        "  invalid_json             2",
        "  too_large                1",
    ]
    out = capsys.readouterr().out
    assert "would_replay  dlq/0/1  invalid_json     -> run.commands" in out
    assert "quarantined   dlq/0/2  too_large        -> -  replayed 3 times" in out
    value = metrics.registry.get_sample_value(
        "bridge_replays_total", {"kind": "dlq", "result": "quarantined"}
    )
    assert value == 1.0


def test_result_labels() -> None:
    assert [result_label(a, dry_run=False) for a in Action] == ["replayed", "quarantined", "unreplayable"]
    assert result_label(Action.REPLAY, dry_run=True) == "would_replay"
    assert result_label(Action.QUARANTINE, dry_run=True) == "quarantined"


@pytest.mark.parametrize(
    ("ms", "text"), [(0, "0s"), (59_999, "59s"), (60_000, "1m"), (7_200_000, "2h"), (90_000_000, "1d")]
)
def test_age(ms: int, text: str) -> None:
    assert age(1_000, 1_000 + ms) == text


def test_list_and_show_lines() -> None:
    record = dead()
    line = dead_letter_line(view_dead_letter(record), 1_000_000 + 120_000)
    assert line.startswith("0/7") and "2m ago  invalid_json" in line and "from run.commands/3/41" in line
    shown = describe_record(record, 1_000_000)
    assert "  traceparent: 00-abc-def-01" in shown and shown.endswith("value\nnot json")
    assert describe_record(Rec(value=b"\xff", key=None), 0).endswith("value\nb'\\xff'")


def test_list_json_is_one_object_per_dead_letter() -> None:
    doc = orjson.loads(dead_letter_json(view_dead_letter(dead())))
    assert doc["at"] == {"topic": "dlq", "partition": 0, "offset": 7}
    assert (doc["reason"], doc["source"]["offset"], doc["replay_count"]) == ("invalid_json", 41, 0)
