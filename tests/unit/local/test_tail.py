"""``bridge tail``'s pure parts: decoding records into rows, time order, filters, exact counts, JSON."""

from __future__ import annotations

import asyncio
import base64
from argparse import Namespace
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from bridge.config.settings import KafkaSettings, Settings
from bridge.local import tail
from bridge.local.tail import Filters, Printer, decode

DLQ = "workflow.commands.dlq"


@dataclass
class Record:
    topic: str
    value: bytes | None
    timestamp: int = 1_700_000_000_000
    partition: int = 0
    offset: int = 0
    key: bytes | None = None
    headers: list[tuple[str, bytes]] = field(default_factory=list)


def outcome(command_id: str, status: str = "queued", target: str = "zuora-eu", **rec: Any) -> Record:
    data = {"command_id": command_id, "status": status, "target": target, "operation": "zuora.run_workflow"}
    event = {"type": f"workflow.outcome.{status}", "data": data}
    return Record("workflow.run.outcomes", orjson.dumps(event), **rec)


def dead_letter(value: bytes, **rec: Any) -> Record:
    headers = [("dlq.reason", b"invalid_json"), ("dlq.detail", b"value is not JSON")]
    return Record(DLQ, value, headers=headers, **rec)


def filters(**given: list[str]) -> Filters:
    return Filters.of(Namespace(id=given.get("id"), target=given.get("target"), status=given.get("status")))


def test_an_outcome_row_has_a_time_column_and_its_event_as_json():
    row = decode(outcome("c-1", timestamp=1_700_000_000_123), DLQ)

    assert row.render(as_json=False).startswith("22:13:20.123  queued")
    assert orjson.loads(row.render(as_json=True))["data"]["command_id"] == "c-1"
    assert (row.status, row.command_id, row.target) == ("queued", "c-1", "zuora-eu")


def test_a_dead_letter_is_json_too_with_its_reason_and_value():
    row = decode(dead_letter(b"not json", key=b"k", offset=4), DLQ)

    doc = orjson.loads(row.render(as_json=True))
    assert doc["type"] == "bridge.dead_letter" and doc["reason"] == "invalid_json"
    assert (doc["topic"], doc["offset"], doc["key"], doc["value"]) == (DLQ, 4, "k", "not json")
    assert doc["time"] == "2023-11-14T22:13:20.000+00:00"
    assert row.status == "dead_letter" and row.render(as_json=False).split()[1] == "DLQ"


def test_a_dead_letter_that_is_not_utf8_is_base64():
    doc = decode(dead_letter(b"\xff\xfe"), DLQ).doc
    assert doc["value_base64"] == base64.b64encode(b"\xff\xfe").decode() and "value" not in doc


def test_a_dead_letter_with_a_readable_command_can_be_found_by_id_and_target():
    row = decode(dead_letter(b'{"id": "c-9", "target": "zilliant", "operation": "nope"}'), DLQ)
    assert (row.command_id, row.target) == ("c-9", "zilliant")


def test_a_record_on_an_event_topic_that_is_not_an_event_is_shown_not_fatal():
    row = decode(Record("workflow.run.outcomes", b"\x00garbage"), DLQ)
    assert (
        row.status == "undecodable" and orjson.loads(row.render(as_json=True))["type"] == "bridge.undecodable"
    )


def test_rows_sort_by_time_then_topic_partition_offset():
    late, early = decode(outcome("a", timestamp=2000), DLQ), decode(dead_letter(b"x", timestamp=1000), DLQ)
    assert sorted([late, early]) == [early, late]


@pytest.mark.parametrize(
    ("given", "passes"),
    [
        ({}, ["a", "b", "dlq"]),
        ({"id": ["a"]}, ["a"]),
        ({"id": ["a,b"]}, ["a", "b"]),
        ({"target": ["zilliant"]}, ["b"]),
        ({"status": ["dead_letter", "conflict"]}, ["b", "dlq"]),
        ({"status": ["queued"], "target": ["zilliant"]}, []),
    ],
)
def test_filters(given: dict[str, list[str]], passes: list[str]):
    rows = {
        "a": decode(outcome("a"), DLQ),
        "b": decode(outcome("b", status="conflict", target="zilliant"), DLQ),
        "dlq": decode(dead_letter(b"x"), DLQ),
    }
    assert [name for name, row in rows.items() if filters(**given).accepts(row)] == passes


