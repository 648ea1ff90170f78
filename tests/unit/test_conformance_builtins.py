"""The four built-in providers pass the conformance kit a plugin author runs (bridge/conformance.py)."""

from __future__ import annotations

from bridge.conformance import ProviderConformance
from bridge.messages.outcomes import Status
from bridge.providers.readings import RunState
from bridge.sandbox.workfloo import WORKFLOO_DEFINITION_PLAIN, WORKFLOO_SCENARIO, WorkflooSandboxSettings
from bridge.sandbox.zilliant import ZilliantSandboxSettings
from bridge.sandbox.zuora_runs import ZuoraSandboxSettings

_COMMON = {400: Status.REJECTED, 401: Status.ERROR, 403: Status.ERROR, 404: Status.REJECTED}


class TestZilliant(ProviderConformance):
    kind = "zilliant"
    sandbox_settings = ZilliantSandboxSettings(job_duration_s=0.3)
    documented = {"zilliant.queue_job": {202: Status.QUEUED, 409: Status.CONFLICT, **_COMMON}}
    terminal_runs = {
        RunState.COMPLETED: {"operation": "zilliant.queue_job", "automation_id": "PublishListPrices"}
    }


class TestZuora(ProviderConformance):
    kind = "zuora"
    sandbox_settings = ZuoraSandboxSettings(run_duration_s=0.3)
    documented = {
        "zuora.run_workflow": {200: Status.QUEUED, 406: Status.REJECTED, 422: Status.REJECTED, **_COMMON},
        "zuora.rerun_task": {200: Status.APPLIED, 409: Status.REJECTED, **_COMMON},
        "zuora.stop_run": {200: Status.APPLIED, 409: Status.REJECTED, **_COMMON},
    }
    _run = {"operation": "zuora.run_workflow", "workflow_id": 396}
    terminal_runs = {
        RunState.COMPLETED: {**_run, "parameters": {"accountId": "A-1"}},
        RunState.FAILED: {**_run, "parameters": {"accountId": "A-1", "SANDBOX_RESULT": "error"}},
    }


class TestWorkfloo(ProviderConformance):
    kind = "workfloo"
    sandbox_settings = WorkflooSandboxSettings(run_duration_s=0.3)
    documented = {"workfloo.execute": {200: Status.QUEUED, **_COMMON}}
    _run = {"operation": "workfloo.execute", "definition_id": WORKFLOO_DEFINITION_PLAIN}
    _run |= {"scenario_id": WORKFLOO_SCENARIO}
    terminal_runs = {
        RunState.COMPLETED: _run,
        RunState.FAILED: {**_run, "form": {"sandboxResult": "ERROR"}},
        RunState.STOPPED: {**_run, "form": {"sandboxResult": "ABANDONED"}},
    }


class TestEightByEight(ProviderConformance):
    kind = "8x8"
    documented = {"8x8.update_instance": {200: Status.APPLIED, **_COMMON}}
    # no run command: 8x8's control command steers instances started elsewhere (nothing to follow here)
