"""The Airflow provider passes the bridge's conformance kit, against its own sandbox over real HTTP."""

from __future__ import annotations

from workflow_bridge_airflow.sandbox import DAG, FAILING_DAG, AirflowSandboxSettings

from bridge.conformance import ProviderConformance
from bridge.providers.api import RunState, Status

_PROBLEM = b'{"type": "about:blank", "title": "DAG not found", "status": 404, "detail": "no dag"}'


class TestAirflow(ProviderConformance):
    kind = "airflow"
    plugins = ("airflow",)
    sandbox_settings = AirflowSandboxSettings(queued_s=0.1, run_duration_s=0.3)
    # the statuses the stable REST API documents for each call (v1.yaml: post_dag_run, patch_dag_run)
    documented = {
        "airflow.trigger_dag_run": {
            200: Status.QUEUED,
            400: Status.REJECTED,
            401: Status.ERROR,
            403: Status.ERROR,
            404: Status.REJECTED,
            409: Status.QUEUED,  # this command's dag_run_id exists: an earlier attempt triggered it
        },
        "airflow.set_dag_run_state": {
            200: Status.APPLIED,
            400: Status.REJECTED,
            401: Status.ERROR,
            403: Status.ERROR,
            404: Status.REJECTED,
        },
    }
    error_bodies = {404: _PROBLEM}
    _trigger = {"operation": "airflow.trigger_dag_run"}
    terminal_runs = {
        RunState.COMPLETED: {**_trigger, "dag_id": DAG},
        RunState.FAILED: {**_trigger, "dag_id": FAILING_DAG},
    }
