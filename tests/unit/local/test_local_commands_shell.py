"""``bridge send`` and ``bridge tail``: reading a command, routing it, and one line per result.

Kafka clients are replaced by in-memory stand-ins here; tests/integration/test_cli.py runs the
same commands against the real broker.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from bridge.config.settings import KafkaSettings, Settings, TopicSettings
from bridge.local import commands
from bridge.local.commands import (
    command_topic,
    format_dead_letter,
    format_event,
    read_command_text,
    render_record,
    send_command,
)

RERUN = {"id": "rerun-1", "target": "zuora-eu", "operation": "zuora.rerun_task", "task_id": "2770"}
RERUN_EVENT = {
    "specversion": "1.0",
    "id": "ce-1",
    "source": "urn:x",
    "type": "t",
    "data": {k: v for k, v in RERUN.items() if k != "id"},
}
QUEUE = {"id": "q-1", "target": "zilliant", "operation": "zilliant.queue_job", "automation_id": "A"}


def settings(**topics: str) -> Settings:
    return Settings(kafka=KafkaSettings(bootstrap_servers="k:1"), topics=TopicSettings(**topics))


# -- reading the command -------------------------------------------------------------------------------


def test_literal_text_is_the_command():
    assert read_command_text('{"id": "x"}') == b'{"id": "x"}'


def test_at_file_reads_the_file(tmp_path: Path):
    path = tmp_path / "cmd.json"
    path.write_bytes(b'{"id": "from-file"}')
    assert read_command_text(f"@{path}") == b'{"id": "from-file"}'


def test_dash_reads_standard_input(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b'{"id": "stdin"}')))
    assert read_command_text("-") == b'{"id": "stdin"}'


# -- routing -------------------------------------------------------------------------------------------


def test_run_operations_go_to_the_run_topic_and_control_to_the_control_topic():
    s = settings()
    assert command_topic(s, QUEUE) == "workflow.run.commands"
    assert command_topic(s, RERUN) == "workflow.control.commands"


def test_a_cloudevent_is_routed_by_the_operation_in_its_data():
    assert command_topic(settings(), RERUN_EVENT) == "workflow.control.commands"


def test_routing_follows_renamed_topics():
    s = settings(run_commands="acme.run", control_commands="acme.control")
    assert (command_topic(s, QUEUE), command_topic(s, RERUN)) == ("acme.run", "acme.control")


# -- bridge send ---------------------------------------------------------------------------------------


@pytest.fixture
def published(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Settings, list[tuple[bytes | None, Any]]]]:
    sent: list[tuple[Settings, list[tuple[bytes | None, Any]]]] = []

    async def publish(s: Settings, docs: list[tuple[bytes | None, Any]]) -> bool:
        sent.append((s, docs))
        return True

    monkeypatch.setattr(commands, "publish_commands", publish)
    return sent


async def test_send_publishes_the_command_keyed_by_its_id(published, capsys):
    assert await send_command(settings(), orjson.dumps(RERUN).decode(), None) == 0

    [(_, docs)] = published
    assert docs == [(b"rerun-1", RERUN)]
    assert capsys.readouterr().out == "sent zuora.rerun_task rerun-1 to workflow.control.commands\n"


async def test_send_uses_the_key_it_is_given(published):
    await send_command(settings(), orjson.dumps(QUEUE).decode(), "customer-9")
    assert published[0][1] == [(b"customer-9", QUEUE)]


async def test_send_publishes_a_cloudevent_as_written(published, capsys):
    assert await send_command(settings(), orjson.dumps(RERUN_EVENT).decode(), None) == 0

    assert published[0][1] == [(b"ce-1", RERUN_EVENT)]
    assert "sent zuora.rerun_task ce-1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not a valid command: "),
        ("5", "not a valid command: a command is a JSON object, not int"),
        ("null", "not a valid command: a command is a JSON object"),
        ("[1, 2]", "not a valid command: a command is a JSON object, not list"),
        ('{"id": "a", "target": "t", "operation": "nope"}', "does not match any of the expected tags"),
        ('{"id": "a", "target": "t", "operation": "zuora.rerun_task"}', "task_id"),
        (
            '{"specversion": "1.0", "id": "a", "source": "s", "type": "t", "data": 5}',
            "CloudEvent 'data' must be a JSON object",
        ),
    ],
)
async def test_send_refuses_what_the_bridge_would_not_run(published, capsys, text: str, message: str):
    assert await send_command(settings(), text, None) == 2

    assert published == []
    err = capsys.readouterr().err
    assert err.startswith("bridge send: ") and message in err


async def test_send_names_a_file_it_cannot_read(published, capsys, tmp_path: Path):
    missing = tmp_path / "missing.json"

    assert await send_command(settings(), f"@{missing}", None) == 2

    assert published == []
    assert capsys.readouterr().err == f"bridge send: cannot read {missing}: No such file or directory\n"


# -- one line per outcome or dead letter -----------------------------------------------------------


def event(**data: Any) -> dict[str, Any]:
    return {"type": "workflow.outcome", "data": data}


def test_a_success_line_has_status_operation_id_reference_and_attempts():
    line = format_event(
        event(
            status="queued",
            operation="zuora.run_workflow",
            command_id="c-1",
            provider_ref="9",
            http_status=200,
            attempts=1,
        )
    )
    assert line.split() == ["queued", "zuora.run_workflow", "c-1", "ref=9", "http=200", "attempts=1"]


def test_a_failure_line_ends_with_the_error_kind_and_message():
    line = format_event(
        event(
            status="error",
            operation="workfloo.execute",
            command_id="c-2",
            http_status=401,
            attempts=1,
            error={"kind": "auth", "message": "workfloo refused the API key (401)"},
        )
    )
    assert line.endswith("attempts=1  [auth] workfloo refused the API key (401)")
    assert "ref=" not in line


def test_an_outcome_without_an_operation_still_prints():
    # a rejected command whose operation was unreadable
    line = format_event(event(status="rejected", operation=None, command_id="c-3", attempts=0))
    assert line.split()[:3] == ["rejected", "-", "c-3"] and "http=" not in line


def test_columns_line_up():
    short = format_event(event(status="queued", operation="a", command_id="x", attempts=1))
    long = format_event(event(status="conflict", operation="zilliant.queue_job", command_id="y", attempts=2))
    assert short.index("x") == long.index("y")


def test_a_dead_letter_line_shows_reason_detail_and_a_short_value():
    headers = [("dlq.reason", b"invalid_json"), ("dlq.detail", b"not JSON"), ("other", b"ignored")]
    line = format_dead_letter(b"x" * 100, headers)
    assert line.split()[:4] == ["DLQ", "invalid_json", "not", "JSON"]
    assert line.endswith("value=" + repr("x" * 60)) and "ignored" not in line


def test_a_dead_letter_without_a_value_or_headers_still_prints():
    assert format_dead_letter(None, []).split() == ["DLQ", "?", "value=''"]


def test_undecodable_bytes_do_not_break_a_dead_letter_line():
    line = format_dead_letter(b"\xff\xfe junk", [("dlq.reason", b"\xffbad")])
    assert "\ufffd" in line


@dataclass
class Record:
    topic: str
    value: bytes
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def test_render_tells_dead_letters_from_outcomes_by_topic():
    outcome = orjson.dumps(event(status="applied", operation="zuora.rerun_task", command_id="c", attempts=1))
    assert render_record(Record("workflow.control.outcomes", outcome), "dlq").startswith("applied")
    assert render_record(Record("dlq", b"junk", [("dlq.reason", b"empty")]), "dlq").startswith("DLQ")


def test_render_raw_prints_the_event_as_published():
    outcome = orjson.dumps(event(status="applied", command_id="c"))
    assert render_record(Record("out", outcome), "dlq", raw=True) == outcome.decode()
