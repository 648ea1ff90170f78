"""Parking without a broker: the parked headers, the parked set and the processor's decisions."""

from __future__ import annotations

from bridge.ledger.entries import encode_dispatched, entry_key
from bridge.ledger.index import CommandIndex
from bridge.ledger.rules import Admission
from bridge.ledger.store import Ledger
from bridge.messages.outcomes import ErrorKind, Status
from bridge.messages.records import Incoming, Outgoing
from bridge.observability.metrics import Metrics
from bridge.parking.records import ParkedAt, ParkedSet, original_headers, parked_headers, read_parked
from bridge.parking.state import Parking
from bridge.pipeline.guards import CircuitBreaker
from bridge.pipeline.processor import Processor
from bridge.providers.settings import parse_settings
from bridge.testing import FakeTransport, json_response
from tests.fakes import FakeClock
from tests.unit.ledger.test_ledger import NOW_MS, FakeProducer
from tests.unit.pipeline.test_processor import SETTINGS, record, workfloo
from tests.unit.pipeline.test_processor import processor as make_processor

WHERE = ("cmd", 0)


def test_parked_headers_round_trip_and_keep_the_original_ones_first() -> None:
    at = ParkedAt("cmd", 41, 1_700_000_000_000, 5_000, 9_000, 2, "circuit_open")
    headers = parked_headers(at, [("traceparent", b"00-x"), ("bridge.parked.count", b"1")])
    assert headers[0] == ("traceparent", b"00-x") and read_parked(headers) == at
    assert original_headers(headers) == (("traceparent", b"00-x"),)
    assert read_parked([("traceparent", b"00-x")]) is None
    assert read_parked([*headers[:-2], ("bridge.parked.count", b"two")]) is None
    assert read_parked(parked_headers(ParkedAt("cmd", 1, None, 1, 2, 1), [])).timestamp_ms is None  # type: ignore[union-attr]


def test_a_key_is_blocked_only_by_an_earlier_parked_command_of_its_own() -> None:
    parked = ParkedSet()
    parked.add(WHERE, b"k", 10)
    parked.add(WHERE, b"k", 20)
    assert not parked.blocked(WHERE, b"k", 10)  # the oldest parked one may run
    assert parked.blocked(WHERE, b"k", 20) and parked.blocked(WHERE, b"k", 30)
    assert not parked.blocked(WHERE, b"other", 30) and not parked.blocked(("cmd", 1), b"k", 30)
    parked.discard(WHERE, b"k", 10)
    assert not parked.blocked(WHERE, b"k", 20) and len(parked) == 1
    parked.forget(WHERE)
    assert len(parked) == 0


PARKING = parse_settings(
    {
        "parking": {"enabled": True},
        "targets": {
            "wf": {
                "provider": "workfloo",
                "base_url": "https://wf.example",
                "api_key": {"env": "WF_KEY"},
                "circuit": {"failure_threshold": 1, "open_s": 30},
                "parking": {"retry_s": 5, "max_delay_s": 60},
                "retry": {"budget_s": 10, "max_retry_after_s": 30},
            }
        },
    },
    {"WF_KEY": "wf-key-123456"},
)


def parking_processor(
    transport: FakeTransport, clock: FakeClock, ledger: Ledger | None = None
) -> tuple[Processor, Parking]:
    plain = make_processor(transport)
    targets = plain._targets
    targets["wf"].settings = PARKING.targets["wf"]
    targets["wf"].breaker = CircuitBreaker(PARKING.targets["wf"].circuit)
    parking = Parking(PARKING, Metrics(), clock=clock)
    return Processor(SETTINGS, targets, plain._executor, Metrics(), ledger, parking=parking), parking


async def test_an_open_circuit_parks_the_command_before_any_call_and_its_key_follows() -> None:
    transport, clock = FakeTransport.scripted([]), FakeClock(1_000.0)
    proc, parking = parking_processor(transport, clock)
    proc._targets["wf"].breaker.record_failure()  # threshold 1: open
    first = await proc.process(record(workfloo(id="c-1")))
    assert isinstance(first, Outgoing) and first.topic == PARKING.topics.parked and first.partition == 2
    at = read_parked(first.headers)
    assert at is not None and (at.offset, at.due_ms, at.until_ms, at.reason) == (
        40,
        1_005_000,
        1_060_000,
        "circuit_open",
    )
    assert transport.calls == []
    later = Incoming(SETTINGS.topics.run_commands, 2, 41, b"key-1", first.value, (), None)
    assert parking.reason(later, proc._targets["wf"], shed=False) == "key_parked"


