"""Prometheus metrics: one container declares every collector, verbs record events.

Label values are bounded: topics, targets, providers, operations, statuses, reasons and status
classes come from configuration or enums, never from command content.
"""

from __future__ import annotations

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

from bridge import __version__

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        r = self.registry
        self.build_info = Info("bridge_build", "Build information of the workflow bridge.", registry=r)
        self.build_info.info({"version": __version__})
        self.commands_consumed = Counter(
            "bridge_commands_consumed_total", "Command records consumed.", ["topic"], registry=r
        )
        self.outcomes = Counter(
            "bridge_outcomes_total",
            "Outcome events published.",
            ["target", "provider", "operation", "status"],
            registry=r,
        )
        self.provider_request_duration = Histogram(
            "bridge_provider_request_duration_seconds",
            "Duration of one HTTP call to a provider.",
            ["target", "operation", "status_class"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.retries = Counter(
            "bridge_retries_total", "Provider call retries.", ["target", "reason"], registry=r
        )
        self.in_flight = Gauge("bridge_in_flight_commands", "Commands accepted and not finished.", registry=r)
        self.command_latency = Histogram(
            "bridge_command_latency_seconds",
            "Command record timestamp to outcome acknowledged.",
            ["family"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.consumer_lag = Gauge(
            "bridge_consumer_lag_messages",
            "High watermark minus committed offset.",
            ["topic", "partition"],
            registry=r,
        )
        self.oldest_uncommitted_age = Gauge(
            "bridge_oldest_uncommitted_age_seconds",
            "Age of the oldest command not yet committed.",
            registry=r,
        )
        self.dead_letters = Counter(
            "bridge_dead_letters_total", "Records sent to the dead-letter topic.", ["reason"], registry=r
        )
        self.circuit_state = Gauge(
            "bridge_circuit_state",
            "Circuit breaker state (0 closed, 1 half-open, 2 open).",
            ["target"],
            registry=r,
        )
        self.token_refreshes = Counter(
            "bridge_token_refreshes_total", "Token endpoint calls.", ["target", "result"], registry=r
        )
        self.publish_failures = Counter(
            "bridge_publish_failures_total",
            "Failed attempts to publish an outcome or dead letter.",
            registry=r,
        )
        self.commits = Counter("bridge_commits_total", "Offset commits.", ["result"], registry=r)
        self.ready = Gauge("bridge_ready", "1 when the bridge reports ready.", registry=r)
        self.last_progress = Gauge(
            "bridge_last_progress_timestamp_seconds", "Unix time of the last finished command.", registry=r
        )
        self.assigned_partitions = Gauge(
            "bridge_assigned_partitions", "Command topic partitions assigned to this member.", registry=r
        )
        self.max_in_flight = Gauge("bridge_max_in_flight", "The configured in-flight limit.", registry=r)
        self.duplicates = Counter(
            "bridge_duplicates_total",
            "Commands the ledger had seen: done (absorbed), id_reused (dead letter), in_doubt (on_unknown).",
            ["reason"],
            registry=r,
        )
        self.ledger_entries = Gauge(
            "bridge_ledger_entries",
            "Command ids the ledger remembers for the assigned partitions.",
            registry=r,
        )
        self.ledger_restore_seconds = Histogram(
            "bridge_ledger_restore_seconds",
            "Time to read the ledger partitions of one assignment to their end.",
            buckets=(0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
            registry=r,
        )
        self.unknown_outcomes = Counter(
            "bridge_unknown_outcomes_total",
            "Commands found dispatched but not done, by target and what on_unknown did.",
            ["target", "resolution"],
            registry=r,
        )
        if registry is None:  # a private registry: add what the default one would have
            ProcessCollector(registry=r)
            PlatformCollector(registry=r)

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: label values are bounded, and this runs per command."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


UNKNOWN = "unknown"


def bounded(value: str | None, allowed: frozenset[str]) -> str:
    """A label value from a closed set; anything else (e.g. a target named in a bad command) is 'unknown'."""
    return value if value is not None and value in allowed else UNKNOWN


def status_class(http_status: int | None) -> str:
    """'2xx'..'5xx', or 'none' when no response arrived."""
    if http_status is None:
        return "none"
    return f"{http_status // 100}xx"
