"""Status reads: each provider's pure builder and classifier, and the Zuora stop operation."""

from __future__ import annotations

import orjson
import pytest

from bridge.messages.outcomes import ErrorKind, Status
from bridge.providers import eightbyeight, workfloo, zilliant, zuora
from bridge.providers.eightbyeight import EightByEightUpdateInstance
from bridge.providers.readings import ReadFailure, ReadProblem, RunReading, RunState
from bridge.providers.workfloo import WorkflooExecute
from bridge.providers.zuora import ZuoraRunWorkflow, ZuoraStopRun

J = orjson.dumps


def stop(run_id: int = 401) -> ZuoraStopRun:
    return ZuoraStopRun(id="stop-1", target="z", operation="zuora.stop_run", run_id=run_id)


def test_zuora_stop_is_a_put_without_idempotency_key():
    request = zuora.build_request(stop(401))
    assert (request.method, request.path, request.route) == (
        "PUT",
        "/workflows/workflow_runs/401/stop",
        "/workflows/workflow_runs/{workflow_run_id}/stop",
    )
    assert "Idempotency-Key" not in request.headers
    assert request.body is None


def test_zuora_stop_classification():
    applied = zuora.classify(stop(), 200, {}, J({"id": 401, "status": "Stopping"}))
    assert (applied.status, applied.reference) == (Status.APPLIED, "401")
    assert zuora.classify(stop(), 200, {}, b"").reference == "401"
    refused = zuora.classify(stop(), 400, {}, J({"errors": [{"title": "already Finished"}]}))
    assert (refused.status, refused.error_kind) == (Status.REJECTED, ErrorKind.PROVIDER_REJECTED)
    assert "already Finished" in refused.message
    assert "refused the stop" in zuora.classify(stop(), 409, {}, b"").message


@pytest.mark.parametrize(
    ("body", "state", "detail"),
    [
        ({"status": "Queued", "tasks": {"queued": 3, "total": 3}}, RunState.RUNNING, None),
        ({"status": "Processing"}, RunState.RUNNING, None),
        ({"status": "Stopping"}, RunState.RUNNING, None),
        ({"status": "Stopped"}, RunState.STOPPED, None),
        ({"status": "Finished", "tasks": {"success": 3, "total": 3}}, RunState.COMPLETED, None),
        ({"status": "Finished", "tasks": {"error": 1, "success": 2, "total": 3}}, RunState.FAILED, "1 of 3"),
        ({"status": "Finished", "tasks": {"pending": 1, "success": 2, "total": 3}}, RunState.RUNNING, None),
        ({"status": "Finished", "tasks": {"error": True, "total": 3}}, RunState.COMPLETED, None),
    ],
)
def test_zuora_finished_is_not_success(body, state, detail):
    reading = zuora.classify_status(200, {}, J(body))
    assert isinstance(reading, RunReading)
    assert reading.state is state
    assert reading.raw == body["status"]
    assert (reading.detail is None) if detail is None else (detail in (reading.detail or ""))


def test_zuora_status_request_and_ref():
    command = ZuoraRunWorkflow(id="c", target="z", operation="zuora.run_workflow", workflow_id=396)
    assert zuora.status_ref(command, "401") == {"run_id": "401"}
    assert zuora.status_ref(command, None) is None
    assert zuora.status_ref(stop(9), None) == {"run_id": "9"}
    request = zuora.build_status_request({"run_id": "401"})
    assert (request.method, request.path) == ("GET", "/workflows/workflow_runs/401")


@pytest.mark.parametrize(
    ("status", "headers", "problem", "retry_after"),
    [
        (401, {}, ReadProblem.AUTH, None),
        (404, {}, ReadProblem.GONE, None),
        (429, {"Retry-After": "7"}, ReadProblem.RATE_LIMITED, 7.0),
        (503, {"retry-after": "3"}, ReadProblem.PROVIDER_ERROR, 3.0),
        (500, {}, ReadProblem.PROVIDER_ERROR, None),
        (200, {}, ReadProblem.UNREADABLE, None),
    ],
)
@pytest.mark.parametrize(
    "classify",
    [zuora.classify_status, zilliant.classify_status, workfloo.classify_status, eightbyeight.classify_status],
)
def test_failures_every_read_shares(classify, status, headers, problem, retry_after):
    reading = classify(status, headers, b"not json")
    assert reading == ReadFailure(problem, retry_after)
    assert reading.circuit_failure is (problem is ReadProblem.PROVIDER_ERROR)


