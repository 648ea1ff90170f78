"""Per-target bulkheads and bounded waiting (issue 12): one target's trouble never holds the others."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest
from aiokafka import TopicPartition

from bridge.app import build_targets
from bridge.config.settings import EngineSettings
from bridge.kafka.engine import Engine
from bridge.messages.outcomes import ErrorKind, Status
from bridge.messages.parsed import Invalid, ParseResult
from bridge.messages.records import Incoming, Outgoing
from bridge.observability.health import Readiness, degraded
from bridge.observability.metrics import Metrics
from bridge.parking.records import read_parked
from bridge.parking.state import Parking
from bridge.pipeline.bulkheads import Bulkheads, TargetLoad, target_troubles
from bridge.pipeline.guards import CircuitBreaker, CircuitState
from bridge.pipeline.processor import Processor
from bridge.providers.settings import parse_settings
from bridge.testing import FakeConsumer, FakeProducer, FakeTransport, json_response
from tests.unit.kafka.test_engine import until
from tests.unit.pipeline.test_executor import OK, TIMEOUT, command, executor, runtime
from tests.unit.pipeline.test_processor import SETTINGS, record, workfloo
from tests.unit.pipeline.test_processor import processor as make_processor

RATE_LIMITED = json_response(429, b"{}", **{"Retry-After": "30"})


def load(limit: int = 2, **fields: Any) -> TargetLoad:
    """A target's load; ``down`` (its circuit is not closed) unless told otherwise."""
    fields.setdefault("down", True)
    return TargetLoad("a", limit, fields.pop("max_calls", 4), 10.0, fields.pop("max_unanswered", 3), **fields)


def test_records_beyond_a_targets_share_are_shed_and_set_its_pressure() -> None:
    a = load(limit=2)
    assert [a.enter(0.0), a.enter(0.0)] == [False, False]
    assert a.pressure.is_set()  # at its share: the next one is turned away
    assert a.enter(0.0) is True and a.shed == 1
    a.leave(True)
    a.leave(False)
    assert (a.in_flight, a.shed, a.pressure.is_set()) == (1, 0, False)


def test_a_healthy_target_with_a_backlog_is_never_shed_until_its_circuit_opens() -> None:
    a = load(limit=1, down=False)
    assert [a.enter(0.0), a.enter(0.0)] == [False, False] and not a.pressure.is_set()
    a.circuit_changed(closed=False)
    assert a.pressure.is_set() and a.enter(0.0) is True
    a.circuit_changed(closed=True)
    assert not a.pressure.is_set() and a.enter(0.0) is False


def test_calls_in_flight_that_nobody_answers_count_as_a_silent_target() -> None:
    a = load(max_unanswered=3)
    tokens = [a.call_started(100.0) for _ in range(3)]
    assert not a.unanswered(105.0)  # not yet silent for 10 s
    assert a.unanswered(110.0)
    a.call_ended(tokens[0], 111.0, answered=True)
    a.call_started(112.0)
    assert not a.unanswered(125.0)  # it answered one after the oldest left began


def test_the_oldest_call_still_in_flight_is_the_one_that_counts_whatever_order_calls_end_in() -> None:
    a = load(max_unanswered=2)
    first, second = a.call_started(100.0), a.call_started(103.0)
    a.call_started(106.0)
    a.call_ended(second, 107.0, answered=False)  # the middle one ends first, unanswered
    assert a.unanswered(110.0)  # the oldest, begun at 100, is 10 s old
    a.call_ended(first, 111.0, answered=False)
    a.call_started(112.0)
    assert not a.unanswered(115.9) and a.unanswered(116.0)  # now the one begun at 106


def test_a_start_read_from_the_clock_out_of_order_counts_as_the_newest() -> None:
    a = load(max_unanswered=1)
    a.call_started(100.0)
    a.call_started(99.0)  # a caller that read the clock before the last one began
    a.call_ended(next(iter(a._calls)), 101.0, answered=False)
    assert not a.unanswered(109.9) and a.unanswered(110.0)  # taken as begun at 100, never older


