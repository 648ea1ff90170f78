"""The per-target load metrics of :class:`~bridge.observability.metrics.Metrics`: bulkheads (a
target's share of in-flight commands, shed commands, commands held by an open circuit) and parking
(parked commands by target and reason, how they come back and how long they waited)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PARK_REASONS = ("key_parked", "bulkhead_full", "circuit_open", "retry_after")
PARK_RETURNS = ("due", "probe", "recovered")


class LoadMetrics:
    def _child(self, metric: Any, *labels: str) -> Any:
        raise NotImplementedError  # Metrics caches the children

    def _declare_loads(self, r: CollectorRegistry) -> None:
        self._target_in_flight = Gauge(
            "bridge_target_in_flight_commands",
            "Commands of one target accepted and not finished (its bulkhead's use).",
            ["target"],
            registry=r,
        )
        self._target_limit = Gauge(
            "bridge_target_max_in_flight", "A target's share of in-flight commands.", ["target"], registry=r
        )
        self._shed = Counter(
            "bridge_shed_total",
            "Commands answered target_busy at once because their target's bulkhead was full.",
            ["target"],
            registry=r,
        )
        self._held = Gauge(
            "bridge_held_commands", "Commands waiting for a target's open circuit.", ["target"], registry=r
        )
        self._parked = Counter(
            "bridge_parked_total", "Commands written to the parking topic.", ["target", "reason"], registry=r
        )
        self._parked_now = Gauge(
            "bridge_parked_commands", "Commands of the assigned partitions parked now.", registry=r
        )
        self._replayed = Counter(
            "bridge_replayed_total", "Parked commands brought back (not consumed).", ["topic"], registry=r
        )
        self._parked_returns = Counter(
            "bridge_parked_returns_total",
            "Parked commands brought back, by target and why: due, probe (early, to probe a down"
            " target) or recovered (early, its target is back).",
            ["target", "why"],
            registry=r,
        )
        self._parked_wait = Histogram(
            "bridge_parked_wait_seconds",
            "How long a parked command waited before it came back.",
            ["target"],
            buckets=(0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600),
            registry=r,
        )
        self._parked_waiting = Gauge(
            "bridge_parked_waiting_commands",
            "Parked commands held until their target is back (not yet due), by target: they come back"
            " within seconds of its recovery, so a closed circuit with these waiting means a stuck drain.",
            ["target"],
            registry=r,
        )
        self._slot_waits = Histogram(
            "bridge_call_slot_wait_seconds",
            "How long a call waited for one of its target's call slots (bulkhead.max_calls); only"
            " the calls that had to wait.",
            ["target"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=r,
        )

    def target_load(self, target: str, in_flight: int, limit: int | None = None) -> None:
        self._child(self._target_in_flight, target).set(in_flight)
        if limit is not None:  # the target's series exist from the start, so that rate() works
            self._target_limit.labels(target).set(limit)
            self._shed.labels(target)
            self._held.labels(target).set(0)
            for reason in PARK_REASONS:
                self._parked.labels(target, reason)
            for why in PARK_RETURNS:
                self._parked_returns.labels(target, why)
            self._parked_waiting.labels(target).set(0)
            self._slot_waits.labels(target)

    def shed(self, target: str) -> None:
        self._child(self._shed, target).inc()

    def held(self, target: str, count: int) -> None:
        self._child(self._held, target).set(count)

    def parked(self, target: str, reason: str, now: int) -> None:
        self._child(self._parked, target, reason).inc()
        self._parked_now.set(now)

    def parked_return(self, target: str, why: str, waited_s: float | None) -> None:
        self._child(self._parked_returns, target, why).inc()
        if waited_s is not None:
            self._child(self._parked_wait, target).observe(waited_s)

    def parked_waiting(self, target: str, count: int) -> None:
        self._child(self._parked_waiting, target).set(count)

    def call_slot_wait(self, target: str, seconds: float) -> None:
        self._child(self._slot_waits, target).observe(seconds)

    def parked_now(self, count: int) -> None:
        self._parked_now.set(count)

    def replayed(self, topic: str) -> None:
        self._child(self._replayed, topic).inc()
