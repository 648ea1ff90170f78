"""Every bridge_* series that the Grafana dashboard and the alert rules query is exported by
bridge.observability.metrics, with the labels they select and group by.

The exported names come from a scrape of a fresh ``Metrics()`` in which every labelled metric has
been touched once, so the suffixes are the real ones (``_total`` for counters, ``_bucket``/``_sum``/
``_count`` for histograms, ``_info`` for the Info).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families

from bridge.observability.metrics import Metrics

FILES = Path(__file__).resolve().parents[3] / "helm" / "workflow-bridge" / "files"
DASHBOARD = FILES / "dashboard.json"
ALERTS = FILES / "alerts.yaml"

# \b keeps e.g. "workflow_bridge_x" from matching; names end where PromQL syntax starts.
METRIC = re.compile(r"\bbridge_[a-zA-Z0-9_]+")
SELECTOR = re.compile(r"\b(bridge_[a-zA-Z0-9_]+)\s*\{([^}]*)\}")
MATCHER = re.compile(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)")
# "sum by (a, b) (rate(bridge_x" / "max by (a) (bridge_x": the labels one aggregation keeps.
GROUPING = re.compile(r"\bby\s*\(([^)]*)\)\s*\(\s*(?:[a-z_]+\(\s*)?(bridge_[a-zA-Z0-9_]+)")
# Added by Prometheus' service discovery, not by the bridge.
TARGET_LABELS = frozenset({"namespace", "job", "pod", "instance", "service", "container", "endpoint"})


def exported_series() -> dict[str, set[str]]:
    """Sample name -> its label names, as a scrape of /metrics shows them."""
    metrics = Metrics()
    for collector in vars(metrics).values():
        labelnames = getattr(collector, "_labelnames", ())
        if isinstance(collector, MetricWrapperBase) and labelnames:
            collector.labels(*(["x"] * len(labelnames)))
    text = generate_latest(metrics.registry).decode()
    series: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, set()).update(sample.labels)
    return series


def _strings(node: Any, keys: frozenset[str]) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in keys and isinstance(value, str):
                yield value
            else:
                yield from _strings(value, keys)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value, keys)


def dashboard_queries() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return list(_strings(dashboard, frozenset({"expr", "query", "definition"})))


def alert_queries() -> list[str]:
    rules = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


SOURCES = {"dashboard.json": dashboard_queries, "alerts.yaml": alert_queries}


def test_scrape_has_the_expected_suffixes():
    series = exported_series()
    assert "bridge_build_info" in series
    assert {"bridge_outcomes_total", "bridge_commits_total"} <= series.keys()
    assert {
        "bridge_provider_request_duration_seconds_bucket",
        "bridge_provider_request_duration_seconds_sum",
        "bridge_provider_request_duration_seconds_count",
    } <= series.keys()
    assert "le" in series["bridge_command_latency_seconds_bucket"]
    assert series["bridge_consumer_lag_messages"] == {"topic", "partition"}


@pytest.mark.parametrize("source", SOURCES)
def test_every_queried_metric_is_exported(source):
    exported = exported_series()
    used = {name for query in SOURCES[source]() for name in METRIC.findall(query)}
    assert len(used) >= 8, f"suspiciously few bridge_* names found in {source}: {sorted(used)}"
    missing = sorted(used - exported.keys())
    assert not missing, (
        f"{source} queries series that bridge.observability.metrics does not export: {missing}"
    )


@pytest.mark.parametrize("source", SOURCES)
def test_selected_and_grouped_labels_exist(source):
    exported = exported_series()
    problems = []
    for query in SOURCES[source]():
        uses = [(name, MATCHER.findall(body)) for name, body in SELECTOR.findall(query)]
        uses += [
            (name, [label.strip() for label in labels.split(",")]) for labels, name in GROUPING.findall(query)
        ]
        for name, labels in uses:
            unknown = {label for label in labels if label} - TARGET_LABELS - exported.get(name, set())
            if unknown:
                problems.append(f"{name} has no label(s) {sorted(unknown)} in: {' '.join(query.split())}")
    assert not problems, "\n".join(problems)


def test_dashboard_covers_every_panel_family():
    used = {name for query in dashboard_queries() for name in METRIC.findall(query)}
    required = {
        "bridge_commands_consumed_total",
        "bridge_outcomes_total",
        "bridge_provider_request_duration_seconds_bucket",
        "bridge_retries_total",
        "bridge_consumer_lag_messages",
        "bridge_oldest_uncommitted_age_seconds",
        "bridge_circuit_state",
        "bridge_dead_letters_total",
        "bridge_in_flight_commands",
        "bridge_command_latency_seconds_bucket",
    }
    assert not required - used, f"dashboard lacks panels for {sorted(required - used)}"


def test_alerts_cover_the_failure_modes():
    used = {name for query in alert_queries() for name in METRIC.findall(query)}
    required = {
        "bridge_ready",
        "bridge_consumer_lag_messages",
        "bridge_oldest_uncommitted_age_seconds",
        "bridge_outcomes_total",
        "bridge_circuit_state",
        "bridge_dead_letters_total",
    }
    assert not required - used, f"no alert reads {sorted(required - used)}"
