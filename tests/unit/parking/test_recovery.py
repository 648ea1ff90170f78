"""Parked work comes back when its target does (bridge/parking/recovery.py, issue 25.1): the probe, one
at a time, while the circuit would let one through; everything parked before a success once the
circuit is closed, at most ``bulkhead.max_calls`` at a time; a provider's own rate limit waits its
time; and the replay routine brings a record due in an hour back at once when its target is back."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from prometheus_client import generate_latest

from bridge.config.targets import CircuitSettings
from bridge.observability.health import Readiness, degraded
from bridge.parking.records import ParkedAt, parked_headers, read_parked
from bridge.parking.recovery import Recovery
from bridge.pipeline.executor import TargetRuntime
from bridge.pipeline.guards import CircuitBreaker, CircuitState
from bridge.testing import FakeTransport
from tests.fakes import FakeClock
from tests.unit.kafka.test_engine import until
from tests.unit.parking.test_parking import PARKING, parking_processor
from tests.unit.parking.test_replay import TOPIC, Fetcher, ParkedRecord, recorded
from tests.unit.pipeline.test_processor import processor as make_processor
from tests.unit.pipeline.test_processor import record, workfloo


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def runtime(clock: Clock, max_calls: int = 2) -> TargetRuntime:
    target = make_processor(FakeTransport.scripted([]))._targets["wf"]
    settings = target.settings.model_copy(
        update={"bulkhead": target.settings.bulkhead.model_copy(update={"max_calls": max_calls})}
    )
    breaker = CircuitBreaker(CircuitSettings(failure_threshold=1, open_s=30), clock=clock)
    return TargetRuntime("wf", settings, target.provider, breaker, target.bucket, ssl=False)


def at(offset: int, since_s: float, *, recovers: bool = True, target: str = "wf") -> ParkedAt:
    since_ms = int(since_s * 1000)
    return ParkedAt(
        TOPIC, offset, None, since_ms + 3_600_000, 2**62, 1, "circuit_open", target, since_ms, recovers
    )


def test_the_recovery_fields_survive_the_headers_and_old_records_never_come_back_early() -> None:
    parked = at(7, 1000.0)
    assert read_parked(parked_headers(parked, [])) == parked
    old = read_parked(parked_headers(ParkedAt(TOPIC, 7, None, 1, 2, 1, "circuit_open"), []))
    assert old is not None and not old.recovers and old.target == ""
    clock = Clock(2000.0)
    recovery = Recovery({"wf": runtime(clock)}, clock=clock)
    assert recovery.release(old) is None


def test_an_open_circuit_lets_one_parked_command_come_back_as_its_probe_once_open_s_passed() -> None:
    clock = Clock(1000.0)
    target = runtime(clock)
    recovery = Recovery({"wf": target}, clock=clock)
    target.breaker.record_failure()  # open for 30 s
    assert target.breaker.state is CircuitState.OPEN
    assert recovery.release(at(1, 999.0)) is None  # refusing: nothing comes back
    clock.now += 31
    assert recovery.release(at(1, 999.0)) == "probe"
    assert recovery.release(at(2, 999.0)) is None  # one probe at a time
    recovery.ended(at(1, 999.0))
    assert recovery.release(at(2, 999.0)) is None  # and at most one a second
    clock.now += 1.5
    assert recovery.release(at(2, 999.0)) == "probe"


def test_once_a_call_succeeds_everything_parked_before_comes_back_within_the_call_slots() -> None:
    clock = Clock(1000.0)
    target = runtime(clock, max_calls=2)
    recovery = Recovery({"wf": target}, clock=clock)
    target.breaker.record_failure()
    clock.now += 31
    assert recovery.release(at(1, 999.0)) == "probe"
    target.breaker.wait_s()  # the probe's call goes (half open) and succeeds
    clock.now += 0.2
    target.breaker.record_success()
    assert target.breaker.state is CircuitState.CLOSED
    assert recovery.release(at(2, 999.0)) == "recovered"
    assert recovery.release(at(3, 999.0)) is None  # two call slots: the probe and offset 2 hold them
    recovery.ended(at(1, 999.0))
    assert recovery.release(at(3, 999.0)) == "recovered"
    assert recovery.running("wf") == 2
    # parked after the success: its target failed it again since, so it waits (or probes)
    assert recovery.release(at(4, clock.now + 1)) is None


def test_a_provider_rate_limit_holds_its_record_whatever_the_circuit_does() -> None:
    clock = Clock(1000.0)
    target = runtime(clock)
    recovery = Recovery({"wf": target}, clock=clock)
    target.breaker.record_success()
    clock.now += 5
    target.breaker.record_success()
    assert recovery.release(at(1, 1001.0, recovers=False)) is None
    assert recovery.release(at(2, 1001.0)) == "recovered"
    assert recovery.release(at(3, 1001.0, target="other")) is None  # not a target of this bridge


def live_runtime(open_s: float, probe_s: float, max_calls: int = 2) -> TargetRuntime:
    """A target on the real clocks (the breaker's monotonic one, the recovery's wall clock), so that
    only the recovery's own timer and the breaker's news can bring parked work back."""
    target = make_processor(FakeTransport.scripted([]))._targets["wf"]
    settings = target.settings.model_copy(
        update={
            "bulkhead": target.settings.bulkhead.model_copy(update={"max_calls": max_calls}),
            "parking": target.settings.parking.model_copy(update={"probe_s": probe_s}),
            "circuit": target.settings.circuit.model_copy(update={"open_s": open_s}),
        }
    )
    breaker = CircuitBreaker(CircuitSettings(failure_threshold=1, open_s=open_s))
    return TargetRuntime("wf", settings, target.provider, breaker, target.bucket, ssl=False)


async def test_a_record_due_in_an_hour_comes_back_at_once_when_its_target_is_back() -> None:
    ran, run, parking = recorded()
    target = live_runtime(open_s=0.5, probe_s=30)
    parking.recovery.watch({"wf": target})
    target.breaker.record_failure()  # down: open for 0.5 s
    fetcher = Fetcher()
    since = time.time() - 1
    fetcher.waiting = [
        ParkedRecord(n, f"k{n}".encode(), b"{}", parked_headers(at(10 + n, since), [])) for n in range(3)
    ]
    opened = time.monotonic()
    await run.round(fetcher)
    await asyncio.sleep(0.3)
    assert ran == []  # the circuit refuses: nothing comes back
    waiting = parking._metrics.registry.get_sample_value
    assert waiting("bridge_parked_waiting_commands", {"target": "wf"}) == 3
    await until(lambda: len(ran) == 1)  # open_s passed: one of them comes back as the probe
    assert time.monotonic() - opened >= 0.5
    await asyncio.sleep(0.3)
    assert len(ran) == 1  # one probe at a time: its call is under way (half open)
    target.breaker.wait_s()
    target.breaker.record_success()  # the probe's call succeeded: the rest come back now
    await until(lambda: len(ran) == 3, within_s=0.5)
    assert sorted(ran) == [10, 11, 12]
    await run.round(fetcher)
    assert waiting("bridge_parked_waiting_commands", {"target": "wf"}) == 0
    run.stop()


class CountingRecovery(Recovery):
    """Counts how often a parked record is asked about (each time a waiter of it woke, before)."""

    asked = 0

    def release(self, at: ParkedAt) -> str | None:
        self.asked += 1
        return super().release(at)


async def test_parked_records_of_a_down_target_sleep_until_the_target_tells_them() -> None:
    ran, run, parking = recorded()
    recovery = parking.recovery = CountingRecovery()
    target = live_runtime(open_s=30, probe_s=30, max_calls=64)
    recovery.watch({"wf": target})
    target.breaker.record_failure()  # down for 30 s: nothing may go before
    fetcher = Fetcher()
    since = time.time() - 1
    fetcher.waiting = [
        ParkedRecord(n, f"k{n}".encode(), b"{}", parked_headers(at(100 + n, since), [])) for n in range(200)
    ]
    await run.round(fetcher)
    await asyncio.sleep(0.05)
    asked = recovery.asked
    assert asked <= 200  # once when each began to wait (the first refused holds back the rest)
    await asyncio.sleep(1.2)
    assert ran == [] and recovery.asked == asked  # nobody woke: polling asked 400 times in 1.2 s
    target.breaker.probe_now()
    target.breaker.wait_s()  # a new command's call is the probe ...
    target.breaker.record_success()  # ... and succeeds: all 200 parked before come back
    await until(lambda: len(ran) == 200)
    # each let go once, and after each end one more held back by the full call slots (64 of them)
    assert recovery.asked - asked <= 2 * 200 + 2
    run.stop()


async def test_a_park_names_the_command_id_target_and_reason_in_its_log_line_and_metrics_by_target(
    caplog: pytest.LogCaptureFixture,
) -> None:
    transport, clock = FakeTransport.scripted([]), FakeClock(1_000.0)
    proc, parking = parking_processor(transport, clock)
    proc._targets["wf"].breaker.record_failure()  # open: the command parks before any call
    with caplog.at_level(logging.INFO, logger="bridge.parking"):
        parked = await proc.process(record(workfloo(id="c-77")))
    assert parked.topic == PARKING.topics.parked
    (line,) = [r for r in caplog.records if r.name == "bridge.parking"]
    assert "c-77" in line.getMessage() and "wf" in line.getMessage() and "circuit_open" in line.getMessage()
    assert (line.command_id, line.target, line.reason) == ("c-77", "wf", "circuit_open")  # type: ignore[attr-defined]
    at = read_parked(parked.headers)
    assert at is not None and (at.target, at.recovers, at.since_ms) == ("wf", True, 1_000_000)
    sample = parking._metrics.registry.get_sample_value
    assert sample("bridge_parked_total", {"target": "wf", "reason": "circuit_open"}) == 1
    exposition = generate_latest(parking._metrics.registry).decode()
    assert "c-77" not in exposition  # never a command id in a label: one series per command would explode


def test_readiness_says_parked_when_parking_is_on() -> None:
    ok = Readiness(True, "ok: 2 partition(s), 0 in flight")
    parked = degraded(ok, ["wf (circuit open)"], parking=True)
    assert parked.ready and "parked" in parked.reason and "answered at once" not in parked.reason
    answered = degraded(ok, ["wf (circuit open)"], parking=False)
    assert "answered at once" in answered.reason and "parked" not in answered.reason


def test_a_down_target_with_parked_work_is_probed_every_probe_s_even_when_open_s_is_longer() -> None:
    clock = Clock(1000.0)
    target = runtime(clock)  # open_s 30, parking.probe_s 5 (the default)
    recovery = Recovery({"wf": target}, clock=clock)
    target.breaker.record_failure()
    clock.now += 4.9
    assert recovery.release(at(1, 999.0)) is None
    clock.now += 0.2
    assert recovery.release(at(1, 999.0)) == "probe"
    assert target.breaker.state is CircuitState.HALF_OPEN and not target.breaker.refusing()
    assert target.breaker.wait_s() == 0  # the probe's call goes
    target.breaker.record_failure()  # still down: open again, the next probe in 5 s
    recovery.ended(at(1, 999.0))
    clock.now += 2
    assert recovery.release(at(1, 999.0)) is None
    clock.now += 3.1
    assert recovery.release(at(1, 999.0)) == "probe"


def test_a_probe_whose_call_failed_does_not_hold_up_the_next_while_its_command_still_runs() -> None:
    clock = Clock(1000.0)
    target = runtime(clock)
    recovery = Recovery({"wf": target}, clock=clock)
    target.breaker.record_failure()
    clock.now += 5.1
    assert recovery.release(at(1, 999.0)) == "probe"  # half-opened for it
    assert target.breaker.wait_s() == 0
    clock.now += 2
    assert recovery.release(at(2, 999.0)) is None  # its call is under way: one probe at a time
    target.breaker.record_failure()  # it failed; its command now waits for a retry (not ended)
    clock.now += 5.1
    assert recovery.release(at(2, 999.0)) == "probe"
    assert recovery.running("wf") == 2
