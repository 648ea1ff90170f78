"""What the owning member's ledger tells a lookup: ``Ledger.recall``, the ``GET /v1/ledger/{id}`` body
and its parsing, and where ``bridge status`` asks by default."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka import TopicPartition

from bridge.config.settings import Settings
from bridge.ledger.entries import DoneFields
from bridge.ledger.index import EPOCH_MS
from bridge.ledger.store import Ledger
from bridge.observability.metrics import Metrics
from bridge.status.cli import admin_url
from bridge.status.hints import Hint, ask_member, hint_json, hints_from_json, parse_partitions
from tests.unit.ledger.test_ledger import NOW_MS, FakeProducer, command

RUN = "workflow.run.commands"


async def held_ledger(monkeypatch: pytest.MonkeyPatch, retention_s: float = 3600) -> Ledger:
    settings = Settings.model_validate({"ledger": {"retention_s": retention_s}})
    ledger = Ledger(settings, FakeProducer(), Metrics(), clock=lambda: NOW_MS / 1000)  # type: ignore[arg-type]

    async def nothing_to_read(fresh: Any) -> int:
        return 0

    monkeypatch.setattr(ledger, "_read_to_end", nothing_to_read)  # an empty ledger partition
    return ledger


async def test_recall_knows_the_partitions_held_and_the_minute_of_the_last_entry(monkeypatch):
    ledger = await held_ledger(monkeypatch)
    assert ledger.recall(RUN, 3, "cmd-1") is None  # not held (yet): no answer, not "unknown"
    await ledger.restore([TopicPartition(RUN, 3)])
    unknown = ledger.recall(RUN, 3, "cmd-1")
    assert unknown is not None and unknown.last_write_ms is None and not unknown.done
    assert NOW_MS - 3_600_000 < unknown.horizon_ms <= NOW_MS - 3_540_000  # whole minutes of retention
    ticket = await ledger.admit(RUN, 3, 10, (), command())
    await ledger.dispatched(ticket)
    ledger.done(ticket, DoneFields("queued", None, "ev"))
    ledger.settle(ticket)
    known = ledger.recall(RUN, 3, "cmd-1")
    assert known is not None and known.done
    assert known.last_write_ms == EPOCH_MS + (NOW_MS - EPOCH_MS) // 60_000 * 60_000  # its minute
    assert known.last_write_ms <= NOW_MS < known.last_write_ms + 60_000
    assert ledger.recall(RUN, 4, "cmd-1") is None  # another partition: another member's
    ledger.forget([TopicPartition(RUN, 3)])
    assert ledger.recall(RUN, 3, "cmd-1") is None  # revoked


def test_the_ledger_body_round_trips_and_only_the_partitions_asked_count():
    hint = Hint(RUN, 3, "pod-1", 1_796_000_040_000, 1_795_000_000_000)
    body = {"member": "pod-1", "partitions": [hint_json(hint), hint_json(Hint("other", 3, "pod-1", None, 1))]}
    assert hints_from_json(body, {RUN: 3}) == {RUN: hint}
    assert hints_from_json(body, {RUN: 2}) == {}  # it holds another partition than the one wanted
    gone = Hint(RUN, 3, "pod-1", None, 5)
    assert hints_from_json({"member": "pod-1", "partitions": [hint_json(gone)]}, {RUN: 3}) == {RUN: gone}


@pytest.mark.parametrize(
    "body",
    [None, [], {"partitions": "x"}, {"member": "m", "partitions": [{"topic": RUN}]},
     {"member": "m", "partitions": [{"topic": RUN, "partition": "x", "last_write_ms": 1, "horizon_ms": 1}]}],
)  # fmt: skip
def test_a_body_it_does_not_understand_gives_no_hints(body: Any):
    assert hints_from_json(body, {RUN: 3}) == {}  # the lookup then reads the topics alone


def test_partitions_are_topic_colon_number():
    assert parse_partitions([f"{RUN}:3", "a:b:0"]) == {RUN: 3, "a:b": 0}
    assert parse_partitions([RUN]) is None
    assert parse_partitions([f"{RUN}:x"]) is None
    assert parse_partitions([":3"]) is None
    assert parse_partitions([]) == {}


def test_status_asks_the_configurations_own_admin_listener():
    assert admin_url(Settings()) is None  # no port: no listener to ask
    assert admin_url(Settings.model_validate({"admin": {"port": 9465}})) == "http://127.0.0.1:9465"
    wide = {"admin": {"host": "0.0.0.0", "port": 9465, "token_file": "/t"}}  # noqa: S104
    assert admin_url(Settings.model_validate(wide)) == "http://127.0.0.1:9465"
    assert admin_url(Settings.model_validate({"admin": {"host": "::1", "port": 1}})) == "http://[::1]:1"


async def test_an_unreachable_member_gives_no_hints():
    server = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    assert await ask_member(f"http://127.0.0.1:{port}", None, "cmd-1", {RUN: 3}) == {}
