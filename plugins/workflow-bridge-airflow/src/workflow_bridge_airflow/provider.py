"""Apache Airflow provider: trigger a DAG run, follow it to success or failed, mark a run's state.

The stable REST API (v1, Airflow 2.x), under the target's ``base_url`` (``https://airflow.example.com``)::

    POST  /api/v1/dags/{dag_id}/dagRuns                 trigger (body: dag_run_id, conf, note)
    GET   /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}    the run (state: queued, running, success, failed)
    PATCH /api/v1/dags/{dag_id}/dagRuns/{dag_run_id}    set its state (body: {"state": "success"|"failed"})

Auth is HTTP basic auth (the ``airflow.api.auth.backend.basic_auth`` backend). Errors are
``application/problem+json`` objects (``type``, ``title``, ``status``, ``detail``, ``instance``).

A trigger sends a ``dag_run_id`` derived from the command id, so a command sent twice (a retry after
a timeout, a redelivery) names the same run: Airflow's 409 "already exists" then means the earlier
attempt created it, and the outcome is the same ``queued`` as the first answer's.

This module imports only :mod:`bridge.providers.api`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Annotated, Literal

import orjson
from pydantic import Field, StringConstraints, field_validator

from bridge.providers.api import (
    API_VERSION,
    UNREADABLE,
    BasicAuthProvider,
    Command,
    CommandExample,
    CommandFamily,
    CommandRejected,
    CommandSpec,
    ErrorKind,
    HttpRequest,
    JsonObject,
    OnUnknown,
    OutcomeExample,
    ProviderSpec,
    ReadFailure,
    Reading,
    RunReading,
    RunState,
    Secret,
    Status,
    TargetBase,
    Verdict,
    classify_common,
    clip,
    json_or_none,
    plain_read,
    reference_of,
    resolve_secret,
    segment,
    status_document,
    unexpected,
)

KIND = "airflow"
TRIGGER_ROUTE = "/api/v1/dags/{dag_id}/dagRuns"
RUN_ROUTE = TRIGGER_ROUTE + "/{dag_run_id}"
STATES = {
    "queued": RunState.RUNNING,
    "running": RunState.RUNNING,
    "success": RunState.COMPLETED,
    "failed": RunState.FAILED,
}
_JSON = {"Content-Type": "application/json", "Accept": "application/json"}
# Airflow's DAG ids: letters, digits, dashes, dots and underscores (KEY_REGEX), at most 250.
DagId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]{1,250}$")]
# A run id is free text to Airflow (manual__2025-01-01T00:00:00+00:00): any printable, no control chars.
DagRunId = Annotated[str, StringConstraints(pattern=r"^[^\x00-\x1f\x7f]{1,250}$")]


class AirflowTarget(TargetBase):
    provider: Literal["airflow"]
    on_unknown: OnUnknown = Field(
        default="retry", description="Safe: the same command names the same dag_run_id (a 409 then)."
    )
    username: Secret
    password: Secret

    _secrets = field_validator("username", "password", mode="before")(resolve_secret)


class AirflowTriggerDagRun(Command):
    """Trigger a DAG run (POST /api/v1/dags/{dag_id}/dagRuns)."""

    operation: Literal["airflow.trigger_dag_run"]
    dag_id: DagId = Field(description="The DAG to run.")
    conf: JsonObject = Field(default_factory=dict, description="The run's conf (the DAG's params).")
    note: Annotated[str, StringConstraints(max_length=1000)] | None = Field(
        default=None, description="A note shown on the run."
    )


class AirflowSetDagRunState(Command):
    """Mark a DAG run success or failed (PATCH /api/v1/dags/{dag_id}/dagRuns/{dag_run_id})."""

    operation: Literal["airflow.set_dag_run_state"]
    dag_id: DagId
    dag_run_id: DagRunId = Field(description="The run (a trigger outcome's provider_ref).")
    state: Literal["success", "failed"]


def dag_run_id(command: AirflowTriggerDagRun) -> str:
    """The same for every attempt of one command, and different for every command."""
    return "wfb-" + hashlib.sha256(f"{command.operation}:{command.id}".encode()).hexdigest()[:40]


def run_path(dag_id: str, run_id: str) -> str:
    return f"/api/v1/dags/{segment(dag_id)}/dagRuns/{segment(run_id)}"


def build_request(command: Command) -> HttpRequest:
    if isinstance(command, AirflowTriggerDagRun):
        body: dict[str, object] = {"dag_run_id": dag_run_id(command), "conf": command.conf}
        if command.note is not None:
            body["note"] = command.note
        path = f"/api/v1/dags/{segment(command.dag_id)}/dagRuns"
        return HttpRequest("POST", path, headers=dict(_JSON), body=orjson.dumps(body), route=TRIGGER_ROUTE)
    if isinstance(command, AirflowSetDagRunState):
        path = run_path(command.dag_id, command.dag_run_id)
        body = {"state": command.state}
        return HttpRequest("PATCH", path, headers=dict(_JSON), body=orjson.dumps(body), route=RUN_ROUTE)
    raise CommandRejected(ErrorKind.TARGET_MISMATCH, f"airflow targets cannot run {command.operation}")


def problem(body: bytes) -> str:
    """``title: detail`` of a problem+json error body; empty when there is none."""
    parsed = json_or_none(body)
    if not isinstance(parsed, dict):
        return ""
    parts = [parsed[k] for k in ("title", "detail") if isinstance(parsed.get(k), str) and parsed[k]]
    return clip(": ".join(parts))


def classify(command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
    """200: the run (queued, or its state set); a trigger's 409: this command's run exists already."""
    if 200 <= status < 300:
        parsed = json_or_none(body)
        found = reference_of(parsed.get("dag_run_id")) if isinstance(parsed, dict) else None
        if isinstance(command, AirflowSetDagRunState):
            return Verdict(Status.APPLIED, reference=found or command.dag_run_id)
        own = dag_run_id(command) if isinstance(command, AirflowTriggerDagRun) else None
        return Verdict(Status.QUEUED, reference=found or own)
    if status == 409 and isinstance(command, AirflowTriggerDagRun):
        return Verdict(Status.QUEUED, reference=dag_run_id(command))
    verdict = classify_common(status, headers) or unexpected(status)
    detail = problem(body)
    if detail and verdict.status is Status.REJECTED:
        return Verdict(verdict.status, error_kind=verdict.error_kind, message=f"Airflow: {detail} ({status})")
    return verdict


def status_ref(command: Command, reference: str | None) -> dict[str, str] | None:
    if isinstance(command, AirflowTriggerDagRun) and reference:
        return {"dag_id": command.dag_id, "dag_run_id": reference}
    if isinstance(command, AirflowSetDagRunState):
        return {"dag_id": command.dag_id, "dag_run_id": command.dag_run_id}
    return None


def build_status_request(ref: Mapping[str, str]) -> HttpRequest:
    path = run_path(ref["dag_id"], ref["dag_run_id"])
    return HttpRequest("GET", path, headers={"Accept": "application/json"}, route=RUN_ROUTE)


def classify_status(status: int, headers: Mapping[str, str], body: bytes) -> Reading:
    doc = status_document(status, headers, body)
    if isinstance(doc, ReadFailure):
        return doc
    raw = doc.get("state")
    state = STATES.get(raw) if isinstance(raw, str) else None
    if state is None:
        return UNREADABLE
    detail = "Airflow marked the DAG run failed" if state is RunState.FAILED else None
    return RunReading(state, str(raw), detail=detail)


class AirflowProvider(BasicAuthProvider[AirflowTarget]):
    """One Airflow deployment, with a basic-auth user."""

    kind = KIND

    def build_request(self, command: Command) -> HttpRequest:
        return build_request(command)

    def classify(self, command: Command, status: int, headers: Mapping[str, str], body: bytes) -> Verdict:
        return classify(command, status, headers, body)


_TRIGGER = {"target": "airflow-prod", "dag_id": "nightly_etl", "conf": {"date": "2025-01-31"}}
_NO_DAG = {
    "kind": ErrorKind.PROVIDER_REJECTED,
    "retryable": False,
    "message": "Airflow: DAG not found: DAG with dag_id: 'nightly_etl' not found (404)",
}
SPEC = ProviderSpec(
    kind=KIND,
    api_version=API_VERSION,
    title="Apache Airflow",
    order=101,
    target=AirflowTarget,
    adapter=AirflowProvider,
    commands=(
        CommandSpec(
            AirflowTriggerDagRun,
            CommandFamily.RUN,
            CommandExample(101, "etl-2025-01-31", _TRIGGER),
            (
                OutcomeExample(Status.QUEUED, 300, {"provider_ref": "wfb-1f2e", "http_status": 200}),
                OutcomeExample(Status.REJECTED, 301, {"http_status": 404, "error": _NO_DAG}),
            ),
        ),
        CommandSpec(
            AirflowSetDagRunState,
            CommandFamily.CONTROL,
            CommandExample(
                102,
                "etl-2025-01-31",
                {
                    "target": "airflow-prod",
                    "dag_id": "nightly_etl",
                    "dag_run_id": "wfb-1f2e",
                    "state": "failed",
                },
            ),
        ),
    ),
    status_read=lambda target: plain_read(status_ref, build_status_request, classify_status),
    what_to_check="whether the DAG has a run whose dag_run_id is this command's (wfb-...)",
    followed="dag_run_id",
)
