"""What ``bridge local`` prints: one line of at most 80 columns per event, and a summary computed
from the records seen (never from what was meant to be sent)."""

from __future__ import annotations

import asyncio
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.local import examples, guide
from bridge.local.otlp import ReceivedSpan
from bridge.local.screen import (
    ID_WIDTH,
    WIDTH,
    Tally,
    command_fields,
    dead_letter_line,
    error_facts,
    fit,
    header,
    lifecycle_line,
    outcome_line,
    repeat_line,
    short_id,
    trace_line,
)
from bridge.local.stack import local_settings
from bridge.local.watch import TRACE_QUIET_S, Console, Watcher

RUN = "workflow.run.commands"
LONG = "x" * 500


def outcome(cid: str, status: str, offset: int, **extra: Any) -> dict[str, Any]:
    source = {"topic": RUN, "partition": 0, "offset": offset}
    return {"command_id": cid, "status": status, "operation": "zuora.run_workflow", "source": source, **extra}


# -- lines -----------------------------------------------------------------------------------------


def test_fit_keeps_short_text_and_cuts_long_text_to_the_width():
    assert fit("short") == "short"
    cut = fit(LONG)
    assert len(cut) == WIDTH and cut.endswith("…")


def test_fit_puts_a_multi_line_message_on_one_line():
    assert fit("a\nb\r\n\tc") == "a b c"


def test_short_id_drops_the_run_prefix_and_elides_the_middle_of_long_ids():
    assert short_id("demo-010101-zuora-queued", "demo-010101-") == "zuora-queued"
    assert short_id("someone-elses-id", "demo-010101-") == "someone-elses-id"
    long = short_id("order-2026-12-05-customer-4711-attempt-0001")
    assert len(long) == ID_WIDTH and long.startswith("order-2026") and long.endswith("-0001") and "…" in long


@pytest.mark.parametrize(
    "text",
    [
        outcome_line(outcome(LONG, "rejected", 1, error={"kind": "validation", "message": LONG})),
        outcome_line(outcome("a", "queued", 1, provider_ref=LONG, http_status=200, attempts=1)),
        lifecycle_line({"command_id": LONG, "status": "failed", "operation": LONG, "detail": LONG}),
        dead_letter_line(LONG.encode(), {"dlq.reason": LONG, "dlq.detail": LONG}),
        repeat_line(LONG, LONG),
        trace_line(short_id(LONG), "ab" * 16, [LONG, LONG]),
        header("demo-235959-"),
    ],
)
def test_every_line_fits_80_columns(text: str):
    assert len(text) <= WIDTH and "\n" not in text


def test_a_queued_outcome_shows_status_id_operation_ref_and_http():
    text = outcome_line(
        outcome("demo-1-zuora-queued", "queued", 1, provider_ref="402", http_status=200), "demo-1-"
    )
    assert text.split() == ["queued", "zuora-queued", "zuora.run_workflow", "ref", "402,", "http", "200"]
    assert text.index("zuora-queued") == 10 and text.index("zuora.run_workflow") == 32  # columns


def test_a_failure_shows_http_kind_retries_and_the_message_without_its_status_prefix():
    data = {
        "http_status": 404,
        "attempts": 1,
        "error": {"kind": "provider_rejected", "message": "provider rejected the command (404): NOT_FOUND"},
    }
    assert error_facts(data) == "404: NOT_FOUND"  # "rejected" and 404 say provider_rejected already
    retried = {"http_status": 401, "attempts": 2, "error": {"kind": "auth", "message": "credentials refused"}}
    assert error_facts(retried) == "401 auth, 2 attempts: credentials refused"
    assert (
        error_facts({"error": {"kind": "unknown_target", "message": "no target"}})
        == "unknown_target: no target"
    )


def test_a_lifecycle_line_shows_the_provider_state_time_wait_and_detail():
    text = lifecycle_line(
        {
            "command_id": "r-8x8",
            "status": "waiting",
            "operation": "8x8.update_instance",
            "provider_status": "Suspended",
            "tracked_for_s": 2.04,
            "waiting_for": "resume",
        },
        "r-",
    )
    assert text.split()[:3] == ["waiting", "8x8", "8x8.update_instance"]
    assert text.endswith("Suspended, waits for resume…")  # the time is the first thing cut
    short = lifecycle_line({"status": "completed", "provider_status": "Finished", "tracked_for_s": 3.94})
    assert short.endswith("Finished, 3.9s")
    failed = lifecycle_line({"status": "failed", "provider_status": "Finished", "detail": "task 2"})
    assert failed.endswith("Finished, 0.0s: task 2")


def test_a_dead_letter_is_named_by_its_key_and_shows_reason_and_detail():
    text = dead_letter_line(b"junk", {"dlq.reason": "invalid_json", "dlq.detail": "value is not JSON"})
    assert text.split() == ["dlq", "key", "junk", "invalid_json", "value", "is", "not", "JSON"]
    assert dead_letter_line(None, {}).split()[:2] == ["dlq", "(no", "key)"][:2]