def test_a_target_that_stops_answering_is_stalled_after_four_times_its_answer_time() -> None:
    a = load(max_unanswered=2, down=False)  # silent_s 10
    a.call_ended(a.call_started(0.0), 1.0, answered=True)  # it answers in 1 s
    tokens = [a.call_started(10.0), a.call_started(10.0)]
    assert not a.stalled(13.9)  # not yet 4 x 1 s
    assert a.stalled(14.1) and not a.unanswered(14.1)  # stalled long before silent_s opens the circuit
    a.call_ended(tokens[0], 15.0, answered=True)
    a.call_started(16.0)
    assert not a.stalled(25.0)  # it answered one after the oldest left began


def test_a_fast_target_is_stalled_only_after_a_quarter_of_silent_s() -> None:
    a = load(max_unanswered=1, down=False)
    a.call_ended(a.call_started(0.0), 0.01, answered=True)  # 4 x 0.01 s would be 0.04 s
    a.call_started(1.0)
    assert not a.stalled(3.4) and a.stalled(3.6)  # a burst's first answers may be late: 10 / 4 s


def test_a_target_never_answered_is_stalled_only_after_silent_s() -> None:
    a = load(max_unanswered=1, down=False)
    a.call_started(0.0)
    assert not a.stalled(9.9) and a.stalled(10.0)


def test_a_stalled_target_at_its_share_sheds_and_a_busy_healthy_one_does_not() -> None:
    a = load(limit=1, max_unanswered=1, down=False)
    a.call_ended(a.call_started(0.0), 1.0, answered=True)
    a.call_started(10.0)
    assert a.enter(11.0) is False  # within its share
    assert a.enter(11.0) is False  # beyond it, but answers may still come (4 x 1 s not yet passed)
    assert a.enter(14.5) is True


def fake_parse(record: Incoming) -> ParseResult:
    if record.value == b"boom":
        raise ValueError("a parser bug")
    target = (record.value or b"").decode()
    return Invalid(f"id-{record.offset}", target, None, ErrorKind.VALIDATION, "fake")


def incoming(offset: int, target: bytes, key: bytes | None = None) -> Incoming:
    return Incoming("cmd", 0, offset, key or f"k{offset}".encode(), target)


def test_bulkheads_count_per_target_keep_the_parse_and_survive_a_parser_bug() -> None:
    metrics = Metrics()
    heads = Bulkheads(fake_parse, {"a": load(limit=1)}, metrics)
    first, second, other, broken = (
        incoming(0, b"a"),
        incoming(1, b"a"),
        incoming(2, b"b"),
        incoming(3, b"boom"),
    )
    for r in (first, second, other, broken):
        heads.accept(r)
    assert [heads.is_shed(r) for r in (first, second, other, broken)] == [False, True, False, False]
    assert isinstance(heads.parsed(first), Invalid) and heads.parsed(broken) is None
    assert heads.shedding() == ["a"]
    assert metrics.registry.get_sample_value("bridge_shed_total", {"target": "a"}) == 1
    heads.release(second)
    assert heads.shedding() == [] and heads.loads["a"].in_flight == 1


async def test_a_held_command_is_answered_at_once_when_the_circuit_reopens_after_its_budget() -> None:
    target = runtime(
        circuit={"failure_threshold": 1, "open_s": 300}, retry={"max_attempts": 1, "budget_s": 5}
    )
    run, sleeps = executor(FakeTransport.scripted([TIMEOUT]))
    target.breaker = CircuitBreaker(target.settings.circuit, clock=sleeps.clock)
    await run.execute(target, command(id="c-1"))
    held = await run.execute(target, command(id="c-2"))
    assert held.error is not None and held.error.kind is ErrorKind.CIRCUIT_OPEN
    assert sleeps.delays == []  # it never waited for a probe it could not live to see


