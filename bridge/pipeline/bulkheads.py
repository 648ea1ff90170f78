"""Per-target bulkheads: a target's share of in-flight commands and of concurrent calls, and the
slow-call watch that opens its circuit when the target stops answering. No I/O.

A record's target is known only once it is parsed, so the engine asks :class:`Bulkheads` when it
takes a record (the parse is kept and reused at the record's turn). A record whose target already
holds its share and is down (its circuit is not closed) or stalled (``max_unanswered`` calls in
flight, none answered since the oldest began, for four times as long as its answers take, at least
``silent_s`` / 4: a hang, seen before ``silent_s`` opens the circuit) is marked *shed*. With
parking on, a shed record does not wait behind its key: the engine runs it at once and it is
parked (its key's later commands park behind it, and it comes back only once no earlier command of
its key is left in the engine), so the target never holds more than its share. With parking off it
keeps its place in its key's queue, so per-key order holds, and at its turn it is answered
``error`` / ``target_busy`` without a call. While a down target is at its share its ``pressure``
is set, and its commands that wait (for a retry, for the circuit, for a call slot) stop waiting, so
its keys drain and the partitions keep flowing for the rest. A healthy target with a backlog is
never shed: its backlog is ordinary backpressure (the engine's ``max_in_flight``).

Example::

    loads = {"a": TargetLoad("a", limit=500, max_calls=64, silent_s=3.0, max_unanswered=20)}
    bulkheads = Bulkheads(parse, loads, metrics)
    bulkheads.accept(record)          # the engine, when it takes the record
    shed = bulkheads.is_shed(record)  # the processor, at the record's turn
    bulkheads.release(record)         # the engine, once the record is answered or abandoned
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from bridge.messages.parsed import Invalid, Parsed, ParseResult
from bridge.messages.records import Incoming
from bridge.observability.metrics import Metrics
from bridge.pipeline.guards import CircuitBreaker, CircuitState
from bridge.pipeline.slots import CallSlots

log = logging.getLogger("bridge.budgets")
_tokens = itertools.count()


@dataclass(eq=False)
class TargetLoad:
    """What one target holds now: commands in flight (queued ones included) and calls in progress."""

    name: str
    limit: int
    max_calls: int
    silent_s: float
    max_unanswered: int
    in_flight: int = 0
    shed: int = 0  # shed records still in memory
    down: bool = False  # its circuit is not closed (kept current by the circuit's on_change)
    pressure: asyncio.Event = field(default_factory=asyncio.Event)
    slots: CallSlots = field(init=False)
    # call token -> its start (monotonic), oldest first: the oldest call is found without a scan
    _calls: OrderedDict[int, float] = field(default_factory=OrderedDict)
    _last_answer: float = float("-inf")
    _answer_s: float | None = None  # how long its answers take (moving average of answered calls)

    def __post_init__(self) -> None:
        self.slots = CallSlots(self.max_calls)
        self.slots.watch_s = self.silent_s

    @property
    def calls(self) -> int:
        return len(self._calls)

    def enter(self, now: float) -> bool:
        """Count one more command; True when it is beyond the share of a target that is down or
        stalled (shed)."""
        shed = self.in_flight >= self.limit and (self.down or self.stalled(now))
        self.in_flight += 1
        self.shed += shed
        self._update_pressure()
        return shed

    def leave(self, shed: bool) -> None:
        self.in_flight -= 1
        self.shed -= shed
        self._update_pressure()

    def circuit_changed(self, closed: bool) -> None:
        self.down = not closed
        self._update_pressure()

    def _update_pressure(self) -> None:
        if self.down and self.in_flight >= self.limit:
            if not self.pressure.is_set():
                self.pressure.set()
                self.slots.refuse_all()  # its commands waiting for a call slot stop waiting
        else:
            self.pressure.clear()

    async def acquire_call(self, within_s: float) -> bool:
        """A call slot, waited for at most ``within_s`` and only while there is no pressure: the
        call that ends hands its slot over (bridge/pipeline/slots.py), nothing polls."""
        if self.slots.try_acquire():
            return True
        if within_s <= 0 or self.pressure.is_set():
            return False
        return await self.slots.acquire(within_s)

    def call_started(self, now: float) -> int:
        token = next(_tokens)
        if self._calls:  # kept in start order: a clock read out of order counts as the newest's start
            now = max(now, next(reversed(self._calls.values())))
        self._calls[token] = now
        return token

    def call_ended(self, token: int, now: float, *, answered: bool) -> None:
        """The call's slot is released; ``answered``: the target sent a response (any status)."""
        began = self._calls.pop(token, now)
        self.slots.release()
        if answered:
            self._last_answer = now
            took = now - began
            self._answer_s = took if self._answer_s is None else self._answer_s + (took - self._answer_s) / 8

    def stalled(self, now: float) -> bool:
        """At least ``max_unanswered`` calls in flight and no answer since the oldest of them began,
        four times as long as its answers take, but at least a quarter of ``silent_s`` (a burst's
        first answers may be late) and at most ``silent_s``: a hang, seen before ``unanswered``
        opens the circuit."""
        oldest = self._oldest_unanswered()
        usual = self.silent_s if self._answer_s is None else 4 * self._answer_s
        return oldest is not None and now - oldest >= min(self.silent_s, max(usual, self.silent_s / 4))

    def unanswered(self, now: float) -> bool:
        """Stalled, and the oldest of those calls began ``silent_s`` ago: the circuit opens."""
        oldest = self._oldest_unanswered()
        return oldest is not None and now - oldest >= self.silent_s

    def _oldest_unanswered(self) -> float | None:
        if len(self._calls) < self.max_unanswered:
            return None
        oldest = next(iter(self._calls.values()))
        return oldest if self._last_answer < oldest else None