def test_a_trace_line_names_the_command_the_trace_start_and_the_calls():
    text = trace_line(
        "zuora-queued",
        "4bf92f3577b34da6a3ce929d0e0e4736",
        ["POST token", "POST /run", "process t", "publish t"],
    )
    assert text.split()[:3] == ["trace", "zuora-queued", "4bf92f35"]
    assert text.endswith("POST token > POST /run > publish")


def test_command_fields_reads_bare_commands_and_cloudevents():
    assert command_fields(b'{"id": "a", "operation": "zuora.run_workflow"}') == ("a", "zuora.run_workflow")
    event = {"specversion": "1.0", "id": "e", "data": {"operation": "zuora.stop_run"}}
    assert command_fields(orjson.dumps(event)) == ("e", "zuora.stop_run")
    assert command_fields(b"not json") == (None, "-")
    assert command_fields(b"[1]") == (None, "-")
    assert command_fields(None) == (None, "-")


# -- the tally -------------------------------------------------------------------------------------


def seen_demo() -> Tally:
    """A run like make run's, in miniature: 2 answered, 1 duplicate, 1 dead letter, runs."""
    tally = Tally()
    for offset, cid in enumerate(["a", "b", "c", "a", None]):
        tally.command((RUN, 0, offset), cid)
    tally.outcome(outcome("a", "queued", 0))
    tally.outcome(outcome("b", "queued", 1))
    tally.outcome(outcome("c", "rejected", 2))
    tally.dead_letter((RUN, 0, 4))
    tally.lifecycle({"command_id": "a", "status": "running"})
    tally.lifecycle({"command_id": "a", "status": "completed"})
    tally.lifecycle({"command_id": "b", "status": "failed"})
    return tally


def test_the_summary_counts_what_was_seen():
    assert seen_demo().summary() == [
        "5 commands: 3 outcomes, 1 dead letter, 1 duplicate absorbed",
        "outcomes: 2 queued, 1 rejected",
        "runs: 1 completed, 1 failed",
    ]


def test_a_command_without_an_answer_is_pending_not_absorbed():
    tally = seen_demo()
    tally.command((RUN, 1, 0), "d")
    assert tally.pending == 1 and tally.absorbed == 1
    assert tally.summary()[0].endswith("1 duplicate absorbed, 1 pending")


def test_both_records_of_a_duplicate_are_pending_until_one_is_answered():
    tally = Tally()
    assert tally.command((RUN, 0, 0), "a") is False
    assert tally.command((RUN, 0, 1), "a") is True
    assert (tally.pending, tally.absorbed) == (2, 0)
    tally.outcome(outcome("a", "applied", 0))
    assert (tally.pending, tally.absorbed) == (0, 1)


def test_settled_needs_every_command_answered_and_every_queued_run_ended_or_waiting():
    tally = seen_demo()
    assert tally.settled(5)
    assert not tally.settled(6)  # one more command was sent than seen
    tally.lifecycle({"command_id": "b", "status": "running"})
    assert not tally.settled(5)
    tally.lifecycle({"command_id": "b", "status": "waiting"})
    assert tally.settled(5)


def test_a_queued_run_without_its_first_lifecycle_event_is_not_settled():
    tally = Tally()
    tally.command((RUN, 0, 0), "a")
    tally.outcome(outcome("a", "queued", 0))
    assert not tally.settled(1)


def test_an_empty_tally_says_so():
    assert Tally().summary() == [
        "0 commands: 0 outcomes, 0 dead letters, 0 duplicates absorbed",
        "outcomes: none",
        "runs: none",
    ]


# -- the watcher's lines for real record shapes ---------------------------------------------------


@dataclass
class Rec:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    timestamp: int = 0


def watcher() -> Watcher:
    return Watcher(
        local_settings("b:1", "http://127.0.0.1:1"), Console(io.StringIO()), prefix="r-", expected=3
    )


def test_the_watcher_prints_nothing_for_a_first_command_and_one_line_for_a_repeat():
    w = watcher()
    doc = orjson.dumps({"id": "r-a", "operation": "zuora.run_workflow"})
    assert w.see(Rec(RUN, 0, 0, doc)) is None
    again = w.see(Rec(RUN, 0, 1, doc))
    assert again is not None and again.split()[:3] == ["again", "a", "zuora.run_workflow"]


def test_the_watcher_reads_outcomes_lifecycle_events_and_dead_letters():
    w = watcher()
    w.see(Rec(RUN, 0, 0, orjson.dumps({"id": "r-a", "operation": "zuora.run_workflow"})))
    w.see(Rec(RUN, 0, 1, b"junk"))
    event = {"type": "workflow.outcome.queued", "data": outcome("r-a", "queued", 0, provider_ref="7")}
    assert str(w.see(Rec("workflow.run.outcomes", 0, 0, orjson.dumps(event)))).startswith("queued    a ")
    life = {"type": "workflow.lifecycle.completed", "data": {"command_id": "r-a", "status": "completed"}}
    assert str(w.see(Rec("workflow.run.lifecycle", 0, 0, orjson.dumps(life)))).startswith("completed a ")
    headers = (
        ("dlq.reason", b"invalid_json"),
        ("dlq.source.topic", RUN.encode()),
        ("dlq.source.partition", b"0"),
    )
    dead = w.see(Rec("workflow.commands.dlq", 0, 0, b"junk", b"k", (*headers, ("dlq.source.offset", b"1"))))
    assert str(dead).split()[:4] == ["dlq", "key", "k", "invalid_json"]
    assert w.tally.summary()[0] == "2 commands: 1 outcome, 1 dead letter, 0 duplicates absorbed"
    assert w.tally.settled(2)