async def test_a_held_command_goes_when_the_probe_comes_within_its_deadline() -> None:
    target = runtime(circuit={"failure_threshold": 1, "open_s": 3}, retry={"max_attempts": 1})
    run, sleeps = executor(FakeTransport.scripted([TIMEOUT, OK]))
    target.breaker = CircuitBreaker(target.settings.circuit, clock=sleeps.clock)
    await run.execute(target, command(id="c-1"))
    refused = await run.execute(target, command(id="c-2"), deadline=sleeps.clock.now + 2)
    assert refused.error is not None and refused.error.kind is ErrorKind.CIRCUIT_OPEN
    passed = await run.execute(target, command(id="c-3"), deadline=sleeps.clock.now + 4)
    assert passed.status is Status.QUEUED and sum(sleeps.delays) == pytest.approx(3)


async def test_a_retry_after_beyond_the_deadline_ends_the_command_now() -> None:
    target = runtime(retry={"max_retry_after_s": 60})
    run, sleeps = executor(FakeTransport.scripted([RATE_LIMITED]))
    decision = await run.execute(target, command(), deadline=sleeps.clock.now + 10)
    assert decision.error is not None and decision.error.kind is ErrorKind.RATE_LIMITED
    assert (decision.attempts, sleeps.delays) == (1, [])


async def test_a_full_bulkhead_cuts_the_wait_of_a_retrying_command() -> None:
    target = runtime(retry={"max_retry_after_s": 60})
    target.load = load(limit=1)
    forever = asyncio.Event()

    async def never(_: float) -> None:
        await forever.wait()

    run, _ = executor(FakeTransport.scripted([RATE_LIMITED]))
    run._sleep = never  # the Retry-After wait would last until the test ends
    waiting = asyncio.create_task(run.execute(target, command()))
    await until(lambda: target.load is not None and target.load.calls == 0 and len(run._transport.calls) == 1)  # type: ignore[attr-defined]
    target.load.enter(0.0)  # another command of the target fills its share
    decision = await asyncio.wait_for(waiting, 1)
    assert decision.error is not None and decision.error.kind is ErrorKind.RATE_LIMITED
    assert decision.attempts == 1


async def test_a_slow_call_counts_as_a_failure_for_the_circuit() -> None:
    target = runtime(circuit={"failure_threshold": 1, "slow_call_s": 10})
    run, sleeps = executor(FakeTransport(lambda call: slow_ok(sleeps.clock)))
    decision = await run.execute(target, command())
    assert decision.status is Status.QUEUED  # the answer stands
    assert target.breaker.state is CircuitState.OPEN


def slow_ok(clock: Any) -> Any:
    clock.now += 11
    return OK


async def test_a_target_that_answers_no_call_opens_its_circuit_without_waiting_for_timeouts() -> None:
    target = runtime(circuit={"mode": "fail_fast"})
    target.load = load(limit=100, max_unanswered=3)
    run, sleeps = executor(FakeTransport.scripted([]))
    for _ in range(3):
        target.load.call_started(sleeps.clock.now)  # three calls hang
    sleeps.clock.now += 10
    decision = await run.execute(target, command())
    assert decision.error is not None and decision.error.kind is ErrorKind.CIRCUIT_OPEN
    assert target.breaker.state is CircuitState.OPEN


async def test_no_free_call_slot_under_pressure_is_target_busy_without_a_call() -> None:
    target = runtime()
    target.load = load(limit=1, max_calls=1)
    assert await target.load.acquire_call(1.0)  # one call in progress holds the only slot
    target.load.enter(0.0)
    run, _ = executor(FakeTransport.scripted([]))
    decision = await run.execute(target, command())
    assert decision.error is not None and decision.error.kind is ErrorKind.TARGET_BUSY
    assert decision.attempts == 0 and decision.error.retryable


