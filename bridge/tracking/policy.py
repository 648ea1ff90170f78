"""What one status reading means for one tracked workflow. Pure: the caller passes time and chance.

Example::

    step = after_reading(workflow, reading, policy, roll=rng.random())
    if step.report: publish(step.report)
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge.config.tracking import TargetTracking
from bridge.providers.readings import ReadFailure, Reading, ReadProblem, RunReading, RunState
from bridge.tracking.schedule import Tracked, jittered, next_interval


@dataclass(frozen=True, slots=True)
class Step:
    report: RunReading | None  # a change of state to publish; None: nothing new
    next_in_s: float | None  # when to read again; None: tracking ends (after the terminal event)
    interval_s: float
    misses: int = 0


def changed(workflow: Tracked, reading: RunReading) -> bool:
    entry = workflow.entry
    return (entry.state, entry.waiting_for) != (reading.state, reading.waiting_for)


def after_reading(workflow: Tracked, reading: Reading, policy: TargetTracking, roll: float) -> Step:
    if isinstance(reading, ReadFailure):
        return _after_failure(workflow, reading, policy, roll)
    report = reading if changed(workflow, reading) else None
    if reading.state.terminal:
        return Step(report, None, workflow.interval_s)
    waiting = reading.state is RunState.WAITING
    if report is not None and not waiting:
        interval = policy.first_poll_s  # it moved on (a human answered): look again soon
    else:
        interval = next_interval(workflow.interval_s, policy, waiting=waiting)
    return Step(report, jittered(interval, policy.jitter, roll), interval)


def _after_failure(workflow: Tracked, failure: ReadFailure, policy: TargetTracking, roll: float) -> Step:
    misses = workflow.misses + (failure.problem is ReadProblem.GONE)
    if failure.problem is ReadProblem.GONE and misses >= policy.gone_after:
        detail = f"the provider no longer knows this run ({misses} status reads answered 404)"
        return Step(RunReading(RunState.LOST, "404", detail=detail), None, workflow.interval_s, misses)
    interval = next_interval(workflow.interval_s, policy, waiting=False)
    wait = jittered(interval, policy.jitter, roll)
    if failure.retry_after_s is not None:
        wait = max(wait, failure.retry_after_s)
    return Step(None, wait, interval, misses)


def beyond_horizon(workflow: Tracked, policy: TargetTracking, now_s: float) -> bool:
    return now_s >= workflow.entry.started_ms / 1000 + policy.horizon_s


def horizon_reading(policy: TargetTracking) -> RunReading:
    detail = f"tracking gave up: no terminal state within the horizon of {policy.horizon_s:.0f}s"
    return RunReading(RunState.LOST, "horizon", detail=detail)
