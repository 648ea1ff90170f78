"""Parked work comes back when its target does, not when a timer says (issue 25).

A command parked because its target was down (its circuit open, its bulkhead full, its calls failing,
or an earlier command of its key parked) is due at ``retry_s`` at the latest; it comes back earlier:

- as the **probe**: while its target's circuit would let a probe through (open for ``open_s``, or
  for ``parking.probe_s`` when that is shorter: the circuit is then half-opened for it; or closed
  but not heard from since the command parked), one parked command of the target comes back at a
  time (at most one a second) and its call is the probe;
- at once, when its target **recovered**: its circuit is closed and a call succeeded after the
  command parked (the probe, a new command, another parked one).

Early returns of a target run at most as many at a time as it has call slots (``bulkhead.max_calls``),
so a recovery brings back a backlog at the pace of those slots (and of its rate limit), in
key order (each key's waiter takes its records one after the other). A command a provider held back
with its own ``Retry-After`` while it answered (a rate limit, ``recovers`` false) waits its time.

Example::

    recovery = Recovery(targets)
    if recovery.release(at):   # the replayer, while a parked record is not due yet
        ...                    # bring it back now
    recovery.ended(at)         # once it has its answer (or was parked again)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bridge.parking.records import ParkedAt
from bridge.pipeline.executor import TargetRuntime
from bridge.pipeline.guards import CircuitState

PROBE_GAP_S = 1.0  # between two probes of one target from its parked work
DEFAULT_SLOTS = 64  # a target without a bulkhead (only in tests: the bridge gives each one)
CLAIM_S = 120.0  # an early return not ended by then (its routine never ran) no longer counts


@dataclass(frozen=True, slots=True)
class _Released:
    target: str
    at_s: float  # wall clock
    probe: bool


class Recovery:
    def __init__(
        self,
        targets: Mapping[str, TargetRuntime] | None = None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._targets: Mapping[str, TargetRuntime] = targets or {}
        self._clock = clock
        self._released: dict[tuple[str, int], _Released] = {}  # (command topic, offset) -> release
        self._running: dict[str, int] = {}  # target -> early returns not ended
        self._probing: dict[str, tuple[str, int]] = {}  # target -> its probe's (command topic, offset)
        self._last_probe: dict[str, float] = {}
        self._expired_at = 0.0

    def watch(self, targets: Mapping[str, TargetRuntime]) -> None:
        self._targets = targets

    def release(self, at: ParkedAt) -> str | None:
        """Why the parked record ``at``, not due yet, may come back now ("recovered" or "probe"), or
        None when it keeps waiting. A release counts until :meth:`ended`."""
        runtime = self._targets.get(at.target) if at.recovers else None
        if runtime is None:
            return None
        now = self._clock()
        if now - self._expired_at > 1.0:
            self._expire(now)
        if self._running.get(at.target, 0) >= _call_slots(runtime):
            return None
        why = "recovered" if self.recovered(runtime, at.since_ms) else None
        if why is None and self._may_probe(runtime, now):
            why = "probe"
            self._last_probe[at.target] = now
            self._probing[at.target] = (at.topic, at.offset)
        if why is not None:
            self._released[(at.topic, at.offset)] = _Released(at.target, now, why == "probe")
            self._running[at.target] = self._running.get(at.target, 0) + 1
        return why

    def ended(self, at: ParkedAt) -> None:
        """A record brought back ended (answered, parked again or abandoned)."""
        self._end((at.topic, at.offset))

    def running(self, target: str) -> int:
        return self._running.get(target, 0)

    def recovered(self, runtime: TargetRuntime, since_ms: int) -> bool:
        """Its circuit is closed and a call succeeded after ``since_ms`` (Unix ms)."""
        breaker = runtime.breaker
        ago = breaker.since_success()
        if breaker.state is not CircuitState.CLOSED or ago is None:
            return False
        return (self._clock() - ago) * 1000 > since_ms

    def _may_probe(self, runtime: TargetRuntime, now: float) -> bool:
        name = runtime.name
        if name in self._probing:
            if runtime.breaker.state is CircuitState.HALF_OPEN:
                return False  # one probe at a time: its call is under way
            # its call failed (open again) or succeeded (closed): the probe is over, although the
            # command may still run (waiting for a retry): the next probe need not wait for it
            del self._probing[name]
        if now - self._last_probe.get(name, float("-inf")) < PROBE_GAP_S:
            return False
        breaker = runtime.breaker
        if breaker.lets_probe() or breaker.state is CircuitState.CLOSED:
            return True
        if breaker.open_for() >= runtime.settings.parking.probe_s:
            breaker.probe_now()  # a down target with parked work is asked every probe_s
            return True
        return False

    def _end(self, where: tuple[str, int]) -> None:
        released = self._released.pop(where, None)
        if released is None:
            return
        self._running[released.target] -= 1
        if self._probing.get(released.target) == where:
            del self._probing[released.target]

    def _expire(self, now: float) -> None:
        self._expired_at = now
        for where in [where for where, r in self._released.items() if now - r.at_s > CLAIM_S]:
            self._end(where)


def _call_slots(runtime: TargetRuntime) -> int:
    """How many calls the target takes at once (its bulkhead's call slots)."""
    if runtime.load is not None:
        return runtime.load.max_calls
    return runtime.settings.bulkhead.max_calls or DEFAULT_SLOTS
