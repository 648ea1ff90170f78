"""The command ledger's pure parts: the entry codec, the compact index, the admission rules, and the
admission step with an in-memory producer."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from jsonschema import Draft202012Validator

from bridge.config.settings import ParkingSettings, Settings
from bridge.ledger import index, rules
from bridge.ledger.entries import DoneFields, EntryState, decode, encode_dispatched, encode_done, fingerprint
from bridge.ledger.index import CommandIndex, Remembered, pack, unpack
from bridge.ledger.rules import Admission, admit
from bridge.ledger.startup import LEDGER, PARKING, internal_topics, partition_problems
from bridge.ledger.store import Ledger
from bridge.messages.commands import CommandFamily
from bridge.messages.outcomes import ErrorKind
from bridge.messages.parsing import Parsed
from bridge.observability.metrics import Metrics
from bridge.providers import eightbyeight
from bridge.providers.catalog import CATALOG
from bridge.providers.eightbyeight import EightByEightAction
from bridge.providers.parsing import parse_command
from bridge.providers.settings import parse_settings

SCHEMA = Path(__file__).resolve().parents[3] / "topics" / "schemas" / "ledger-entry.schema.json"
NOW_MS = 1_796_000_000_000  # late 2026
MINUTE_MS = 60_000


def command(**fields: Any) -> Any:
    doc = {"id": "cmd-1", "target": "wf", "operation": "workfloo.execute", "definition_id": "d1", **fields}
    parsed = parse_command(orjson.dumps(doc), CommandFamily.RUN, 100_000)
    assert isinstance(parsed, Parsed), parsed
    return parsed.command


# -- codec ----------------------------------------------------------------------------------------------


def test_entries_round_trip_and_match_the_published_schema():
    validator = Draft202012Validator(json.loads(SCHEMA.read_text()))
    fp = fingerprint(command())
    dispatched = encode_dispatched("t.run", "cmd:1", fp, 7, NOW_MS)
    done = encode_done("t.run", "cmd:1", fp, 7, NOW_MS + 5, DoneFields("error", None, "ev-1"), attempt=2)
    for key, value in (dispatched, done):
        assert list(validator.iter_errors(orjson.loads(value))) == []
        assert key == b"cmd:t.run:cmd:1"  # an id may hold ':'; the topic cannot
    first, second = decode(*dispatched), decode(*done)
    assert first is not None and second is not None
    assert (first.topic, first.command_id, first.state, first.fingerprint) == (
        "t.run",
        "cmd:1",
        EntryState.DISPATCHED,
        fp,
    )
    assert (second.state, second.status, second.attempt, second.at_ms) == (
        EntryState.DONE,
        "error",
        2,
        NOW_MS + 5,
    )


def test_entries_stay_small():
    key, value = encode_done(
        "workflow.run.commands", "x" * 40, 1, 10**9, NOW_MS, DoneFields("queued", "r" * 24, "e" * 36)
    )
    assert len(key) + len(value) < 300


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (None, b"{}"),
        (b"cmd:t:1", None),  # a tombstone
        (b"wf:t:1", b'{"kind":"workflow"}'),  # another entry kind: skipped, not an error
        (b"cmd:no-separator", b"{}"),
        (b"cmd:t:1", b"not json"),
        (b"cmd:t:1", b'{"state":"done"}'),
        (b"cmd:t:1", b'{"state":"weird","fp":"00","at":1}'),
    ],
)
def test_decode_skips_what_it_cannot_read(key, value):
    assert decode(key, value) is None


def test_fingerprint_ignores_the_id_and_sees_every_other_field():
    assert fingerprint(command()) == fingerprint(command(id="cmd-2"))
    assert fingerprint(command()) != fingerprint(command(form={"a": 1}))
    assert fingerprint(command(form={"a": 1, "b": 2})) == fingerprint(command(form={"a": 1, "b": 2}))


# -- index ----------------------------------------------------------------------------------------------


def test_pack_round_trips_and_stays_a_two_digit_int():
    fp = (1 << 64) - 1
    value = pack(fp, done=True, error=True, attempt=9, at_ms=NOW_MS)
    assert value < 2**60
    seen = unpack(value)
    assert (seen.done, seen.error, seen.attempt, seen.fp) == (
        True,
        True,
        7,
        index.short_fp(fp),
    )  # attempts saturate
    assert index.id_hash("a" * 200) < 2**60


def test_index_remembers_updates_and_expires_in_write_order():
    idx = CommandIndex(retention_s=3600)
    idx.put("a", 1, done=False, error=False, attempt=1, at_ms=NOW_MS)
    idx.put("b", 2, done=True, error=False, attempt=1, at_ms=NOW_MS + 10 * MINUTE_MS)
    idx.put("a", 1, done=True, error=True, attempt=1, at_ms=NOW_MS + 20 * MINUTE_MS)  # moves to the end
    assert len(idx) == 2
    assert idx.expire(NOW_MS + 71 * MINUTE_MS) == 1  # b last written 61 min ago, a 51 min ago
    assert idx.get("b") is None
    seen = idx.get("a")
    assert seen is not None and seen.done and seen.error
    assert idx.expire(NOW_MS + 81 * MINUTE_MS) == 1 and len(idx) == 0


def test_is_fresh_agrees_with_expire():
    idx = CommandIndex(retention_s=3600)
    assert idx.is_fresh(NOW_MS - 59 * MINUTE_MS, NOW_MS)
    assert not idx.is_fresh(NOW_MS - 61 * MINUTE_MS, NOW_MS)


def test_index_memory_per_id_stays_under_150_bytes():
    idx = CommandIndex(retention_s=3600)
    before = sys.getsizeof(idx._entries)
    for i in range(20_000):
        idx.put(f"cmd-{i}", i * 7919, done=True, error=False, attempt=1, at_ms=NOW_MS)
    values = list(idx._entries.items())
    per_id = (sys.getsizeof(idx._entries) - before) / len(values) + sum(
        sys.getsizeof(k) + sys.getsizeof(v) for k, v in values
    ) / len(values)
    assert per_id <= 150, per_id


# -- rules ----------------------------------------------------------------------------------------------


def remembered(fp: int, *, done: bool, error: bool = False) -> Remembered:
    return unpack(pack(fp, done=done, error=error, attempt=1, at_ms=NOW_MS))


@pytest.mark.parametrize(
    ("seen", "fp", "redrive", "expected"),
    [
        (None, 5 << 40, False, Admission.NEW),
        (remembered(5 << 40, done=True), 5 << 40, False, Admission.DUPLICATE),
        (remembered(5 << 40, done=True), 5 << 40, True, Admission.DUPLICATE),  # re-driving a success: a no-op
        (remembered(5 << 40, done=True, error=True), 5 << 40, True, Admission.RERUN),
        (remembered(5 << 40, done=True, error=True), 5 << 40, False, Admission.DUPLICATE),
        (remembered(5 << 40, done=True, error=True), 6 << 40, True, Admission.ID_REUSED),
        (remembered(5 << 40, done=False), 5 << 40, False, Admission.IN_DOUBT),
        (remembered(5 << 40, done=False), 9 << 40, False, Admission.ID_REUSED),
    ],
)
def test_admission_rules(seen, fp, redrive, expected):
    assert admit(seen, fp, redrive=redrive) is expected


def test_redrive_header():
    assert rules.is_redrive([("bridge.replay.from", b"x"), ("bridge.redrive", b"1")])
    assert not rules.is_redrive([("bridge.redrive", b"0")])
    assert not rules.is_redrive([])


def test_unknown_error_tells_what_to_check():
    error = rules.unknown_error("zilliant", "price-1", CATALOG.spec("zilliant").what_to_check)
    assert error.kind is ErrorKind.OUTCOME_UNKNOWN and not error.retryable
    assert "price-1" in error.message and "Check in zilliant whether a job" in error.message


@pytest.mark.parametrize(
    ("action", "status", "expected"),
    [
        (EightByEightAction.SUSPEND, "Suspended", True),
        (EightByEightAction.SUSPEND, "Runnable", False),
        (EightByEightAction.RESUME, "Runnable", True),
        (EightByEightAction.TERMINATE, "Terminated", True),
        (EightByEightAction.TERMINATE, "Complete", False),
    ],
)
def test_8x8_already_in_state(action, status, expected):
    assert eightbyeight.already_in_state(action, {"status": status}) is expected
    assert eightbyeight.already_in_state(action, None) is False


def test_partition_problems():
    assert partition_problems({"r": 4, "c": 4, "l": 4}, ["r", "c"], "l") == []
    assert "does not exist" in partition_problems({"r": 4}, ["r"], "l")[0]
    [problem] = partition_problems({"r": 4, "c": 12, "l": 4}, ["r", "c"], "l")
    assert "command topic 'c' has 12" in problem


def test_the_parking_topic_is_checked_like_the_ledger_and_says_what_to_do():
    [missing] = partition_problems({"r": 4}, ["r"], "p", PARKING)
    assert missing.startswith("parking topic 'p' does not exist: create it with `bridge topics apply`")
    assert missing.endswith("or set parking.enabled: false")
    [uneven] = partition_problems({"r": 4, "p": 2}, ["r"], "p", PARKING)
    assert "parking topic 'p' has 2 partition(s) but command topic 'r' has 4" in uneven
    assert uneven.endswith("parks its commands in parking partition p")


def test_internal_topics_are_the_ones_switched_on():
    settings = parse_settings({"kafka": {"bootstrap_servers": "k:9092"}}, {}, "test")
    topics = settings.topics
    assert internal_topics(settings) == {topics.ledger: LEDGER, topics.parked: PARKING}  # both by default
    off = settings.model_copy(update={"parking": ParkingSettings(enabled=False)})
    assert internal_topics(off) == {topics.ledger: LEDGER}


# -- admission with an in-memory producer ----------------------------------------------------------------


class FakeProducer:
    """Acknowledges every send at once and keeps what was sent."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, int | None, bytes | None, bytes | None]] = []

    async def send(
        self, topic: str, value: bytes | None = None, key: bytes | None = None, partition: int | None = None
    ) -> Any:
        self.sent.append((topic, partition, key, value))
        future = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


