"""The Zuora sandbox's seeded state and its pure rules: definitions, runs and their timelines, tasks.

:mod:`bridge.sandbox.zuora` serves them; they live apart only to keep both modules short.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.sandbox.config import DAY_S
from bridge.sandbox.state import IdempotencyVerdict, JsonObject, utc

KIND = "zuora"
ZUORA_CLIENT_ID = "sandbox-zuora-client"
ZUORA_CLIENT_SECRET = "sandbox-zuora-secret"  # noqa: S105 (public sandbox credential)
ZUORA_DEFINITION_REQUIRES_ACCOUNT = 396  # callout enabled, required parameters ["accountId"]
ZUORA_DEFINITION_CALLOUT_DISABLED = 397
ZUORA_DEFINITION_NO_PARAMS = 398  # callout enabled, no required parameters
ZUORA_SEEDED_INSTANCE = 400  # an instance (run) of 396, so running it is a 409
ZUORA_TASK_ERROR = "2770"
ZUORA_TASK_SUCCESS = "2771"
# A sandbox extension that picks how a started run ends (the real provider decides that itself).
ZUORA_RESULT_PARAM = "SANDBOX_RESULT"  # a run parameter: "error" ends Finished with a task error
ZUORA_DURATION_PARAM = "SANDBOX_DURATION_S"  # a run parameter: this run's duration (seconds)


@dataclass(frozen=True, kw_only=True, slots=True)
class ZuoraSandboxSettings:
    client_id: str = ZUORA_CLIENT_ID
    client_secret: str = ZUORA_CLIENT_SECRET
    extra_clients: tuple[tuple[str, str], ...] = ()
    """More (client_id, client_secret) pairs, each its own tenant (for per-tenant idempotency)."""
    token_ttl_s: int = 3599
    idempotency_ttl_s: float = DAY_S
    run_duration_s: float = 2.0
    """How long a started Zuora run is Queued and Processing before it is Finished."""

    def clients(self) -> dict[str, str]:
        """client_id -> client_secret for every tenant the sandbox accepts."""
        return {self.client_id: self.client_secret, **dict(self.extra_clients)}


RESERVED_WORDS = frozenset({"controller", "action", "id", "user_email", "user_token", "format"})
TRACK_ID_FORBIDDEN = frozenset(":;\"'")
MAX_TRACK_ID = 64
AUTH_ERROR = {"message": "Authentication error"}


def errors(status: int, title: str, code: str = "invalid") -> JsonObject:
    return {"errors": [{"code": code, "status": status, "title": title}]}


def track_id_ok(value: str) -> bool:
    """Pure: ≤ 64 printable US-ASCII characters without ``: ; " '``."""
    return (
        len(value) <= MAX_TRACK_ID
        and all(" " <= ch <= "~" for ch in value)
        and not TRACK_ID_FORBIDDEN.intersection(value)
    )


IDEMPOTENCY_REFUSALS = {
    IdempotencyVerdict.IN_FLIGHT: errors(
        409, "Another request with the same Idempotency-Key is in progress", "conflict"
    ),
    IdempotencyVerdict.MISMATCH: errors(
        422,
        "The Idempotency-Key was already used with a different URL or HTTP method",
        "unprocessable_entity",
    ),
}


def zuora_time(epoch_s: float) -> str:
    """``2019-09-19 18:25:33 UTC``, the format of workflow instance timestamps."""
    return utc(epoch_s).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True)
class Definition:
    id: int
    callout_enabled: bool
    required: tuple[str, ...] = ()


def run_error(definition: Definition, body: JsonObject) -> tuple[int, JsonObject] | None:
    """Pure: the error a Run with this body gets from this definition, or None when it runs."""
    if not definition.callout_enabled:
        return 400, errors(400, "Callout not enabled for the workflow")
    reserved = sorted(RESERVED_WORDS.intersection(body))
    if reserved:
        # (inference) Zuora documents the reserved words but not what it answers when one is sent.
        return 400, errors(400, f"Reserved words cannot be used as parameters: {', '.join(reserved)}")
    if any(name not in body for name in definition.required):
        title = "The provided body is missing one or more required parameters"
        return 406, {**errors(406, title), "parameters": body}
    return None


STOPPING_S = 0.5  # (inference) how long a stop takes is not documented
TASKS = 3


@dataclass(slots=True)
class RunTimeline:
    """When a run was created, how long it runs, whether a task fails, and when a stop came."""

    created_at: float
    duration_s: float
    fails: bool = False
    stop_at: float | None = None
    tasks: dict[str, int] = field(default_factory=dict)


def _counts(**counts: int) -> dict[str, int]:
    base = dict.fromkeys(("error", "pending", "processing", "queued", "stopped", "success"), 0)
    return {**base, **counts, "total": TASKS}


def run_status(run: RunTimeline, now: float) -> tuple[str, dict[str, int], float | None]:
    """Pure: (status, task counts, finished at) of a run at ``now``."""
    end = run.created_at + run.duration_s
    if run.stop_at is not None and run.stop_at < end:
        done = run.stop_at + STOPPING_S
        if now < done:
            return "Stopping", _counts(processing=1, stopped=TASKS - 1), None
        return "Stopped", _counts(stopped=TASKS), done
    if now < run.created_at + run.duration_s / 10:
        return "Queued", _counts(queued=TASKS), None
    if now < end:
        return "Processing", _counts(processing=1, queued=TASKS - 1), None
    tasks = _counts(error=1, success=TASKS - 1) if run.fails else _counts(success=TASKS)
    return "Finished", tasks, end


def seeded_definitions() -> dict[int, Definition]:
    return {
        d.id: d
        for d in (
            Definition(ZUORA_DEFINITION_REQUIRES_ACCOUNT, callout_enabled=True, required=("accountId",)),
            Definition(ZUORA_DEFINITION_CALLOUT_DISABLED, callout_enabled=False),
            Definition(ZUORA_DEFINITION_NO_PARAMS, callout_enabled=True),
        )
    }


def zuora_seeded_tasks() -> dict[str, dict[str, Any]]:
    """Task 2770 failed (status Error), task 2771 succeeded; both are rerunnable."""
    base: dict[str, Any] = {
        "action_type": "Callout",
        "call_type": "POST",
        "concurrent_limit": 9999999,
        "data": {},
        "end_time": "2019-09-19T12:35:43.942Z",
        "instance": True,
        "name": "Callout",
        "object": None,
        "object_id": None,
        "original_task_id": 2582,
        "original_workflow_id": 416,
        "parameters": {},
        "start_time": "2019-09-19T12:35:43.857Z",
        "tags": [],
        "task_id": None,
        "workflow_id": 476,
    }
    failed = {
        "error": "Callout response was 500 after 1 tries.",
        "error_class": "WorkflowError::Callout",
        "error_details": {"ResponseCode": 500},
        "status": "Error",
    }
    succeeded = {"error": None, "error_class": None, "error_details": None, "status": "Success"}
    return {
        ZUORA_TASK_ERROR: {**base, **failed, "id": int(ZUORA_TASK_ERROR)},
        ZUORA_TASK_SUCCESS: {**base, **succeeded, "id": int(ZUORA_TASK_SUCCESS)},
    }
