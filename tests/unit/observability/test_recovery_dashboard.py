"""What an SRE sees of an outage and of what the ledger absorbs (issue 25.8): the dashboard has a row
for parking and the ledger, each of its series exported (tests/unit/test_observability_names.py
checks names and labels), and an alert fires when parked work does not drain after its target
recovered (its promtool unit test is in helm/alerts_test.yaml)."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from tests.unit.observability.test_observability_names import (
    ALERTS,
    DASHBOARD,
    METRIC,
    alert_queries,
    dashboard_queries,
)

PANELS = {
    "bridge_parked_total": "parked commands by target and reason",
    "bridge_parked_commands": "parked now",
    "bridge_parked_waiting_commands": "parked and waiting for their target",
    "bridge_parked_returns_total": "replays: how parked work came back",
    "bridge_replayed_total": "replays by topic",
    "bridge_parked_wait_seconds_bucket": "the time parked work waits",
    "bridge_target_in_flight_commands": "bulkhead use",
    "bridge_call_slot_wait_seconds_bucket": "call-slot waits",
    "bridge_duplicates_total": "duplicates absorbed by reason",
    "bridge_unknown_outcomes_total": "in-doubt resolutions by target",
}


def test_the_dashboard_has_a_row_for_parking_and_the_ledger_with_each_panel() -> None:
    used = {name for query in dashboard_queries() for name in METRIC.findall(query)}
    missing = {name: what for name, what in PANELS.items() if name not in used}
    assert not missing, f"no panel for {missing}"
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    rows = [p["title"] for p in panels if p["type"] == "row"]
    assert any("Parking" in title and "ledger" in title for title in rows)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "two panels share an id"
    by_target = [q for q in dashboard_queries() if "bridge_parked_total" in q]
    assert all("target, reason" in q for q in by_target)  # by target and reason, never by command


def test_an_alert_reads_parked_work_waiting_for_a_recovered_target() -> None:
    rules = [q for q in alert_queries() if "bridge_parked_waiting_commands" in q]
    assert len(rules) == 1 and "bridge_circuit_state" in rules[0]
    assert "WorkflowBridgeParkedWorkNotDraining" in ALERTS.read_text(encoding="utf-8")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not on PATH (Debian `prometheus`)")
def test_the_alert_rules_unit_tests_pass_under_promtool() -> None:
    tests = ALERTS.parents[2] / "alerts_test.yaml"
    done = subprocess.run(
        ["promtool", "test", "rules", str(tests)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
