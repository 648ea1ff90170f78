"""Prometheus metrics: one container declares every collector; other modules record events through its
verbs (``metrics.outcome(...)``, ``metrics.provider_call(...)``) and never touch a collector.

Label values are bounded: topics, targets, providers, operations, statuses, reasons and status
classes come from configuration or enums, never from command content.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

from bridge.observability import build
from bridge.observability.load_metrics import LoadMetrics

TERMINAL_BUCKETS = (1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0, 259200.0, 604800.0)
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics(LoadMetrics):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        Info("bridge_build", "Build information of the workflow bridge.", registry=r).info(
            {"version": build.version(), "revision": build.revision()}
        )
        self._consumed = Counter(
            "bridge_commands_consumed_total", "Command records consumed.", ["topic"], registry=r
        )
        self._outcomes = Counter(
            "bridge_outcomes_total",
            "Outcome events published.",
            ["target", "provider", "operation", "status"],
            registry=r,
        )
        self._provider_calls = Histogram(
            "bridge_provider_request_duration_seconds",
            "Duration of one HTTP call to a provider.",
            ["target", "operation", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._retries = Counter(
            "bridge_retries_total", "Provider call retries.", ["target", "reason"], registry=r
        )
        self._in_flight = Gauge(
            "bridge_in_flight_commands", "Commands accepted and not finished.", registry=r
        )
        self._command_latency = Histogram(
            "bridge_command_latency_seconds",
            "Command record timestamp to outcome acknowledged.",
            ["family"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._lag = Gauge(
            "bridge_consumer_lag_messages",
            "High watermark minus committed offset.",
            ["topic", "partition"],
            registry=r,
        )
        self._oldest_uncommitted = Gauge(
            "bridge_oldest_uncommitted_age_seconds",
            "Age of the oldest command not yet committed.",
            registry=r,
        )
        self._dead_letters = Counter(
            "bridge_dead_letters_total", "Records sent to the dead-letter topic.", ["reason"], registry=r
        )
        self._circuit = Gauge(
            "bridge_circuit_state",
            "Circuit breaker state (0 closed, 1 half-open, 2 open).",
            ["target"],
            registry=r,
        )
        self._token_refreshes = Counter(
            "bridge_token_refreshes_total", "Token endpoint calls.", ["target", "result"], registry=r
        )
        self._publish_failures = Counter(
            "bridge_publish_failures_total",
            "Failed attempts to publish an outcome or dead letter.",
            registry=r,
        )
        self._commits = Counter("bridge_commits_total", "Offset commits.", ["result"], registry=r)
        self._fenced = Counter(
            "bridge_fenced_total",
            "After this member lost its group session: commands it stopped (no call started, nothing "
            "written) and partitions it gave up at once (another member may own them already).",
            ["what"],
            registry=r,
        )
        for what in ("command", "partition"):
            self._fenced.labels(what)
        self._ready = Gauge("bridge_ready", "1 when the bridge reports ready.", registry=r)
        self._last_progress = Gauge(
            "bridge_last_progress_timestamp_seconds", "Unix time of the last finished command.", registry=r
        )
        self._assigned = Gauge(
            "bridge_assigned_partitions", "Command topic partitions assigned to this member.", registry=r
        )
        self._max_in_flight = Gauge("bridge_max_in_flight", "The configured in-flight limit.", registry=r)
        Gauge(
            "bridge_event_loop_tasks", "asyncio tasks alive in the event loop (a leak grows it).", registry=r
        ).set_function(_event_loop_tasks)
        self._loop_lag = Histogram(
            "bridge_event_loop_lag_seconds",
            "How late the event loop ran a timer: the time it was busy or blocked, which every command "
            "waits too.",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )
        self._duplicates = Counter(
            "bridge_duplicates_total",
            "Commands the ledger had seen: done (absorbed), id_reused (dead letter), in_doubt (on_unknown).",
            ["reason"],
            registry=r,
        )
        self._ledger_entries = Gauge(
            "bridge_ledger_entries",
            "Command ids the ledger remembers for the assigned partitions.",
            registry=r,
        )
        self._ledger_restore = Histogram(
            "bridge_ledger_restore_seconds",
            "Time to read the ledger partitions of one assignment to their end.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
            registry=r,
        )
        self._ledger_restore_records = Counter(
            "bridge_ledger_restore_records_total",
            "Ledger records read by restores: from a kept local store's checkpoint (tail), into a "
            "wiped or new local store (rebuild), or into memory (memory, ledger.store.path unset).",
            ["source"],
            registry=r,
        )
        self._unknown_outcomes = Counter(
            "bridge_unknown_outcomes_total",
            "Commands found dispatched but not done, by target and what on_unknown did.",
            ["target", "resolution"],
            registry=r,
        )
        self._declare_tracking(r)
        self._declare_loads(r)
        self._transactions = Counter(
            "bridge_transactions_total",
            "Transactions of a command partition's finished commands (kafka.transactions): "
            "committed, aborted, or fenced (another owner took the partition).",
            ["result"],
            registry=r,
        )
        self._transaction_seconds = Histogram(
            "bridge_transaction_commit_duration_seconds",
            "From a transaction's first write to its commit acknowledged.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self._transaction_commands = Histogram(
            "bridge_transaction_commands",
            "Finished commands per committed transaction.",
            buckets=(1, 5, 10, 50, 100, 250, 500, 1000),
            registry=r,
        )
        # label values are bounded, and several verbs run per command: cache the children
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        if registry is None:  # a private registry: add what the default one would have
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

    # -- commands -------------------------------------------------------------------------------------

    def consumed(self, topic: str) -> None:
        self._child(self._consumed, topic).inc()

    def outcome(self, target: str, provider: str, operation: str, status: str) -> None:
        self._child(self._outcomes, target, provider, operation, status).inc()

    def dead_letter(self, reason: str) -> None:
        self._child(self._dead_letters, reason).inc()

    def command_latency(self, family: str, seconds: float) -> None:
        """A command's result was acknowledged ``seconds`` after its record timestamp."""
        self._child(self._command_latency, family).observe(seconds)

    def watch_engine(
        self, in_flight: Callable[[], float], last_progress: Callable[[], float], limit: int
    ) -> None:
        """The engine's in-flight count and last-progress time, read when scraped (not per command)."""
        self._in_flight.set_function(in_flight)
        self._last_progress.set_function(last_progress)
        self._max_in_flight.set(limit)

    # -- provider calls ---------------------------------------------------------------------------------

    def provider_call(self, target: str, operation: str, http_status: int | None, seconds: float) -> None:
        self._child(self._provider_calls, target, operation, status_class(http_status)).observe(seconds)

    def retry(self, target: str, reason: str) -> None:
        self._child(self._retries, target, reason).inc()

    def token_refresh(self, target: str, ok: bool) -> None:
        self._token_refreshes.labels(target, "ok" if ok else "failed").inc()

    def token_target(self, target: str) -> None:
        """Create both token-refresh series of ``target`` at zero, so that rate() works from the start."""
        for result in ("ok", "failed"):
            self._token_refreshes.labels(target, result)

    def circuit(self, target: str, value: int) -> None:
        self._circuit.labels(target).set(value)

    # -- Kafka ----------------------------------------------------------------------------------------

    def publish_failed(self) -> None:
        self._publish_failures.inc()

    def commit(self, ok: bool) -> None:
        self._commits.labels("ok" if ok else "failed").inc()

    def fenced(self, what: str, count: int = 1) -> None:
        """``what``: command (stopped) or partition (given up)."""
        self._fenced.labels(what).inc(count)

    def transaction(self, result: str, seconds: float | None = None, commands: int = 0) -> None:
        """``result``: committed, aborted or fenced; a commit's duration and size."""
        self._transactions.labels(result).inc()
        if seconds is not None:
            self._transaction_seconds.observe(seconds)
            self._transaction_commands.observe(commands)

    def lag(self, topic: str, partition: int, messages: int) -> None:
        self._lag.labels(topic, str(partition)).set(messages)

    def forget_partition(self, topic: str, partition: int) -> None:
        """A revoked partition's lag is its new owner's to report."""
        with contextlib.suppress(KeyError):
            self._lag.remove(topic, str(partition))

    def assigned(self, partitions: int) -> None:
        self._assigned.set(partitions)

    def oldest_uncommitted(self, age_s: float) -> None:
        self._oldest_uncommitted.set(age_s)

    # -- the command ledger -----------------------------------------------------------------------------

    def duplicate(self, reason: str) -> None:
        self._child(self._duplicates, reason).inc()

    def duplicate_reasons(self, reasons: Iterable[str]) -> None:
        """The series exist from the start, so that a dashboard's rate() works before the first one."""
        for reason in reasons:
            self._duplicates.labels(reason)

    def loop_lag(self, seconds: float) -> None:
        self._loop_lag.observe(seconds)

    def watch_ledger(self, entries: Callable[[], float]) -> None:
        """The ledger's entry count, read when scraped: with the disk store it is RocksDB's estimate,
        four property reads per store, too dear to take for every command."""
        self._ledger_entries.set_function(entries)

    def ledger_restored(self, seconds: float) -> None:
        self._ledger_restore.observe(seconds)

    def ledger_restore_records(self, source: str, count: int) -> None:
        """``source``: tail, rebuild or memory."""
        self._child(self._ledger_restore_records, source).inc(count)

    def unknown_outcome(self, target: str, resolution: str) -> None:
        self._child(self._unknown_outcomes, target, resolution).inc()

    def unknown_outcome_target(self, target: str) -> None:
        """Create the target's series at zero, so that increase() sees the first in-doubt command."""
        for resolution in UNKNOWN_RESOLUTIONS:
            self._child(self._unknown_outcomes, target, resolution)

    def ready(self, ready: bool) -> None:
        self._ready.set(1 if ready else 0)

    # -- tracking (lifecycle events) ----------------------------------------------------------------

    def _declare_tracking(self, r: CollectorRegistry) -> None:
        self._tracked = Gauge(
            "bridge_tracked_workflows", "Workflows followed to their end, per target.", ["target"], registry=r
        )
        self._lifecycle = Counter(
            "bridge_lifecycle_events_total", "Lifecycle events published.", ["target", "status"], registry=r
        )
        self._to_terminal = Histogram(
            "bridge_time_to_terminal_seconds",
            "Outcome that started tracking to the terminal lifecycle event.",
            ["target", "status"],
            buckets=TERMINAL_BUCKETS,
            registry=r,
        )
        self._polls = Counter(
            "bridge_tracking_polls_total",
            "Status reads, by what they found (a lifecycle state, or why none).",
            ["target", "result"],
            registry=r,
        )
        self._oldest_tracked = Gauge(
            "bridge_oldest_tracked_age_seconds", "Age of the oldest workflow still followed.", registry=r
        )
        self._tracking_behind = Gauge(
            "bridge_tracking_behind_seconds",
            "How long the most overdue status read of the target has waited past its due time (0: none "
            "overdue). Growing: workflows need more reads than tracking.polls_per_s allows.",
            ["target"],
            registry=r,
        )

    def tracking_target(
        self, target: str, statuses: list[str], terminal: list[str], results: list[str]
    ) -> None:
        """Create ``target``'s tracking series at zero, so that rate() and the panels work from the start."""
        for status in statuses:
            self._child(self._lifecycle, target, status)
        for status in terminal:
            self._child(self._to_terminal, target, status)
        for result in results:
            self._child(self._polls, target, result)
        self._child(self._tracked, target).set(0)
        self._child(self._tracking_behind, target).set(0)

    def tracked(self, target: str, count: int) -> None:
        self._child(self._tracked, target).set(count)

    def lifecycle_event(self, target: str, status: str) -> None:
        self._child(self._lifecycle, target, status).inc()

    def reached_terminal(self, target: str, status: str, seconds: float) -> None:
        self._child(self._to_terminal, target, status).observe(seconds)

    def poll(self, target: str, result: str) -> None:
        self._child(self._polls, target, result).inc()

    def oldest_tracked(self, age_s: float) -> None:
        self._oldest_tracked.set(age_s)

    def tracking_behind(self, target: str, seconds: float) -> None:
        self._child(self._tracking_behind, target).set(seconds)

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


UNKNOWN = "unknown"
UNKNOWN_RESOLUTIONS = ("retried", "reported", "already_applied", "not_yet_applied")


def bounded(value: str | None, allowed: frozenset[str]) -> str:
    """A label value from a closed set; anything else (e.g. a target named in a bad command) is 'unknown'."""
    return value if value is not None and value in allowed else UNKNOWN


def status_class(http_status: int | None) -> str:
    """'2xx'..'5xx', or 'none' when no response arrived."""
    if http_status is None:
        return "none"
    return f"{http_status // 100}xx"


def _event_loop_tasks() -> float:
    """Read when scraped, which happens on the loop (the health server is one of its tasks)."""
    try:
        return float(len(asyncio.all_tasks()))
    except RuntimeError:  # scraped from outside a running loop (a test's generate_latest)
        return 0.0