@pytest.mark.parametrize(
    ("body", "state", "raw"),
    [
        ({"executionStatus": "OPEN", "closeStatus": None}, RunState.RUNNING, "OPEN"),
        ({"executionStatus": "CLOSED", "closeStatus": "COMPLETED"}, RunState.COMPLETED, "COMPLETED"),
        ({"executionStatus": "CLOSED", "closeStatus": "TIMED_OUT"}, RunState.FAILED, "TIMED_OUT"),
        ({"executionStatus": "CLOSED", "closeStatus": None}, RunState.FAILED, "None"),
    ],
)
def test_zilliant_any_close_status_but_completed_failed(body, state, raw):
    reading = zilliant.classify_status(200, {}, J(body))
    assert isinstance(reading, RunReading)
    assert (reading.state, reading.raw) == (state, raw)
    if state is RunState.FAILED:
        assert raw in (reading.detail or "")


def test_zilliant_status_request():
    request = zilliant.build_status_request({"job_id": "5b6a2c3d-91f0"})
    assert request.path == "/v1/JobWorkflow/Authorized/5b6a2c3d-91f0/Status"
    assert request.route == "/v1/JobWorkflow/Authorized/{jobId}/Status"


@pytest.mark.parametrize(
    ("body", "state", "waiting_for"),
    [
        ({"status": "IN_PROGRESS", "currentNodeType": "LINK_PROCESSING"}, RunState.RUNNING, None),
        ({"status": "IN_PROGRESS", "currentNodeType": "FORM"}, RunState.WAITING, "form"),
        ({"status": "IN_PROGRESS", "currentNodeType": "document"}, RunState.WAITING, "document"),
        ({"status": "SUCCESS"}, RunState.COMPLETED, None),
        ({"status": "ERROR"}, RunState.FAILED, None),
        ({"status": "ABANDONED"}, RunState.STOPPED, None),
    ],
)
def test_workfloo_states(body, state, waiting_for):
    reading = workfloo.classify_status(200, {}, J(body))
    assert isinstance(reading, RunReading)
    assert (reading.state, reading.waiting_for) == (state, waiting_for)


def test_workfloo_status_request_in_sandbox_mode():
    command = WorkflooExecute(id="c", target="w", operation="workfloo.execute", definition_id="d1")
    ref = workfloo.status_ref(command, "64a8bc288de4164da93f339c")
    assert ref == {"execution_id": "64a8bc288de4164da93f339c"}
    request = workfloo.build_status_request(ref, sandbox=True)
    assert (request.path, dict(request.query)) == (
        "/api/v1/workfloo/status/64a8bc288de4164da93f339c",
        {"sandbox": "true"},
    )


@pytest.mark.parametrize(
    ("status", "action", "state"),
    [
        ("Runnable", "resume", RunState.RUNNING),
        ("Suspended", "suspend", RunState.WAITING),
        ("Complete", "suspend", RunState.COMPLETED),
        ("Terminated", "terminate", RunState.STOPPED),
        ("Terminated", "suspend", RunState.FAILED),
    ],
)
def test_eightbyeight_states(status, action, state):
    reading = eightbyeight.classify_status(200, {}, J({"status": status}), action=action)
    assert isinstance(reading, RunReading)
    assert reading.state is state


def test_eightbyeight_ref_names_the_instance_and_the_action():
    command = EightByEightUpdateInstance(
        id="c",
        target="e",
        operation="8x8.update_instance",
        action="suspend",
        definition_id="d-1",
        instance_id="i;1",
    )
    ref = eightbyeight.status_ref(command, "i;1", default_account="acme")
    assert ref == {"account_id": "acme", "definition_id": "d-1", "instance_id": "i;1", "action": "suspend"}
    request = eightbyeight.build_instance_read(ref)
    assert request.path == "/api/v1/accounts/acme/definitions/d-1/workflows/i%3B1"
    assert request.method == "GET"
