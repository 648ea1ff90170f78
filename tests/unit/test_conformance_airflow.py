"""The example plugin (plugins/workflow-bridge-airflow) passes the conformance kit in our suite too."""

from __future__ import annotations

import aiohttp
from workflow_bridge_airflow.sandbox import DAG, FAILING_DAG, AirflowSandboxSettings

from bridge.conformance import ProviderConformance
from bridge.providers.api import RunState, Status
from bridge.providers.plugins import enable
from bridge.sandbox import start_sandbox

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


async def test_faults_can_be_injected_into_the_plugins_sandbox():
    enable(["airflow"])
    try:
        async with (
            await start_sandbox() as sandbox,
            aiohttp.ClientSession() as session,
        ):
            fault = {"fail_next": {"count": 1, "status": 503}}
            async with session.put(f"{sandbox.url}/_sandbox/faults/airflow", json=fault) as answer:
                assert answer.status == 200, await answer.text()
            async with session.post(f"{sandbox.url}/airflow/api/v1/dags/{DAG}/dagRuns", json={}) as answer:
                assert answer.status == 503  # the injected failure answers before the emulation
    finally:
        enable(())