async def test_admission_writes_dispatched_then_done_and_absorbs_the_duplicate():
    producer = FakeProducer()
    ledger = Ledger(Settings(), producer, Metrics(), clock=lambda: NOW_MS / 1000)  # type: ignore[arg-type]
    cmd = command()
    ticket = await ledger.admit("workflow.run.commands", 3, 10, (), cmd)
    assert ticket.admission is Admission.NEW
    await ledger.dispatched(ticket)
    record = ledger.done(ticket, DoneFields("queued", "x", "ev"))
    ledger.settle(ticket)
    assert [(t, p) for t, p, _, _ in producer.sent] == [
        ("workflow.bridge.ledger", 3)
    ]  # done goes with the outcome
    assert (record.topic, record.partition) == ("workflow.bridge.ledger", 3)
    again = await ledger.admit("workflow.run.commands", 3, 11, (), cmd)
    assert again.admission is Admission.DUPLICATE
    elsewhere = await ledger.admit("workflow.run.commands", 4, 11, (), cmd)  # other partition: other ledger
    assert elsewhere.admission is Admission.NEW


async def test_a_second_record_of_a_running_id_waits_for_the_first():
    ledger = Ledger(Settings(), FakeProducer(), Metrics(), clock=lambda: NOW_MS / 1000)  # type: ignore[arg-type]
    cmd = command()
    first = await ledger.admit("t", 0, 1, (), cmd)
    second = asyncio.create_task(ledger.admit("t", 0, 2, (), cmd))
    await asyncio.sleep(0.01)
    assert not second.done()  # not "in doubt": it is still running here
    ledger.done(first, DoneFields("queued", None, "ev"))
    ledger.settle(first)
    assert (await second).admission is Admission.DUPLICATE
