"""An Airflow webserver's DAG-run API, emulated for tests and ``bridge sandbox --plugin airflow``.

Routes (under ``/airflow``, so a target's ``base_url`` is ``<sandbox>/airflow``)::

    POST  /airflow/api/v1/dags/{dag_id}/dagRuns                 trigger: 200 the run, 409 run id taken
    GET   /airflow/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}    the run
    PATCH /airflow/api/v1/dags/{dag_id}/dagRuns/{dag_run_id}    {"state": "success"|"failed"|"queued"}

Basic auth with ``AIRFLOW_USER`` / ``AIRFLOW_PASSWORD``; errors are problem+json as Airflow sends them.
A run is ``queued`` for ``queued_s``, ``running`` for ``run_duration_s``, then ``success``, except the
runs of ``FAILING_DAG`` (or a ``conf`` with ``"sandbox_result": "failed"``), which end ``failed``.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web

from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.spec import Emulation, Example, LocalTargets, SandboxSpec
from bridge.sandbox.state import json_response, read_json_object

KIND = "airflow"
AIRFLOW_USER = "sandbox-airflow"
AIRFLOW_PASSWORD = "sandbox-airflow-password"  # noqa: S105 (public sandbox credential)
DAG = "nightly_etl"
FAILING_DAG = "broken_etl"
PREFIX = "/airflow/api/v1/dags/{dag_id}/dagRuns"
LOCAL_TARGET = "airflow-sandbox"
_PROBLEM = "https://airflow.apache.org/docs/apache-airflow/stable/stable-rest-api-ref.html#section/Errors/"


@dataclass(frozen=True, kw_only=True, slots=True)
class AirflowSandboxSettings:
    username: str = AIRFLOW_USER
    password: str = AIRFLOW_PASSWORD
    queued_s: float = 0.2
    run_duration_s: float = 1.0
    dags: tuple[str, ...] = (DAG, FAILING_DAG)


@dataclass(slots=True)
class DagRun:
    dag_id: str
    dag_run_id: str
    conf: dict[str, Any]
    note: str | None
    created_at: float
    fails: bool
    state: str | None = None  # set by a PATCH; None: by the clock


def problem(status: int, title: str, detail: str, kind: str) -> web.Response:
    body = {"type": _PROBLEM + kind, "title": title, "status": status, "detail": detail, "instance": None}
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/problem+json")


def basic_ok(header: str | None, username: str, password: str) -> bool:
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(given, f"{username}:{password}".encode())


class AirflowSandbox:
    def __init__(self, config: SandboxConfig) -> None:
        self.config = config
        self.settings = config.of(KIND, AirflowSandboxSettings)
        self.runs: dict[tuple[str, str], DagRun] = {}

    def reset(self) -> None:
        self.runs.clear()

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(PREFIX, self.trigger),
            web.get(PREFIX + "/{dag_run_id}", self.read),
            web.patch(PREFIX + "/{dag_run_id}", self.set_state),
        ]

    def state_of(self, run: DagRun) -> str:
        if run.state is not None:
            return run.state
        age = self.config.clock() - run.created_at
        if age < self.settings.queued_s:
            return "queued"
        if age < self.settings.queued_s + self.settings.run_duration_s:
            return "running"
        return "failed" if run.fails else "success"

    def document(self, run: DagRun) -> dict[str, Any]:
        return {
            "dag_id": run.dag_id,
            "dag_run_id": run.dag_run_id,
            "state": self.state_of(run),
            "conf": run.conf,
            "note": run.note,
            "external_trigger": True,
        }

    def _refused(self, request: web.Request) -> web.Response | None:
        if basic_ok(request.headers.get("Authorization"), self.settings.username, self.settings.password):
            return None
        return problem(401, "Unauthorized", "No credentials", "Unauthenticated")

    def _dag(self, request: web.Request) -> str | web.Response:
        dag_id = request.match_info["dag_id"]
        if dag_id not in self.settings.dags:
            return problem(404, "DAG not found", f"DAG with dag_id: '{dag_id}' not found", "NotFound")
        return dag_id

    async def trigger(self, request: web.Request) -> web.Response:
        refused = self._refused(request)
        dag_id = self._dag(request) if refused is None else refused
        if isinstance(dag_id, web.Response):
            return dag_id
        body = await read_json_object(request, empty_ok=True)
        conf = body.get("conf", {}) if body is not None else None
        if body is None or not isinstance(conf, dict):
            return problem(400, "Bad Request", "conf: not a valid dict", "BadRequest")
        run_id = body.get("dag_run_id") or f"manual__{self.config.clock():.6f}"
        if not isinstance(run_id, str):
            return problem(400, "Bad Request", "dag_run_id: not a valid string", "BadRequest")
        if (dag_id, run_id) in self.runs:
            detail = f"DAGRun with DAG ID: '{dag_id}' and DAGRun ID: '{run_id}' already exists"
            return problem(409, "Conflict", detail, "AlreadyExists")
        fails = dag_id == FAILING_DAG or conf.get("sandbox_result") == "failed"
        note = body.get("note") if isinstance(body.get("note"), str) else None
        run = DagRun(dag_id, run_id, conf, note, self.config.clock(), fails)
        self.runs[(dag_id, run_id)] = run
        return json_response(self.document(run))

    def _run(self, request: web.Request) -> DagRun | web.Response:
        refused = self._refused(request)
        dag_id = self._dag(request) if refused is None else refused
        if isinstance(dag_id, web.Response):
            return dag_id
        run_id = request.match_info["dag_run_id"]
        run = self.runs.get((dag_id, run_id))
        if run is None:
            detail = f"DAGRun with DAG ID: '{dag_id}' and DagRun ID: '{run_id}' not found"
            return problem(404, "DAGRun not found", detail, "NotFound")
        return run

    async def read(self, request: web.Request) -> web.Response:
        run = self._run(request)
        return run if isinstance(run, web.Response) else json_response(self.document(run))

    async def set_state(self, request: web.Request) -> web.Response:
        run = self._run(request)
        if isinstance(run, web.Response):
            return run
        body = await read_json_object(request)
        state = body.get("state") if body is not None else None
        if state not in ("success", "failed", "queued"):
            return problem(400, "Bad Request", "state: must be one of success, failed, queued", "BadRequest")
        run.state = state
        return json_response(self.document(run))


def _local_targets(url: str) -> dict[str, dict[str, Any]]:
    return {
        LOCAL_TARGET: {
            "provider": KIND,
            "base_url": f"{url}/airflow",
            "username": {"env": "SANDBOX_AIRFLOW_USER"},
            "password": {"env": "SANDBOX_AIRFLOW_PASSWORD"},
        }
    }


def _examples(cid: Callable[[str], str]) -> list[Example]:
    trigger = {"target": LOCAL_TARGET, "operation": "airflow.trigger_dag_run"}
    return [
        (b"etl-1", {"id": cid("airflow-queued"), **trigger, "dag_id": DAG, "conf": {"date": "2025-01-31"}}),
        (b"etl-2", {"id": cid("airflow-unknown-dag"), **trigger, "dag_id": "no_such_dag"}),
    ]


SANDBOX = SandboxSpec(
    kind=KIND,
    fault_keys=(KIND,),
    fault_key=lambda path: KIND if path.split("/")[0] == "airflow" else None,
    emulate=lambda config: Emulation((AirflowSandbox(config),)),
    local=LocalTargets(
        _local_targets,
        {"SANDBOX_AIRFLOW_USER": AIRFLOW_USER, "SANDBOX_AIRFLOW_PASSWORD": AIRFLOW_PASSWORD},
        _examples,
    ),
)