def test_the_printer_prints_exactly_count_rows_in_time_order(capsys):
    printer = Printer(Filters(), limit=3, as_json=False)
    rows = [decode(outcome(f"c-{n}", timestamp=10_000 - n), DLQ) for n in range(8)]

    printer.emit(rows[:5])
    printer.emit(rows[5:])

    ids = [line.split()[3] for line in capsys.readouterr().out.splitlines()]
    assert ids == ["c-4", "c-3", "c-2"] and printer.done


def test_the_count_counts_only_rows_the_filters_let_through(capsys):
    printer = Printer(filters(status=["conflict"]), limit=1, as_json=True)
    printer.emit([decode(outcome("q"), DLQ), decode(outcome("c", status="conflict"), DLQ)])
    assert [orjson.loads(x)["data"]["command_id"] for x in capsys.readouterr().out.splitlines()] == ["c"]


async def test_tail_reads_committed_records_only(monkeypatch: pytest.MonkeyPatch):
    seen: dict[str, Any] = {}

    class Refused:
        def __init__(self, *topics: str, **options: Any) -> None:
            seen.update(options, topics=topics)

    async def not_started(*_: Any) -> bool:
        return False

    monkeypatch.setattr(tail, "AIOKafkaConsumer", Refused)
    monkeypatch.setattr(tail, "started", not_started)
    args = Namespace(
        from_beginning=True, count=None, timeout=None, json=False, id=None, target=None, status=None
    )

    assert await tail.tail_events(Settings(kafka=KafkaSettings(bootstrap_servers="k:1")), args) == 1
    assert seen["isolation_level"] == "read_committed" and seen["enable_auto_commit"] is False
    assert seen["auto_offset_reset"] == "earliest"
    assert seen["topics"] == (
        "workflow.run.outcomes",
        "workflow.control.outcomes",
        DLQ,
        "workflow.run.lifecycle",
    )


class SlowFirstFetch:
    """A consumer whose history exists (position 0, end 1) and whose broker answers its first fetches
    only after a while: empty batches meanwhile."""

    def __init__(self, empty_fetches: int) -> None:
        self.empty_fetches, self.read = empty_fetches, 0
        self.tp = ("workflow.run.outcomes", 0)

    def assignment(self) -> set[Any]:
        return {self.tp}

    async def end_offsets(self, partitions: list[Any]) -> dict[Any, int]:
        return dict.fromkeys(partitions, 1)

    async def position(self, tp: Any) -> int:
        return self.read

    async def getmany(self, *partitions: Any, timeout_ms: int = 0) -> dict[Any, list[Record]]:
        await asyncio.sleep(0.05)
        if self.empty_fetches:
            self.empty_fetches -= 1
            return {}
        self.read = 1
        return {self.tp: [outcome("c-1")]}


async def test_the_history_is_read_whole_even_when_its_first_fetch_outlasts_the_timeout():
    """``--from-beginning --timeout 2`` on a loaded machine: the records exist, so a slow first fetch
    (here 0.5 s of empty answers against a 0.1 s timeout) does not end the history empty."""
    consumer = SlowFirstFetch(empty_fetches=10)
    rows = await tail._history(consumer, DLQ, idle_s=0.1, stall_s=30.0)  # type: ignore[arg-type]
    assert [row.command_id for row in rows] == ["c-1"]


async def test_a_broker_that_answers_no_fetch_for_the_stall_bound_ends_the_history():
    consumer = SlowFirstFetch(empty_fetches=1000)
    rows = await tail._history(consumer, DLQ, idle_s=0.1, stall_s=0.3)  # type: ignore[arg-type]
    assert rows == []
