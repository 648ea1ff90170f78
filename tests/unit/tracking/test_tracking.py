"""Tracking without a broker: the timer heap, the backoff policy, the entry codec, the registry, the
poll budget, and the tracker itself on the in-memory producer and HTTP transport."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from dataclasses import replace

import aiohttp
import orjson
import pytest
from aiokafka import TopicPartition

from bridge.app import build_targets
from bridge.config.targets import RateLimitSettings
from bridge.config.tracking import TargetTracking
from bridge.local.stack import local_settings
from bridge.messages.records import Incoming
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor
from bridge.pipeline.guards import TokenBucket
from bridge.providers.readings import ReadFailure, ReadProblem, RunReading, RunState
from bridge.providers.zuora import ZuoraRerunTask, ZuoraRunWorkflow
from bridge.sandbox import workfloo as workfloo_sandbox
from bridge.sandbox import zuora as zuora_sandbox
from bridge.testing import FakeProducer, FakeTransport, json_response
from bridge.tracking.entries import TrackedEntry, decode, encode, entry_key
from bridge.tracking.policy import after_reading, beyond_horizon
from bridge.tracking.registry import Registry
from bridge.tracking.schedule import TimerHeap, Tracked, capped_due, jittered, next_interval
from bridge.tracking.tracker import Tracker, overdue_s
from tests.fakes import FakeClock

TOPIC = "workflow.run.commands"
POLICY = TargetTracking()


def entry(command_id: str = "c-1", partition: int = 3, **changes: object) -> TrackedEntry:
    base = TrackedEntry(
        TOPIC, partition, command_id, "z", "zuora.run_workflow", b"k", (("run_id", "401"),), 7, 0
    )
    return replace(base, **changes)  # type: ignore[arg-type]


# -- the timer heap and the backoff ---------------------------------------------------------------


def test_heap_pops_due_workflows_in_order_and_skips_rescheduled_ones():
    heap = TimerHeap()
    a, b, c = (Tracked(entry(n), 2.0) for n in "abc")
    heap.push(a, 5.0)
    heap.push(b, 1.0)
    heap.push(c, 3.0)
    heap.push(b, 9.0)  # rescheduled: its entry at 1.0 is stale
    assert heap.pop_due(4.0, limit=10) == [c]
    assert heap.next_due() == 5.0
    a.active = False  # finished
    assert heap.next_due() == 9.0
    assert heap.pop_due(100.0, limit=10) == [b]
    assert heap.next_due() is None


def test_pop_due_takes_at_most_limit():
    heap = TimerHeap()
    workflows = [Tracked(entry(str(n)), 2.0) for n in range(5)]
    for n, workflow in enumerate(workflows):
        heap.push(workflow, float(n))
    assert heap.pop_due(10.0, limit=2) == workflows[:2]
    assert heap.pop_due(10.0, limit=10) == workflows[2:]


def test_interval_doubles_to_the_cap_and_waiting_uses_its_own():
    intervals = [2.0]
    for _ in range(10):
        intervals.append(next_interval(intervals[-1], POLICY, waiting=False))
    assert intervals[:5] == [2.0, 4.0, 8.0, 16.0, 32.0]
    assert intervals[-1] == POLICY.max_interval_s == 300.0
    assert next_interval(2.0, POLICY, waiting=True) == POLICY.waiting_interval_s


@pytest.mark.parametrize("roll", [0.0, 0.25, 0.5, 0.999])
def test_jitter_only_ever_shortens_an_interval_within_its_share(roll):
    moved = jittered(10.0, 0.2, roll)
    assert 8.0 < moved <= 10.0
    assert jittered(10.0, 0.0, roll) == 10.0


def test_jitter_spreads_the_reads_over_its_whole_share():
    assert (jittered(10.0, 0.2, 0.0), jittered(10.0, 0.2, 0.5)) == (10.0, 9.0)


def test_no_poll_is_scheduled_past_the_horizon():
    assert capped_due(1_000.0, started_s=0.0, horizon_s=600.0) == 600.0
    assert capped_due(100.0, started_s=0.0, horizon_s=600.0) == 100.0


# -- what a reading means ---------------------------------------------------------------------


def test_a_new_state_is_reported_once():
    workflow = Tracked(entry(), 2.0)
    first = after_reading(workflow, RunReading(RunState.RUNNING, "Queued"), POLICY, 0.0)
    assert first.report == RunReading(RunState.RUNNING, "Queued") and first.next_in_s == 2.0
    workflow.entry = entry(state=RunState.RUNNING)
    again = after_reading(workflow, RunReading(RunState.RUNNING, "Processing"), POLICY, 0.0)
    assert again.report is None and again.interval_s == 4.0  # same state, other provider word: quiet


def test_waiting_changes_report_and_slow_down():
    workflow = Tracked(entry(state=RunState.WAITING, waiting_for="form"), 8.0)
    same = after_reading(workflow, RunReading(RunState.WAITING, "IN_PROGRESS", "form"), POLICY, 0.0)
    assert same.report is None and same.interval_s == POLICY.waiting_interval_s
    other = after_reading(workflow, RunReading(RunState.WAITING, "IN_PROGRESS", "document"), POLICY, 0.0)
    assert other.report is not None and other.report.waiting_for == "document"
    moved_on = after_reading(workflow, RunReading(RunState.RUNNING, "IN_PROGRESS"), POLICY, 0.0)
    assert moved_on.report is not None and moved_on.interval_s == POLICY.first_poll_s


def test_a_terminal_reading_ends_tracking():
    step = after_reading(
        Tracked(entry(), 2.0), RunReading(RunState.FAILED, "Finished", detail="x"), POLICY, 0.5
    )
    assert step.report is not None and step.next_in_s is None


def test_retry_after_is_honoured_and_404_three_times_is_lost():
    workflow = Tracked(entry(), 2.0)
    limited = after_reading(workflow, ReadFailure(ReadProblem.RATE_LIMITED, 90.0), POLICY, 0.0)
    assert limited.report is None and limited.next_in_s == 90.0
    for misses in (1, 2):
        step = after_reading(workflow, ReadFailure(ReadProblem.GONE), POLICY, 0.0)
        assert step.report is None and step.misses == misses
        workflow.misses = step.misses
    lost = after_reading(workflow, ReadFailure(ReadProblem.GONE), POLICY, 0.0)
    assert lost.report is not None and lost.report.state is RunState.LOST and lost.next_in_s is None


def test_horizon():
    workflow = Tracked(entry(started_ms=1_000_000), 2.0)
    assert not beyond_horizon(workflow, POLICY, 1_000.0 + POLICY.horizon_s - 1)
    assert beyond_horizon(workflow, POLICY, 1_000.0 + POLICY.horizon_s)


# -- entries and the registry --------------------------------------------------------------------


def test_entry_round_trip_and_what_is_not_an_entry():
    original = entry(state=RunState.WAITING, waiting_for="otp", seq=2, key=None)
    key, value = encode(original)
    assert key == entry_key(TOPIC, "c-1") == b"trk:workflow.run.commands:c-1"
    assert decode(key, value, 3) == original
    assert decode(key, None, 3) is None  # tombstone
    assert decode(b"cmd:workflow.run.commands:c-1", value, 3) is None  # another kind
    assert decode(key, b"{not json", 3) is None


def test_registry_restores_owns_and_forgets_by_partition():
    registry = Registry(lambda target: 2.0)
    wanted = {(TOPIC, 3), (TOPIC, 4)}
    registry.restore_started(wanted)
    for command_id, partition in (("a", 3), ("b", 3), ("c", 4), ("x", 9)):
        registry.load(partition, *encode(entry(command_id, partition)))
    registry.load(3, entry_key(TOPIC, "b"), None)  # b ended
    registry.load(3, b"cmd:whatever", b"{}")  # the ledger's own kind: not ours
    assert registry.restore_finished(wanted, 100.0, random.Random(1)) == 2
    assert sorted(w.entry.command_id for w in registry.workflows()) == ["a", "c"]
    assert all(100.0 <= w.due <= 102.0 for w in registry.workflows())  # spread over the first interval
    assert registry.add(entry("y", partition=9), 1.0) is None  # not our partition
    registry.forget([TopicPartition(TOPIC, 3)])
    assert [w.entry.command_id for w in registry.workflows()] == ["c"]
    assert registry.per_target["z"] == 1 and len(registry) == 1


def test_polls_take_only_free_tokens_so_commands_go_first():
    clock = FakeClock(0.0)
    bucket = TokenBucket(RateLimitSettings(rate_per_s=2.0, burst=1), clock)
    assert bucket.free_in() == 0.0
    bucket.take()
    assert bucket.free_in() == pytest.approx(0.5)
    assert bucket.reserve() == pytest.approx(0.5)  # a command borrows ahead...
    assert bucket.free_in() == pytest.approx(1.0)  # ...and the poll waits behind it
    clock.now += 1.0
    assert bucket.free_in() == 0.0


# -- the tracker on fakes --------------------------------------------------------------------------


def run_command(command_id: str = "run-1") -> ZuoraRunWorkflow:
    return ZuoraRunWorkflow(
        id=command_id, target=zuora_sandbox.LOCAL_TARGET, operation="zuora.run_workflow", workflow_id=398
    )


def record(offset: int = 11) -> Incoming:
    return Incoming(TOPIC, 2, offset, b"acct-1", b"{}")


async def tracker_on(answers, **tracking):
    tracking = {"first_poll_s": 0.01, "max_interval_s": 0.02, "jitter": 0.0, **tracking}
    settings = local_settings(
        "127.0.0.1:1",
        "http://127.0.0.1:1",
        overrides={"targets": {zuora_sandbox.LOCAL_TARGET: {"tracking": tracking}}},
    )
    session = aiohttp.ClientSession()
    metrics = Metrics()
    targets = build_targets(settings, session, metrics)

    async def no_token(**_: object) -> dict[str, str]:
        return {"Authorization": "Bearer t"}

    targets[zuora_sandbox.LOCAL_TARGET].provider.auth_headers = no_token  # type: ignore[method-assign]
    transport = FakeTransport.scripted(answers)
    producer = FakeProducer()
    executor = Executor(transport, metrics, Redactor(["s3cr3t-value"]), 2048)
    tracker = Tracker(settings, targets, executor, producer, metrics, Redactor(["s3cr3t-value"]))
    tracker.restore_started([(TOPIC, 2)])
    tracker.restore_finished([(TOPIC, 2)])
    return tracker, producer, transport, session, settings


async def wait_for(producer: FakeProducer, topic: str, count: int) -> list[bytes | None]:
    for _ in range(500):
        if len(producer.values(topic)) >= count:
            break
        await asyncio.sleep(0.01)
    return producer.values(topic)


def run_body(status: str, **tasks: int) -> bytes:
    return orjson.dumps({"id": 401, "status": status, "tasks": {"total": 3, **tasks}})


async def test_tracker_follows_a_run_to_its_end_and_deletes_its_entry():
    answers = [
        json_response(200, run_body("Queued", queued=3)),
        json_response(200, run_body("Processing", processing=1)),
        json_response(200, run_body("Finished", error=1, success=2)),
    ]
    tracker, producer, transport, session, settings = await tracker_on(answers)
    started = tracker.start(record(), run_command(), "401")
    assert started is not None and started.topic == settings.topics.ledger and started.partition == 2
    async with tracker.running():
        events = await wait_for(producer, settings.topics.lifecycle, 2)
    await session.close()
    docs = [orjson.loads(v or b"") for v in events]
    assert [d["data"]["status"] for d in docs] == ["running", "failed"]
    assert [d["data"]["sequence"] for d in docs] == [1, 2]
    assert docs[1]["data"]["detail"] == "1 of 3 task(s) ended in error"
    assert {d["subject"] for d in docs} == {"run-1"} and len({d["id"] for d in docs}) == 2
    assert all(r.key == b"acct-1" for r in producer.sent if r.topic == settings.topics.lifecycle)
    entries = [r for r in producer.sent if r.topic == settings.topics.ledger]
    assert [r.value is None for r in entries] == [False, True]  # rewritten, then a tombstone
    assert [c.url.path for c in transport.calls] == ["/zuora/workflows/workflow_runs/401"] * 3
    assert len(tracker.registry) == 0


async def test_commands_without_a_status_read_are_not_tracked():
    tracker, _, _, session, _ = await tracker_on([])
    rerun = ZuoraRerunTask(
        id="r", target=zuora_sandbox.LOCAL_TARGET, operation="zuora.rerun_task", task_id="2770"
    )
    assert tracker.start(record(), rerun, "2771") is None
    assert tracker.start(record(), run_command(), None) is None
    await session.close()


async def test_a_revoked_partition_is_not_reported_by_its_old_owner():
    answers = [json_response(200, run_body("Processing", processing=1))] * 3
    tracker, producer, transport, session, settings = await tracker_on(answers, first_poll_s=0.02)
    tracker.start(record(), run_command(), "401")
    tracker.forget([TopicPartition(TOPIC, 2)])
    async with tracker.running():
        await asyncio.sleep(0.2)
    await session.close()
    assert transport.calls == [] and producer.values(settings.topics.lifecycle) == []


async def test_rate_limited_reads_wait_for_retry_after():
    answers = [json_response(429, b"{}", **{"Retry-After": "30"})]
    tracker, _, transport, session, _ = await tracker_on(answers)
    tracker.start(record(), run_command(), "401")
    async with tracker.running():
        await asyncio.sleep(0.3)  # a second read would fail the scripted transport
    await session.close()
    assert len(transport.calls) == 1
    [workflow] = list(tracker.registry.workflows())
    assert workflow.due >= time.time() + 29


async def test_with_the_budget_below_demand_the_workflow_due_longest_is_read_first():
    # 6 runs due every 0.02 s, 20 reads/s allowed: each read must wait for a token; none may be
    # overtaken by one that came due after it (which starved some runs completely)
    answers = [json_response(200, run_body("Processing", processing=1))] * 40
    tracker, _, transport, session, _ = await tracker_on(answers, polls_per_s=20)
    for n in range(6):
        tracker.start(record(offset=n), run_command(f"run-{n}"), str(400 + n))
    async with tracker.running():
        for _ in range(500):
            if len(transport.calls) >= 12:
                break
            await asyncio.sleep(0.01)
    await session.close()
    first_rounds = Counter(call.url.path for call in transport.calls[:12])
    assert sorted(first_rounds.values()) == [2] * 6, first_rounds  # round after round


async def test_a_stop_that_meets_a_wake_up_still_stops_the_scheduler():
    # on Python 3.11 asyncio.wait_for swallows a cancel that arrives with its event: the routine
    # went on forever and the stop (and this test) hung
    tracker, _, _, session, _ = await tracker_on([])
    async with asyncio.timeout(5):
        async with tracker.running():
            await asyncio.sleep(0.05)  # the scheduler sleeps: nothing is tracked
            assert tracker.start(record(), run_command(), "401") is not None  # wakes it, and we stop
    await session.close()


async def test_a_restored_workflow_of_a_target_no_longer_tracked_ends_lost():
    tracker, producer, transport, session, settings = await tracker_on([])
    tracker.restore_started([(TOPIC, 5)])
    tracker.load(5, *encode(entry("old-1", partition=5, target="retired-target")))
    tracker.restore_finished([(TOPIC, 5)])
    async with tracker.running():
        [event] = await wait_for(producer, settings.topics.lifecycle, 1)
    await session.close()
    doc = orjson.loads(event or b"")
    assert doc["data"]["status"] == "lost" and "retired-target" in doc["data"]["detail"]
    assert transport.calls == [] and len(tracker.registry) == 0


# -- the processor's hook --------------------------------------------------------------------------


class LedgerProducer(FakeProducer):
    """The ledger sends without headers."""

    async def send(self, topic, *, value, key, headers=(), partition=None):  # type: ignore[no-untyped-def]
        return await super().send(topic, value=value, key=key, headers=list(headers), partition=partition)


async def test_the_processor_writes_the_tracked_entry_before_done_and_only_for_started_work():
    from bridge.ledger.store import Ledger
    from bridge.pipeline.processor import Processor

    settings = local_settings("127.0.0.1:1", "http://127.0.0.1:1")
    session = aiohttp.ClientSession()
    metrics = Metrics()
    targets = build_targets(settings, session, metrics)
    answers = [json_response(200, b'{"id": "64a8bc288de4164da93f339c"}'), json_response(404, b"{}")]
    executor = Executor(FakeTransport.scripted(answers), metrics, Redactor(), 2048)
    tracker = Tracker(settings, targets, executor, FakeProducer(), metrics, Redactor())
    ledger = Ledger(settings, LedgerProducer(), metrics, sibling=tracker)  # type: ignore[arg-type]
    processor = Processor(settings, targets, executor, metrics, ledger, track=tracker.start)
    tracker.restore_started([(settings.topics.run_commands, 0)])
    tracker.restore_finished([(settings.topics.run_commands, 0)])
    for n, expected in enumerate(("queued", "rejected")):
        doc = {
            "id": f"w-{n}",
            "target": workfloo_sandbox.LOCAL_TARGET,
            "operation": "workfloo.execute",
            "definition_id": "657117e1d511b6e54fe2a970",
        }
        out = await processor.process(Incoming(settings.topics.run_commands, 0, n, b"k", orjson.dumps(doc)))
        assert out.outcome is not None and out.outcome.status.value == expected
        kinds = [extra.key.split(b":", 1)[0] for extra in out.then if extra.key]
        assert kinds == ([b"trk", b"cmd"] if expected == "queued" else [b"cmd"])
    await session.close()
    assert [w.entry.command_id for w in tracker.registry.workflows()] == ["w-0"]


def test_a_read_is_overdue_by_how_long_it_waited_past_its_due_time():
    assert overdue_s(None, 100.0) == 0.0  # nothing tracked
    assert overdue_s(150.0, 100.0) == 0.0  # due later
    assert overdue_s(40.0, 100.0) == 60.0


async def test_a_target_whose_reads_fall_behind_is_measured_and_said_once(caplog: pytest.LogCaptureFixture):
    caplog.set_level(logging.INFO)
    tracker, _, _, session, _ = await tracker_on([], polls_per_s=5)
    await session.close()  # no read goes out here
    for n in range(3):
        tracker.start(record(offset=n), run_command(f"run-{n}"), str(400 + n))
    behind = tracker._metrics.registry.get_sample_value  # type: ignore[attr-defined]
    labels = {"target": zuora_sandbox.LOCAL_TARGET}
    later = time.time() + 120  # nobody read them for two minutes
    tracker._update_gauges(later)
    tracker._update_gauges(later + 5)
    assert behind("bridge_tracking_behind_seconds", labels) == pytest.approx(125, abs=1)
    warned = [r.getMessage() for r in caplog.records if "falls behind" in r.getMessage()]
    assert len(warned) == 1 and "3 workflow(s) followed at 5 read(s)/s" in warned[0]
    assert "raise tracking.polls_per_s" in warned[0]
    tracker._update_gauges(time.time() - 60)  # before they were due: caught up
    assert behind("bridge_tracking_behind_seconds", labels) == 0
    assert any("has caught up" in r.getMessage() for r in caplog.records)