async def test_the_processor_answers_a_shed_record_target_busy_without_calling() -> None:
    transport = FakeTransport.scripted([])
    plain = make_processor(transport)
    shedding = Processor(
        SETTINGS, plain._targets, plain._executor, Metrics(), None, loads={"wf": load(limit=0)}
    )
    assert shedding.bulkheads is not None
    rec = record(workfloo())
    shedding.bulkheads.accept(rec)
    out = await shedding.process(rec)
    assert out.outcome is not None and out.outcome.error is not None
    assert (out.outcome.status, out.outcome.error.kind) == (Status.ERROR, ErrorKind.TARGET_BUSY)
    assert transport.calls == []


async def test_with_parking_a_shed_record_is_parked_at_once_not_answered() -> None:
    transport = FakeTransport.scripted([])
    plain = make_processor(transport)
    parking = Parking(SETTINGS, Metrics())
    shedding = Processor(
        SETTINGS,
        plain._targets,
        plain._executor,
        Metrics(),
        None,
        loads={"wf": load(limit=0)},
        parking=parking,
    )
    assert shedding.bulkheads is not None
    rec = record(workfloo())
    shedding.bulkheads.accept(rec)
    assert shedding.bulkheads.out_of_turn(rec)  # the engine runs it at once, not behind its key
    out = await shedding.process(rec)
    assert out.topic == SETTINGS.topics.parked and out.outcome is None
    assert read_parked(out.headers).reason == "bulkhead_full"  # type: ignore[union-attr]
    assert parking.parked.holds((rec.topic, rec.partition), b"key-1", rec.offset)
    assert transport.calls == []


def test_without_parking_a_shed_record_keeps_its_place_behind_its_key() -> None:
    heads = Bulkheads(fake_parse, {"a": load(limit=0)}, Metrics())
    rec = incoming(1, b"a")
    heads.accept(rec)
    assert heads.is_shed(rec) and not heads.out_of_turn(rec)


async def test_the_engine_runs_an_out_of_turn_record_while_its_key_is_busy() -> None:
    a = load(limit=1)
    heads = Bulkheads(fake_parse, {"a": a}, Metrics(), park_shed=True)
    gate = asyncio.Event()

    async def handler(rec: Incoming) -> Outgoing:
        if not heads.is_shed(rec):
            await gate.wait()  # the key's head hangs
        return Outgoing("out", rec.key, str(rec.offset).encode())

    consumer, producer = FakeConsumer(), FakeProducer()
    settings = EngineSettings(max_in_flight=16, commit_interval_s=0.01)
    engine = Engine(consumer, producer, handler, {"cmd": "run"}, settings, Metrics(), shares=heads)
    task = asyncio.create_task(engine.run())
    await until(lambda: consumer.topics_subscribed == ["cmd"])
    await consumer.rebalance([TopicPartition("cmd", 0)])
    for _ in range(3):
        consumer.add("cmd", b"a", key=b"k", partition=0)
    await until(lambda: producer.values("out") == [b"1", b"2"])  # shed ones went past the hanging head
    home = engine.partition("cmd", 0)
    assert home is not None and home.holds_before(b"k", 1) and not home.holds_before(b"k", 0)
    gate.set()
    await until(lambda: producer.values("out") == [b"1", b"2", b"0"])
    assert not home.holds_before(b"k", 1)
    engine.request_stop()
    await asyncio.wait_for(task, 5)


async def trickle(*, lanes: bool) -> tuple[bool, list[str]]:
    """Target a makes its commands wait (as a Retry-After or an open circuit does) up to 50 ms, or until
    its share of 3 is full; 4 keys of a and 4 of b get one record each every 2 ms. Returns whether
    fetching ever paused, and the answers as 'offset:shed'."""
    a = load(limit=3)
    heads = Bulkheads(fake_parse, {"a": a, "b": load(limit=50)}, Metrics())

    async def handler(rec: Incoming) -> Outgoing:
        if rec.value == b"a" and not heads.is_shed(rec):
            with contextlib.suppress(TimeoutError):  # the executor's waits end when a's bulkhead fills
                await asyncio.wait_for(a.pressure.wait(), 0.05)
        return Outgoing("out", rec.key, f"{rec.offset}:{int(heads.is_shed(rec))}".encode())

    consumer, producer = FakeConsumer(), FakeProducer()
    settings = EngineSettings(max_in_flight=16, commit_interval_s=0.01)
    engine = Engine(
        consumer, producer, handler, {"cmd": "run"}, settings, Metrics(), shares=heads if lanes else None
    )
    task = asyncio.create_task(engine.run())
    await until(lambda: consumer.topics_subscribed == ["cmd"])
    await consumer.rebalance([TopicPartition("cmd", 0)])
    paused = False
    for i in range(100):
        consumer.add("cmd", b"a" if i % 2 == 0 else b"b", key=f"k{i % 8}".encode(), partition=0)
        if i % 2:
            await asyncio.sleep(0.002)
            paused = paused or engine.paused
    answered = lambda: [v.decode() for v in producer.values("out") if v]  # noqa: E731
    await until(lambda: len(answered()) == 100, 10)
    engine.request_stop()
    await asyncio.wait_for(task, 5)
    return paused, answered()


