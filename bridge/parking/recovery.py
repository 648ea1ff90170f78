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

Nothing polls: a record not due yet waits on a future of its own (:meth:`Recovery.wait`), and its
target's waiters are handed their release, oldest parked first, only when something that could
release one happened: a success or a change of its circuit (the breaker tells, ``listen``), an early
return that ended (a call slot is free again), or the moment the next probe is allowed (**one**
timer per target, armed only while the target has waiters and nothing else would wake them).

Example::

    recovery = Recovery(targets)
    recovery.wait(at, wake)    # the replayer, while a parked record is not due: wake gets its why
    why = recovery.release(at) # or ask once: "recovered", "probe" or None
    recovery.ended(at)         # once it has its answer (or was parked again)
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from bridge.parking.records import ParkedAt
from bridge.pipeline.executor import TargetRuntime
from bridge.pipeline.guards import CircuitState

PROBE_GAP_S = 1.0  # between two probes of one target from its parked work
DEFAULT_SLOTS = 64  # a target without a bulkhead (only in tests: the bridge gives each one)
CLAIM_S = 120.0  # an early return not ended by then (its routine never ran) no longer counts
_order = itertools.count()
Waiter = tuple[int, int, ParkedAt, "asyncio.Future[str]"]  # (since_ms, arrival, record, its wake-up)


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
        self._waiters: dict[str, list[Waiter]] = {}  # target -> heap, oldest parked first
        self._kept: dict[str, int] = {}  # target -> waiters kept at the last clean-up
        self._timers: dict[str, asyncio.TimerHandle] = {}  # target -> when its next probe may go
        self._poked: set[str] = set()  # targets whose waiters are looked at in the next loop turn
        self._heard: set[int] = set()  # the breakers that tell us their news (by id)
        self.watch(self._targets)

    def watch(self, targets: Mapping[str, TargetRuntime]) -> None:
        self._targets = targets
        for name, runtime in targets.items():
            if id(runtime.breaker) not in self._heard:
                self._heard.add(id(runtime.breaker))
                runtime.breaker.listen(partial(self._poke, name))
        for name in list(self._waiters):
            self._poke(name)

    def wait(self, at: ParkedAt, wake: asyncio.Future[str]) -> None:
        """Set ``wake``'s result to why ``at`` (not due yet) may come back ("recovered" or "probe") once
        it may, unless ``wake`` is done first (then it is forgotten, and nothing counts for it). A
        record its target's recovery never brings back (``recovers`` false, a target unknown here)
        is not kept: only its due time brings it back."""
        if not at.recovers or at.target not in self._targets:
            return
        heap = self._waiters.setdefault(at.target, [])
        if len(heap) > 2 * self._kept.get(at.target, 0) + 64:  # most of them were woken otherwise
            heap[:] = [w for w in heap if not w[3].done()]
            heapq.heapify(heap)
            self._kept[at.target] = len(heap)
        heapq.heappush(heap, (at.since_ms, next(_order), at, wake))
        self._hand_out(at.target)

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
        self._poke(at.target)  # its call slot is free: the next waiter may go

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

    def _poke(self, target: str) -> None:
        """Something that may release a waiter of ``target`` happened: look at them in the next turn
        (once however many things happened; never from inside the breaker's own call)."""
        if not self._waiters.get(target) or target in self._poked:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop, so nobody waits on one
            return
        self._poked.add(target)
        loop.call_soon(self._poked_out, target)

    def _poked_out(self, target: str) -> None:
        self._poked.discard(target)
        self._hand_out(target)

    def _hand_out(self, target: str) -> None:
        """Release the target's waiters, oldest parked first, as long as :meth:`release` lets them go.
        The first one held back holds back the rest: the call slots and the probe are the target's,
        and "recovered" (a success after the record parked) holds for every record parked earlier."""
        heap = self._waiters.get(target, [])
        while heap:
            _, _, at, wake = heap[0]
            if wake.done():  # woken otherwise (due, moved)
                heapq.heappop(heap)
                continue
            why = self.release(at)
            if why is None:
                break
            heapq.heappop(heap)
            wake.set_result(why)
        self._arm(target, bool(heap))

    def _arm(self, target: str, waiting: bool) -> None:
        """One timer per target with waiters, at the next moment a probe may go (none when only a
        success, a change of its circuit or an ended return can release one: they tell)."""
        timer = self._timers.get(target)
        if not waiting:
            if timer is not None:
                timer.cancel()
                del self._timers[target]
            self._waiters.pop(target, None)
            self._kept.pop(target, None)
            return
        runtime = self._targets.get(target)
        delay = None if runtime is None else self._next_chance(runtime)
        if delay is None:
            return  # a timer armed before fires once more at most, and finds nothing to do
        loop = asyncio.get_running_loop()
        when = loop.time() + max(delay, 0.0) + 0.001
        if timer is not None and timer.when() <= when:
            return  # it fires first, and arms the next one then
        if timer is not None:
            timer.cancel()
        self._timers[target] = loop.call_at(when, self._timed_out, target)

    def _timed_out(self, target: str) -> None:
        del self._timers[target]
        self._hand_out(target)

    def _next_chance(self, runtime: TargetRuntime) -> float | None:
        """Seconds until time alone may release a waiter of the target; None when only news can."""
        now = self._clock()
        name = runtime.name
        if self._running.get(name, 0) >= _call_slots(runtime):  # news: an ended return (or expiry)
            claims = [r.at_s for r in self._released.values() if r.target == name]
            return max(min(claims, default=now) + CLAIM_S - now, self._expired_at + 1.0 - now)
        breaker = runtime.breaker
        if name in self._probing and breaker.state is CircuitState.HALF_OPEN:
            return None  # its probe's answer is news
        gap = self._last_probe.get(name, float("-inf")) + PROBE_GAP_S - now
        if breaker.state is CircuitState.OPEN:
            settings = runtime.settings
            return max(gap, min(settings.circuit.open_s, settings.parking.probe_s) - breaker.open_for())
        if breaker.state is CircuitState.HALF_OPEN and not breaker.lets_probe():
            return None  # another command's call is the probe: its answer is news
        return gap

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