async def test_a_trace_is_printed_once_named_by_the_command_its_process_span_read():
    out = io.StringIO()
    w = Watcher(local_settings("b:1", "http://127.0.0.1:1"), Console(out), prefix="r-")
    w.see(Rec(RUN, 2, 9, orjson.dumps({"id": "r-a", "operation": "zuora.run_workflow"})))
    attrs = {
        "messaging.destination.name": RUN,
        "messaging.destination.partition.id": "2",
        "messaging.kafka.offset": 9,
    }

    def span(name: str, attributes: dict[str, Any] | None = None) -> ReceivedSpan:
        return ReceivedSpan(name, "ab" * 16, "01" * 8, "", 1, attributes or {}, 0, "")

    w.show_traces([span("POST /run"), span(f"process {RUN}", attrs)])
    await asyncio.sleep(TRACE_QUIET_S / 2)
    w.show_traces([span("publish x")])  # the publish span in the next export batch
    assert out.getvalue() == ""
    await asyncio.sleep(TRACE_QUIET_S * 1.5)
    assert out.getvalue().splitlines() == [
        f"{'trace':<9} {'a':<{ID_WIDTH}} abababab POST /run > publish",
    ]


# -- the console -----------------------------------------------------------------------------------


class Gone(io.StringIO):
    def write(self, text: str) -> int:
        raise OSError(5, "Input/output error")


def test_the_console_stops_writing_once_the_terminal_is_gone(tmp_path):
    console = Console(Gone())
    console.print("a")  # no exception: a closed terminal must not break the shutdown
    assert console.broken
    console.print("b")


def test_a_broken_console_points_its_descriptor_at_dev_null(tmp_path):
    path = tmp_path / "out"
    with path.open("w") as stream:
        console = Console(stream)
        original = stream.write
        stream.write = lambda text: (_ for _ in ()).throw(OSError(5, "gone"))  # type: ignore[method-assign]
        console.print("x")
        stream.write = original  # type: ignore[method-assign]
        os.write(stream.fileno(), b"after")
    assert path.read_bytes() == b""  # the write after the failure went to /dev/null


def test_example_records_are_the_examples_the_first_again_and_one_not_json():
    records = examples.example_records("r")
    commands = examples.example_commands("r")
    assert records[: len(commands)] == commands
    assert records[len(commands)] == commands[0]
    assert records[-1] == (b"junk", examples.NOT_A_COMMAND) and len(records) == len(commands) + 2


def test_your_command_is_the_first_example_under_a_new_id():
    _, first = examples.example_commands("r")[0]
    mine = examples.your_command("r")
    assert mine["id"] == "r-yours-1" and {**mine, "id": first["id"]} == first


# -- the banner and the blocks ---------------------------------------------------------------------


def test_the_banner_and_a_block_fit_80_columns_and_carry_the_addresses():
    where = guide.addresses("127.0.0.1:45797", "http://127.0.0.1:42951", 9464)
    lines = [
        *guide.banner(4242, where, 16, "demo-235959-"),
        *guide.block("examples settled in 6.2s", seen_demo().summary(), where, []),
        *guide.next_steps(".venv/bin/bridge", "127.0.0.1:45797", Path(".local/command.json"), 4242),
    ]
    assert all(len(text) <= WIDTH for text in lines), [t for t in lines if len(t) > WIDTH]
    assert "  broker   127.0.0.1:45797" in lines and "metrics  http://127.0.0.1:9464/metrics" in lines
    assert "  .venv/bin/bridge send --bootstrap 127.0.0.1:45797 @.local/command.json" in lines
    assert guide.rule("summary") == "-- summary " + "-" * 69


def test_without_a_command_file_the_send_hint_asks_for_json():
    steps = guide.next_steps("bridge", "b:1", None, 1)
    assert "  bridge send --bootstrap b:1 '<a command as JSON>'" in steps


def test_no_examples_says_so_in_the_banner():
    assert "no example commands (--no-examples)" in guide.banner(1, [], 0, "demo-1-")


def test_the_bridge_executable_is_named_as_the_user_can_call_it(tmp_path: Path, monkeypatch):
    exe = tmp_path / ".venv" / "bin" / "bridge"
    exe.parent.mkdir(parents=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("PATH", "/nonexistent")
    assert guide.bridge_executable(str(exe), tmp_path) == ".venv/bin/bridge"  # make run, from the clone
    assert guide.bridge_executable(str(exe), tmp_path / "elsewhere") == str(exe)
    assert guide.bridge_executable("/x/python3 -m", tmp_path) == "bridge"
    monkeypatch.setenv("PATH", str(exe.parent))
    assert guide.bridge_executable(str(exe), tmp_path) == "bridge"  # an activated venv