async def test_a_parked_command_comes_back_by_its_deadline_and_is_answered_expired() -> None:
    transport, clock = FakeTransport.scripted([]), FakeClock(1_000.0)
    proc, _ = parking_processor(transport, clock)
    proc._targets["wf"].breaker.record_failure()  # open: park, due after retry_s (5 s) at the latest
    parked = await proc.process(record(workfloo(id="c-1", ttl_s=3), age_s=1))
    at = read_parked(parked.headers)
    assert at is not None and at.reason == "circuit_open"
    assert 1_001_500 <= at.due_ms <= 1_002_000  # its ttl ends in about 2 s: sooner than retry_s
    assert at.until_ms == 1_060_000  # the longest wait is unchanged
    stale = (at.timestamp_ms or 0) - 10_000  # the command record, as if it came back ten seconds later
    back = Incoming(SETTINGS.topics.run_commands, 2, 40, b"key-1", parked.value, tuple(parked.headers), stale)
    out = await proc.process(back)
    assert out.outcome is not None and out.outcome.error is not None
    assert (out.outcome.status, out.outcome.error.kind) == (Status.REJECTED, ErrorKind.EXPIRED)
    assert transport.calls == []


async def test_a_command_parked_past_its_longest_wait_is_answered_with_the_refusal() -> None:
    transport, clock = FakeTransport.scripted([]), FakeClock(1_000.0)
    proc, _ = parking_processor(transport, clock)
    proc._targets["wf"].breaker.record_failure()
    parked = await proc.process(record(workfloo(id="c-1")))
    clock.now += 61  # beyond max_delay_s
    back = Incoming(SETTINGS.topics.run_commands, 2, 40, b"key-1", parked.value, tuple(parked.headers), None)
    proc._targets["wf"].breaker.record_failure()  # still open
    out = await proc.process(back)
    assert out.outcome is not None and out.outcome.error is not None
    assert (out.outcome.status, out.outcome.error.kind) == (Status.ERROR, ErrorKind.CIRCUIT_OPEN)
    assert out.outcome.source.offset == 40  # answered as the command record it was


async def test_a_replayed_command_counts_as_replayed_not_consumed_again() -> None:
    metrics = Metrics()
    plain = make_processor(FakeTransport.scripted([]))
    proc = Processor(SETTINGS, plain._targets, plain._executor, metrics, None)
    topic = SETTINGS.topics.run_commands

    def count(name: str) -> float | None:
        return metrics.registry.get_sample_value(name, {"topic": topic})

    await proc.process(record({"id": "c-1"}))  # consumed once (an invalid command: no call)
    await proc.replay(record({"id": "c-1"}))  # and brought back from the parking topic
    assert (count("bridge_commands_consumed_total"), count("bridge_replayed_total")) == (1.0, 1.0)


async def test_a_retry_after_beyond_the_budget_parks_after_the_call_until_it_is_over() -> None:
    transport, clock = (
        FakeTransport.scripted([json_response(503, **{"Retry-After": "20"})]),
        FakeClock(1_000.0),
    )
    proc, parking = parking_processor(transport, clock)
    out = await proc.process(record(workfloo()))  # 20 s is beyond the 10 s budget: not waited in memory
    at = read_parked(out.headers)
    assert out.topic == PARKING.topics.parked and at is not None
    assert (at.reason, at.due_ms, at.until_ms) == ("retry_after", 1_020_000, 1_060_000)
    assert len(transport.calls) == 1 and parking.parked.holds(
        (out_topic := SETTINGS.topics.run_commands, 2), b"key-1", 40
    )
    assert out_topic == at.topic


async def test_a_command_waiting_when_the_circuit_opens_parks_and_the_ledger_forgets_its_dispatch() -> None:
    transport, clock = FakeTransport.scripted([json_response(500)]), FakeClock(1_000.0)
    producer = FakeProducer()
    ledger = Ledger(SETTINGS, producer, Metrics(), clock=lambda: NOW_MS / 1000)  # type: ignore[arg-type]
    proc, _ = parking_processor(transport, clock, ledger)
    rec = record(workfloo())
    out = await proc.process(rec)  # the 500 opens the circuit; its retry finds it open, 30 s > the budget
    at = read_parked(out.headers)
    assert out.topic == PARKING.topics.parked and at is not None and at.reason == "circuit_open"
    assert [(topic, value is None) for topic, _, _, value in producer.sent] == [
        (SETTINGS.topics.ledger, False)
    ]
    (tombstone,) = out.then  # published after the parked record: the dispatched entry is forgotten
    assert (tombstone.topic, tombstone.key, tombstone.value) == (
        SETTINGS.topics.ledger,
        entry_key(rec.topic, "c-1"),
        None,
    )
    again = await ledger.admit(rec.topic, rec.partition, rec.offset, (), proc._parse(rec).command)  # type: ignore[union-attr]
    assert again.admission is Admission.NEW  # back from parking it runs as new, not as in doubt


def test_a_ledger_tombstone_forgets_the_dispatched_entry_on_restore() -> None:
    ledger = Ledger(SETTINGS, FakeProducer(), Metrics(), clock=lambda: NOW_MS / 1000)  # type: ignore[arg-type]
    fresh = {("cmd", 0): CommandIndex(SETTINGS.ledger.retention_s)}
    key, value = encode_dispatched("cmd", "c-1", 7, 40, NOW_MS)
    ledger._load(fresh, 0, key, value, NOW_MS)
    assert fresh[("cmd", 0)].get("c-1") is not None
    ledger._load(fresh, 0, key, None, NOW_MS)
    assert fresh[("cmd", 0)].get("c-1") is None
