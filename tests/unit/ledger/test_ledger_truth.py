"""The ledger tells the truth about what a command did (issue 25.3): a dead letter is recorded like an
outcome, so a poison record read again is absorbed, not dead-lettered twice (in this process and
after a restore); a command abandoned while every attempt so far was refused (no connection, 503,
429) is new to the next owner, while one abandoned after an attempt that may have applied (a 500, a
request sent and not answered) stays in doubt."""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace
from typing import Any

import orjson
import pytest

import bridge.pipeline.processor as processor_module
from bridge.app import build_targets
from bridge.errors import RetryableCallError
from bridge.ledger.index import CommandIndex
from bridge.ledger.rules import Admission
from bridge.ledger.store import Ledger
from bridge.messages.outcomes import ErrorKind
from bridge.messages.records import SKIP, Incoming
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor
from bridge.pipeline.processor import Processor
from bridge.testing import FakeTransport, json_response
from tests.unit.kafka.test_engine import until
from tests.unit.ledger.test_ledger import NOW_MS, FakeProducer
from tests.unit.pipeline.test_processor import SETTINGS, record, workfloo

LEDGER = SETTINGS.topics.ledger


def ledger_of(producer: FakeProducer) -> Ledger:
    return Ledger(SETTINGS, producer, Metrics(), clock=lambda: NOW_MS / 1000)  # type: ignore[arg-type]


def with_ledger(transport: FakeTransport, ledger: Ledger, *, sleep: Any = None) -> tuple[Processor, Metrics]:
    metrics = Metrics()
    targets = build_targets(SETTINGS, None, metrics)  # type: ignore[arg-type]
    never = asyncio.Event()

    async def blocked(_: float) -> None:
        await never.wait()  # the backoff between attempts: the test cancels the command here

    executor = Executor(transport, metrics, Redactor(), 256, rng=random.Random(1), sleep=sleep or blocked)
    return Processor(SETTINGS, targets, executor, metrics, ledger), metrics


def restored(producer: FakeProducer) -> Ledger:
    """A next owner's ledger, read from what the first one wrote."""
    ledger = ledger_of(FakeProducer())
    fresh = {(SETTINGS.topics.run_commands, 2): CommandIndex(SETTINGS.ledger.retention_s)}
    for topic, partition, key, value in producer.sent:
        assert topic == LEDGER and partition == 2
        ledger._load(fresh, 2, key, value, NOW_MS)
    ledger._indexes.update(fresh)
    return ledger


def poison() -> Incoming:
    rec = record(workfloo())
    return Incoming(
        rec.topic, rec.partition, rec.offset, rec.key, b"{not json", rec.headers, rec.timestamp_ms
    )


async def test_a_poison_record_read_again_is_absorbed_not_dead_lettered_twice() -> None:
    producer = FakeProducer()
    proc, metrics = with_ledger(FakeTransport.scripted([]), ledger_of(producer))
    first = await proc.process(poison())
    assert first.topic == SETTINGS.topics.dead_letter and first.dead_letter is not None
    (entry,) = first.then  # recorded after the dead letter is acknowledged, like done after an outcome
    assert entry.topic == LEDGER and entry.key == f"dlq:{SETTINGS.topics.run_commands}:40".encode()
    assert orjson.loads(entry.value or b"")["reason"] == first.dead_letter.reason.value
    assert await proc.process(poison()) is SKIP  # the same record again, in this process
    assert metrics.registry.get_sample_value("bridge_duplicates_total", {"reason": "dead_letter"}) == 1

    producer.sent.append((entry.topic, entry.partition, entry.key, entry.value))  # as the engine publishes
    again, _ = with_ledger(FakeTransport.scripted([]), restored(producer))
    assert await again.process(poison()) is SKIP  # the next owner, after a rebalance
    other = poison()
    other = Incoming(other.topic, other.partition, 41, other.key, other.value, (), other.timestamp_ms)
    assert (await again.process(other)).topic == SETTINGS.topics.dead_letter  # another record is not


@pytest.mark.parametrize(
    ("answer", "in_doubt"),
    [
        (json_response(503), False),
        (json_response(429), False),
        (RetryableCallError(ErrorKind.UNREACHABLE, "refused", sent=False), False),
        (json_response(500), True),
        (RetryableCallError(ErrorKind.TIMEOUT, "no answer in time"), True),
    ],
    ids=["503", "429", "connection-refused", "500", "sent-no-answer"],
)
async def test_a_command_abandoned_between_attempts_is_in_doubt_only_if_one_may_have_applied(
    answer: Any, in_doubt: bool
) -> None:
    producer = FakeProducer()
    transport = FakeTransport.scripted([answer])
    proc, _ = with_ledger(transport, ledger_of(producer))
    rec = record(workfloo())
    task = asyncio.create_task(proc.process(rec))
    await until(lambda: len(transport.calls) == 1 and len(producer.sent) == (1 if in_doubt else 2))
    await asyncio.sleep(0.01)
    task.cancel()  # abandoned in its backoff (a revocation past its grace, a crash)
    with pytest.raises(asyncio.CancelledError):
        await task
    values = [value is None for *_, value in producer.sent]
    assert values == ([False] if in_doubt else [False, True])  # dispatched, then withdrawn if refused
    parsed = proc._parse(rec)
    ticket = await restored(producer).admit(rec.topic, rec.partition, rec.offset, (), parsed.command)  # type: ignore[union-attr]
    assert ticket.admission is (Admission.IN_DOUBT if in_doubt else Admission.NEW)


async def test_a_refused_attempt_then_a_sent_one_keeps_the_command_in_doubt() -> None:
    producer = FakeProducer()
    transport = FakeTransport.scripted([json_response(503), json_response(500)])
    gate = asyncio.Event()
    naps = 0

    async def second_nap_blocks(_: float) -> None:
        nonlocal naps
        naps += 1
        if naps > 1:
            await gate.wait()

    proc, _ = with_ledger(transport, ledger_of(producer), sleep=second_nap_blocks)
    rec = record(workfloo())
    task = asyncio.create_task(proc.process(rec))
    await until(lambda: len(transport.calls) == 2 and naps == 2)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # dispatched, withdrawn after the 503, dispatched again before the 500, which stays
    assert [value is None for *_, value in producer.sent] == [False, True, False]
    parsed = proc._parse(rec)
    ticket = await restored(producer).admit(rec.topic, rec.partition, rec.offset, (), parsed.command)  # type: ignore[union-attr]
    assert ticket.admission is Admission.IN_DOUBT


async def test_an_outcome_that_cannot_be_built_leaves_no_done_behind(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``done`` entry is decided only once its outcome is encoded: a command whose outcome fails is
    dead-lettered, and the same command in a later record is not absorbed as already done."""

    def broken(*_: Any, **__: Any) -> bytes:
        raise ValueError("cannot encode")

    ok = json_response(200, orjson.dumps({"id": "exec-1"}))
    producer = FakeProducer()
    proc, _ = with_ledger(FakeTransport.scripted([ok, ok]), ledger_of(producer))
    with monkeypatch.context() as patched:
        patched.setattr(processor_module, "encode", broken)
        first = await proc.process(record(workfloo()))
    assert first.dead_letter is not None and first.dead_letter.reason.value == "internal_error"
    rec = record(workfloo())
    later = replace(rec, offset=rec.offset + 1)
    again = await proc.process(later)  # the same command in a later record
    assert again is not SKIP and again.outcome is not None  # run, not absorbed as already done