async def test_the_engine_never_pauses_for_a_target_beyond_its_share() -> None:
    paused, answered = await trickle(lanes=True)
    assert not paused
    offsets = [int(v.split(":")[0]) for v in answered]
    for key in range(8):  # per-key order
        mine = [o for o in offsets if o % 8 == key]
        assert mine == sorted(mine)


async def test_without_bulkheads_the_waiting_target_fills_the_engine_and_it_pauses() -> None:
    paused, answered = await trickle(lanes=False)
    assert paused and len(answered) == 100


def test_readiness_names_the_targets_in_trouble_and_stays_ready() -> None:
    down, fine = runtime(circuit={"failure_threshold": 1}), runtime()
    down.breaker.record_failure()
    troubles = target_troubles([down, fine])
    assert troubles == ["wf (circuit open)"]
    verdict = degraded(Readiness(True, "ok: 2 partition(s), 0 in flight"), troubles)
    assert verdict.ready and "degraded: wf (circuit open)" in verdict.reason
    stalled = Readiness(False, "stalled: ...")
    assert degraded(stalled, troubles) is stalled


async def test_a_command_waiting_for_a_call_slot_trips_a_target_that_answers_no_call() -> None:
    target = runtime()
    run, sleeps = executor(FakeTransport.scripted([]))
    a = TargetLoad("wf", limit=1, max_calls=1, silent_s=0.05, max_unanswered=2)
    target.load = a
    target.breaker = CircuitBreaker(
        target.settings.circuit,
        clock=sleeps.clock,
        on_change=lambda s: a.circuit_changed(s is CircuitState.CLOSED),
    )
    assert await a.acquire_call(1.0)
    a.call_started(sleeps.clock.now - 60)  # a call that has hung for a minute holds the only slot
    a.enter(0.0)
    waiting = asyncio.create_task(run.execute(target, command()))
    await asyncio.sleep(0.01)  # it passed the circuit (one silent call is not enough) and waits for the slot
    a.call_started(sleeps.clock.now - 60)
    decision = await asyncio.wait_for(waiting, 2)
    assert decision.error is not None and decision.error.kind is ErrorKind.TARGET_BUSY
    assert target.breaker.state is CircuitState.OPEN


def test_call_slots_default_to_the_targets_share_so_a_healthy_target_is_not_capped_by_a_guess() -> None:
    wf = {"provider": "workfloo", "base_url": "https://wf.example", "api_key": {"env": "K"}}
    targets = {"open": wf, "capped": {**wf, "bulkhead": {"max_in_flight": 300, "max_calls": 16}}}
    settings = parse_settings({"targets": targets, "engine": {"max_in_flight": 800}}, {"K": "k-123456789"})
    built = build_targets(settings, None, Metrics())  # type: ignore[arg-type]  # static-key targets only
    open_load, capped_load = built["open"].load, built["capped"].load
    assert open_load is not None and capped_load is not None
    assert (open_load.limit, open_load.max_calls) == (400, 400)  # half of engine.max_in_flight, both
    assert (capped_load.limit, capped_load.max_calls) == (300, 16)
