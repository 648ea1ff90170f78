"""The tracker: one scheduler routine for every tracked workflow, its status reads and its writes.

A workflow due for a read waits for its target: the Retry-After the target last sent, its circuit
breaker, and two token buckets that must both have a free token: the tracking poll budget
(``tracking.polls_per_s``) and the target's own command limiter, from which polls only take tokens
that no command is waiting for. At most ``tracking.max_concurrent_polls`` reads run at once.

A change of state is published as a lifecycle event, then the workflow's entry is rewritten (a
tombstone after the terminal event). Both are acknowledged before the workflow is read again.

Example::

    tracker = Tracker(settings, targets, executor, producer, metrics, redactor)
    ledger = Ledger(settings, producer, metrics, sibling=tracker)
    processor = Processor(..., track=tracker.start)
    async with tracker.running():
        await engine.run()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Container, Iterable, Mapping
from dataclasses import replace

from aiokafka import TopicPartition

from bridge.config.settings import Settings
from bridge.config.targets import RateLimitSettings
from bridge.config.tracking import TargetTracking
from bridge.kafka.ports import ProducerPort
from bridge.kafka.publisher import Publisher
from bridge.messages.commands import Command
from bridge.messages.records import Incoming, Outgoing
from bridge.messages.wire import Header
from bridge.observability import tracing
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor, TargetRuntime
from bridge.pipeline.guards import TokenBucket
from bridge.providers.catalog import CATALOG
from bridge.providers.readings import ReadFailure, Reading, ReadProblem, RunReading, RunState
from bridge.providers.spec import StatusRead
from bridge.tracking.entries import TrackedEntry, encode, entry_key
from bridge.tracking.events import encode_lifecycle, lifecycle_data
from bridge.tracking.policy import after_reading, beyond_horizon, horizon_reading
from bridge.tracking.registry import PartitionKey, Registry
from bridge.tracking.schedule import Tracked, capped_due, jittered
from bridge.waits import within

log = logging.getLogger("bridge.tracking")
CONTENT_TYPE = ("content-type", b"application/cloudevents+json; charset=utf-8")
GAUGE_INTERVAL_S = 5.0
NO_RESPONSE = ReadFailure(ReadProblem.PROVIDER_ERROR)


class Tracker:
    def __init__(
        self,
        settings: Settings,
        targets: Mapping[str, TargetRuntime],
        executor: Executor,
        producer: ProducerPort,
        metrics: Metrics,
        redactor: Redactor,
        *,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
        together: Callable[[TopicPartition, list[Outgoing]], Awaitable[bool]] | None = None,
    ) -> None:
        self._targets = {n: t for n, t in targets.items() if settings.targets[n].tracking.enabled}
        self._reads: dict[str, StatusRead] = {
            n: CATALOG.status_read(settings.targets[n]) for n in self._targets
        }
        self._poll_rates = {n: t.settings.tracking.polls_per_s for n, t in self._targets.items()}
        self._budgets = {n: _budget(rate) for n, rate in self._poll_rates.items()}
        self._executor = executor
        self._publisher = Publisher(producer, metrics, settings.engine.publish_retry_backoff_s)
        # with Kafka transactions: the lifecycle event and the entry's rewrite commit together, in the
        # command partition's transaction (bridge/kafka/transactions.py); False: not committed
        self._together = together
        self._metrics = metrics
        self._redactor = redactor
        self._clock = clock
        self._rng = rng or random.Random()
        self._lifecycle_topic = settings.topics.lifecycle
        self._ledger_topic = settings.topics.ledger
        self._max_polls = settings.tracking.max_concurrent_polls
        self.registry = Registry(lambda name: _policy(settings, name).first_poll_s)
        self._not_before: dict[str, float] = {}
        self._behind: set[str] = set()  # targets whose reads wait past their due time (logged once)
        self._refresh: set[str] = set()
        self._polls: dict[asyncio.Task[None], Tracked] = {}
        self._wake = asyncio.Event()
        statuses = [state.value for state in RunState]
        terminal = [state.value for state in RunState if state.terminal]
        for name in self._targets:
            metrics.tracking_target(name, statuses, terminal, [*statuses, *(p.value for p in ReadProblem)])

    # -- the processor's hook: start following a workflow ---------------------------------------

    def start(self, record: Incoming, command: Command, reference: str | None) -> Outgoing | None:
        """The entry to write after a queued / applied outcome, or None when there is nothing to follow."""
        read = self._reads.get(command.target)
        ref = read.ref(command, reference) if read else None
        if ref is None:
            return None
        now = self._clock()
        entry = TrackedEntry(
            record.topic,
            record.partition,
            command.id,
            command.target,
            command.operation,
            record.key,
            tuple(sorted(ref.items())),
            record.offset,
            int(now * 1000),
            trace=tuple(tracing.cloudevent_extensions().items()),  # the outcome's: its events carry it
        )
        policy = self._targets[command.target].settings.tracking
        if self.registry.add(entry, now + jittered(policy.first_poll_s, policy.jitter, self._rng.random())):
            self._wake.set()
        key, value = encode(entry)
        return Outgoing(self._ledger_topic, key, value, partition=record.partition)

    # -- the ledger's sibling state ---------------------------------------------------------------

    def restore_started(self, wanted: Iterable[PartitionKey]) -> None:
        self.registry.restore_started(wanted)

    def load(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        self.registry.load(partition, key, value)

    def restore_finished(self, kept: Iterable[PartitionKey]) -> None:
        restored = self.registry.restore_finished(kept, self._clock(), self._rng)
        if restored:
            log.info("tracking resumed for %d workflow(s)", restored)
        self._wake.set()

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        """Revoked partitions: their workflows are the next owner's; reads in flight are dropped."""
        self.registry.forget(tps)
        for task, workflow in self._polls.items():
            if not workflow.active:
                task.cancel()

    # -- the scheduler ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Tracker]:
        task = asyncio.create_task(self._schedule_routine(), name="tracking")
        try:
            yield self
        finally:
            task.cancel()
            for poll in self._polls:
                poll.cancel()  # an event published without its entry rewrite is published again
            await asyncio.gather(task, *self._polls, return_exceptions=True)

    async def _schedule_routine(self) -> None:
        next_gauges = 0.0
        while True:
            now = self._clock()
            if now >= next_gauges:
                self._update_gauges(now)
                next_gauges = now + GAUGE_INTERVAL_S
            await self._sleep_until(min(next_gauges, self._dispatch_due(now)), now)

    async def _sleep_until(self, wake_at: float, now: float) -> None:
        self._wake.clear()  # a read that ends or a new workflow wakes it earlier
        await within(self._wake.wait(), wake_at - now)

    def _dispatch_due(self, now: float) -> float:
        """Start the due reads their targets admit, earliest due first; returns when to look again
        (inf: when a read ends). A target that admits none now holds only its own heap, in which
        every workflow keeps its place: the one due longest is read when a token comes."""
        waits: dict[str, float] = {}
        while len(self._polls) < self._max_polls:
            target, due = self._earliest(waits)
            if target is None or due > now:
                return min([due, *waits.values()])
            wait = self._admission_wait(target, now)
            if wait > 0:
                waits[target] = now + wait
                continue
            self._start_poll(self.registry.heap(target).pop_due(now, 1)[0])
        return math.inf

    def _earliest(self, skip: Container[str]) -> tuple[str | None, float]:
        """The target whose next workflow is due first (and when), among those not in ``skip``."""
        best, best_due = None, math.inf
        for target, heap in self.registry.heaps.items():
            due = heap.next_due()
            if due is not None and due < best_due and target not in skip:
                best, best_due = target, due
        return best, best_due

    def _start_poll(self, workflow: Tracked) -> None:
        task = asyncio.create_task(self._poll(workflow), name="status-read")
        self._polls[task] = workflow
        task.add_done_callback(self._poll_done)

    def _poll_done(self, task: asyncio.Task[None]) -> None:
        self._polls.pop(task, None)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("status read crashed", exc_info=task.exception())

    def _admission_wait(self, target: str, now: float) -> float:
        """0 when a read of ``target`` may go now (its tokens are taken), else how long to wait."""
        runtime = self._targets.get(target)
        if runtime is None:
            return 0.0  # restored for a target no longer tracked: _poll ends it
        pause = self._not_before.get(target, 0.0) - now
        budget, shared = self._budgets[target], runtime.bucket
        wait = max(pause, budget.free_in(), shared.free_in())
        if wait > 0:
            return wait
        circuit = runtime.breaker.wait_s()
        if circuit > 0:
            return circuit
        budget.take()
        shared.take()
        return 0.0

    # -- one status read ----------------------------------------------------------------------

    async def _poll(self, workflow: Tracked) -> None:
        runtime = self._targets.get(workflow.entry.target)
        if runtime is None:
            detail = f"target {workflow.entry.target} is not configured, or not tracked, any more"
            await self._end(workflow, RunReading(RunState.LOST, "untracked", detail=detail))
            return
        policy = runtime.settings.tracking
        if beyond_horizon(workflow, policy, self._clock()):
            runtime.breaker.release_probe()
            await self._end(workflow, horizon_reading(policy))
            return
        reading = await self._read(runtime, workflow)
        step = after_reading(workflow, reading, policy, self._rng.random())
        if not workflow.active:
            return  # revoked meanwhile: the next owner reads it again
        if step.report is not None and not await self._report(workflow, step.report):
            return  # not committed: the partition moved or is read again; its owner reads the ledger
        if step.next_in_s is None:
            self.registry.finish(workflow)
            return
        workflow.interval_s, workflow.misses = step.interval_s, step.misses
        started_s = workflow.entry.started_ms / 1000
        self.registry.heap(workflow.entry.target).push(
            workflow, capped_due(self._clock() + step.next_in_s, started_s, policy.horizon_s)
        )

    async def _read(self, runtime: TargetRuntime, workflow: Tracked) -> Reading:
        ref = dict(workflow.entry.ref)
        read = self._reads[runtime.name]
        refresh = runtime.name in self._refresh
        self._refresh.discard(runtime.name)
        response = await self._executor.status_read(runtime, read.request(ref), refresh=refresh)
        reading = (
            NO_RESPONSE
            if response is None
            else read.classify(response.status, response.headers, response.body, ref)
        )
        self._observe(runtime, reading)
        return reading

    def _observe(self, runtime: TargetRuntime, reading: Reading) -> None:
        if isinstance(reading, RunReading):
            runtime.breaker.record_success()
            self._metrics.poll(runtime.name, reading.state.value)
            return
        self._metrics.poll(runtime.name, reading.problem.value)
        if reading.circuit_failure:
            runtime.breaker.record_failure()
        else:
            runtime.breaker.release_probe()
        if reading.problem is ReadProblem.AUTH:
            self._refresh.add(runtime.name)
        if reading.retry_after_s is not None:
            self._not_before[runtime.name] = self._clock() + reading.retry_after_s

    # -- publishing ---------------------------------------------------------------------------

    async def _report(self, workflow: Tracked, reading: RunReading) -> bool:
        """Publish the event and rewrite the entry; False when they were not committed (transactions)."""
        entry = workflow.entry
        now = self._clock()
        data = lifecycle_data(entry, reading, now, self._redactor)
        trace = dict(entry.trace)
        headers: list[Header] = [CONTENT_TYPE, *((name, value.encode()) for name, value in entry.trace)]
        event = Outgoing(self._lifecycle_topic, entry.key, encode_lifecycle(data, extensions=trace), headers)
        updated = replace(entry, state=reading.state, waiting_for=reading.waiting_for, seq=data.sequence)
        if self._together is not None:
            home = TopicPartition(entry.topic, entry.partition)
            if not await self._together(home, [event, self._entry_record(updated)]):
                return False
            workflow.entry = updated
        else:
            await self._publisher.publish(event)
            workflow.entry = updated
            await self._publisher.publish(self._entry_record(updated))
        self._metrics.lifecycle_event(entry.target, reading.state.value)
        if reading.state.terminal:
            self._metrics.reached_terminal(entry.target, reading.state.value, data.tracked_for_s)
        log.info(
            "lifecycle %s %s",
            entry.command_id,
            reading.state.value,
            extra={"command_id": entry.command_id, "target": entry.target, "status": reading.state.value},
        )
        return True

    async def _end(self, workflow: Tracked, reading: RunReading) -> None:
        if await self._report(workflow, reading):
            self.registry.finish(workflow)

    def _entry_record(self, entry: TrackedEntry) -> Outgoing:
        """The rewritten entry; a tombstone once the workflow has ended (compaction drops it)."""
        if entry.state is not None and entry.state.terminal:
            key, value = entry_key(entry.topic, entry.command_id), None
        else:
            key, value = encode(entry)
        return Outgoing(self._ledger_topic, key, value, partition=entry.partition)

    def _warn_if_behind(self, target: str, behind_s: float) -> None:
        """One line when a target's reads fall a minute behind their due times, one when they catch up."""
        if behind_s >= BEHIND_WARN_S and target not in self._behind:
            self._behind.add(target)
            log.warning(
                "tracking of target %s falls behind: a status read waits %.0f s past its due time with "
                "%d workflow(s) followed at %g read(s)/s; raise tracking.polls_per_s if the provider allows",
                target,
                behind_s,
                self.registry.per_target[target],
                self._poll_rates[target],
                extra={"target": target},
            )
        elif behind_s == 0.0 and target in self._behind:
            self._behind.discard(target)
            log.info("tracking of target %s has caught up", target, extra={"target": target})

    def _update_gauges(self, now: float) -> None:
        for target in self._targets:
            self._metrics.tracked(target, self.registry.per_target[target])
            behind = overdue_s(self.registry.heap(target).next_due(), now)
            self._metrics.tracking_behind(target, behind)
            self._warn_if_behind(target, behind)
        oldest = self.registry.oldest_started_ms()
        self._metrics.oldest_tracked(0.0 if oldest is None else max(0.0, now - oldest / 1000))


BEHIND_WARN_S = 60.0  # a read this late: the poll budget no longer covers the target's workflows


def overdue_s(next_due: float | None, now: float) -> float:
    """How long the target's earliest due read has waited past its due time; 0 when none is due."""
    return 0.0 if next_due is None else max(0.0, now - next_due)


def _policy(settings: Settings, target: str) -> TargetTracking:
    """The target's tracking settings; the defaults for a target that is no longer configured."""
    configured = settings.targets.get(target)
    return configured.tracking if configured is not None else TargetTracking()


def _budget(polls_per_s: float) -> TokenBucket:
    """A burst of 2, so that a late wake-up loses no token: no second sees more than the budget + 2."""
    return TokenBucket(RateLimitSettings(rate_per_s=polls_per_s, burst=2))
