"""The metric verbs: each records what its name says, on the series dashboards and alerts read."""

from __future__ import annotations

from bridge.observability.metrics import Metrics, bounded, status_class


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_command_verbs() -> None:
    m = Metrics()
    m.consumed("workflow.run.commands")
    m.outcome("wf", "workfloo", "workfloo.execute", "queued")
    m.outcome("wf", "workfloo", "workfloo.execute", "queued")
    m.dead_letter("invalid_json")
    m.command_latency("run", 0.2)
    assert value(m, "bridge_commands_consumed_total", topic="workflow.run.commands") == 1
    labels = {"target": "wf", "provider": "workfloo", "operation": "workfloo.execute", "status": "queued"}
    assert value(m, "bridge_outcomes_total", **labels) == 2
    assert value(m, "bridge_dead_letters_total", reason="invalid_json") == 1
    assert value(m, "bridge_command_latency_seconds_count", family="run") == 1


def test_provider_verbs() -> None:
    m = Metrics()
    m.provider_call("wf", "workfloo.execute", 503, 0.05)
    m.provider_call("wf", "workfloo.execute", None, 1.0)
    m.retry("wf", "provider_error")
    m.token_target("zu")
    m.token_refresh("zu", ok=False)
    m.circuit("wf", 2)
    calls = "bridge_provider_request_duration_seconds_count"
    assert value(m, calls, target="wf", operation="workfloo.execute", status_class="5xx") == 1
    assert value(m, calls, target="wf", operation="workfloo.execute", status_class="none") == 1
    assert value(m, "bridge_retries_total", target="wf", reason="provider_error") == 1
    assert value(m, "bridge_token_refreshes_total", target="zu", result="ok") == 0  # exists from the start
    assert value(m, "bridge_token_refreshes_total", target="zu", result="failed") == 1
    assert value(m, "bridge_circuit_state", target="wf") == 2


def test_kafka_verbs_and_a_revoked_partition_forgets_its_lag() -> None:
    m = Metrics()
    engine = {"in_flight": 3, "progress": 1700000000.0}
    m.watch_engine(lambda: engine["in_flight"], lambda: engine["progress"], limit=100)
    m.commit(ok=True)
    m.commit(ok=False)
    m.publish_failed()
    m.lag("t", 4, 17)
    m.assigned(6)
    m.oldest_uncommitted(2.5)
    m.ready(True)
    assert (value(m, "bridge_in_flight_commands"), value(m, "bridge_max_in_flight")) == (3, 100)
    engine["in_flight"] = 7  # read when scraped
    assert value(m, "bridge_in_flight_commands") == 7
    assert value(m, "bridge_last_progress_timestamp_seconds") == 1700000000.0
    assert (
        value(m, "bridge_commits_total", result="ok")
        == value(m, "bridge_commits_total", result="failed")
        == 1
    )
    assert value(m, "bridge_publish_failures_total") == 1
    assert value(m, "bridge_consumer_lag_messages", topic="t", partition="4") == 17
    m.forget_partition("t", 4)
    m.forget_partition("t", 4)  # twice is harmless
    assert value(m, "bridge_consumer_lag_messages", topic="t", partition="4") is None
    assert (value(m, "bridge_assigned_partitions"), value(m, "bridge_oldest_uncommitted_age_seconds")) == (
        6,
        2.5,
    )
    assert value(m, "bridge_ready") == 1


def test_label_helpers() -> None:
    assert bounded("wf", frozenset({"wf"})) == "wf"
    assert bounded("from-a-command", frozenset({"wf"})) == bounded(None, frozenset()) == "unknown"
    assert [status_class(s) for s in (200, 404, 503, None)] == ["2xx", "4xx", "5xx", "none"]


def test_ledger_verbs_and_in_doubt_series_exist_from_the_start() -> None:
    m = Metrics()
    m.unknown_outcome_target("loans")
    assert value(m, "bridge_unknown_outcomes_total", target="loans", resolution="reported") == 0
    m.unknown_outcome("loans", "reported")
    m.duplicate("done")
    entries = [42]
    m.watch_ledger(lambda: entries[0])
    m.ledger_restored(0.3)
    assert value(m, "bridge_unknown_outcomes_total", target="loans", resolution="reported") == 1
    assert value(m, "bridge_duplicates_total", reason="done") == 1
    assert value(m, "bridge_ledger_entries") == 42
    entries[0] = 43
    assert value(m, "bridge_ledger_entries") == 43  # read when scraped
    assert value(m, "bridge_ledger_restore_seconds_count") == 1