@dataclass(frozen=True, slots=True)
class _Held:
    parsed: ParseResult | None
    load: TargetLoad | None
    shed: bool


def target_of(parsed: ParseResult | None) -> str | None:
    """Pure: the target a parsed record names, if any."""
    if isinstance(parsed, Parsed):
        return parsed.command.target
    if isinstance(parsed, Invalid):
        return parsed.target
    return None


class Bulkheads:
    """The engine's per-record hook: counts each record against its target's share."""

    def __init__(
        self,
        parse: Callable[[Incoming], ParseResult],
        loads: Mapping[str, TargetLoad],
        metrics: Metrics,
        *,
        park_shed: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._clock = clock
        self._parse = parse
        self._park_shed = park_shed
        self.loads = dict(loads)
        self._metrics = metrics
        self._held: dict[tuple[str, int, int], _Held] = {}
        for load in self.loads.values():
            metrics.target_load(load.name, 0, load.limit)

    def accept(self, record: Incoming) -> None:
        try:
            parsed: ParseResult | None = self._parse(record)
        except Exception:  # noqa: BLE001 - the processor parses again at its turn and answers for it
            parsed = None
        load = self.loads.get(target_of(parsed) or "")
        shed = load.enter(self._clock()) if load is not None else False
        self._held[_where(record)] = _Held(parsed, load, shed)
        if load is not None:
            self._metrics.target_load(load.name, load.in_flight)
            if shed:
                self._metrics.shed(load.name)

    def release(self, record: Incoming) -> None:
        held = self._held.pop(_where(record), None)
        if held is not None and held.load is not None:
            held.load.leave(held.shed)
            self._metrics.target_load(held.load.name, held.load.in_flight)

    def parsed(self, record: Incoming) -> ParseResult | None:
        """The parse made when the record was accepted, if any."""
        held = self._held.get(_where(record))
        return held.parsed if held is not None else None

    def is_shed(self, record: Incoming) -> bool:
        held = self._held.get(_where(record))
        return held is not None and held.shed

    def out_of_turn(self, record: Incoming) -> bool:
        """A shed record is parked at once, not behind its key (parking keeps its key order)."""
        return self._park_shed and self.is_shed(record)

    def shedding(self) -> list[str]:
        """Targets turning commands away now (readiness names them)."""
        return sorted(name for name, load in self.loads.items() if load.shed > 0)


def _where(record: Incoming) -> tuple[str, int, int]:
    return record.topic, record.partition, record.offset


class TargetView(Protocol):
    """What readiness reads of a configured target (``TargetRuntime`` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def breaker(self) -> CircuitBreaker: ...
    @property
    def load(self) -> TargetLoad | None: ...


def target_troubles(targets: Iterable[TargetView]) -> list[str]:
    """Pure: 'NAME (circuit open)' / 'NAME (bulkhead full)' for every target in trouble now (the
    readiness reason names them: :func:`bridge.observability.health.degraded`)."""
    troubles = []
    for t in sorted(targets, key=lambda t: t.name):
        why = [
            *(["circuit " + t.breaker.state.value] if t.breaker.state is not CircuitState.CLOSED else []),
            *(["bulkhead full"] if t.load is not None and t.load.pressure.is_set() else []),
        ]
        if why:
            troubles.append(f"{t.name} ({', '.join(why)})")
    return troubles
