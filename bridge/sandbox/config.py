"""Sandbox configuration: the credentials it accepts, its seed data and its timing knobs.

The module constants are the defaults that ``make run``, the local stack and the tests share, so
they can import the same values the sandbox checks against. They are public test credentials, not
secrets.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch; injectable so tests can jump past token or key expiry."""

SALESFORCE_USERNAME = "sandbox-user"
SALESFORCE_PASSWORD = "sandbox-password"  # noqa: S105 (public sandbox credential)
SALESFORCE_CLIENT_ID = "sandbox-sf-client"
SALESFORCE_CLIENT_SECRET = "sandbox-sf-secret"  # noqa: S105 (public sandbox credential)
ZILLIANT_FORWARDED_HOST = "sandbox.zilliant.local"
ZUORA_CLIENT_ID = "sandbox-zuora-client"
ZUORA_CLIENT_SECRET = "sandbox-zuora-secret"  # noqa: S105 (public sandbox credential)
WORKFLOO_API_KEY = "sandbox-workfloo-key"
EIGHTBYEIGHT_API_KEY = "sandbox-8x8-key"

# Seeded Zuora state.
ZUORA_DEFINITION_REQUIRES_ACCOUNT = 396  # callout enabled, required parameters ["accountId"]
ZUORA_DEFINITION_CALLOUT_DISABLED = 397
ZUORA_DEFINITION_NO_PARAMS = 398  # callout enabled, no required parameters
ZUORA_SEEDED_INSTANCE = 400  # an instance (run) of 396, so running it is a 409
ZUORA_TASK_ERROR = "2770"
ZUORA_TASK_SUCCESS = "2771"

# Seeded workfloo state.
WORKFLOO_DEFINITION_WITH_LINKS = "657117e1d511b6e54fe2a967"
WORKFLOO_DEFINITION_PLAIN = "657117e1d511b6e54fe2a970"
WORKFLOO_DEFINITION_FORBIDDEN = "657117e1d511b6e54fe2a971"
WORKFLOO_SCENARIO = "6571181fd511b6e54fe2a968"

# Seeded 8x8 state.
EIGHTBYEIGHT_ACCOUNT = "acme"
EIGHTBYEIGHT_DEFINITION = "5870442f-3ddd-4657-b74c-6e17308f5230"
EIGHTBYEIGHT_RUNNABLE = "60dbe307fe55d99fc083db61"
EIGHTBYEIGHT_SUSPENDED = "60dbe307fe55d99fc083db62"
EIGHTBYEIGHT_COMPLETE = "60dbe307fe55d99fc083db63"
EIGHTBYEIGHT_TERMINATED = "60dbe307fe55d99fc083db64"

DAY_S = 24 * 3600.0

# Sandbox extensions that pick how a started run ends (the real providers decide that themselves).
ZUORA_RESULT_PARAM = "SANDBOX_RESULT"  # a run parameter: "error" ends Finished with a task error
ZUORA_DURATION_PARAM = "SANDBOX_DURATION_S"  # a run parameter: this run's duration (seconds)
WORKFLOO_RESULT_FIELD = "sandboxResult"  # a form field: "ERROR" or "ABANDONED" (default SUCCESS)
WORKFLOO_WAIT_FIELD = "sandboxWaitFor"  # a form field: "FORM", "DOCUMENT", ... a human step to wait on
EIGHTBYEIGHT_FAULT_FIELD = "sandboxFault"  # a start payload field: true ends Terminated (a fault)


@dataclass(frozen=True, kw_only=True, slots=True)
class SandboxConfig:
    """Everything the sandbox needs; the defaults match the module constants above."""

    salesforce_username: str = SALESFORCE_USERNAME
    salesforce_password: str = SALESFORCE_PASSWORD
    salesforce_client_id: str = SALESFORCE_CLIENT_ID
    salesforce_client_secret: str = SALESFORCE_CLIENT_SECRET
    salesforce_token_ttl_s: float = 7200.0
    zilliant_forwarded_host: str = ZILLIANT_FORWARDED_HOST
    zilliant_parallel_enabled: bool = False
    zilliant_job_duration_s: float = 2.0
    zuora_client_id: str = ZUORA_CLIENT_ID
    zuora_client_secret: str = ZUORA_CLIENT_SECRET
    zuora_extra_clients: tuple[tuple[str, str], ...] = ()
    """More (client_id, client_secret) pairs, each its own tenant (for per-tenant idempotency)."""
    zuora_token_ttl_s: int = 3599
    zuora_idempotency_ttl_s: float = DAY_S
    zuora_run_duration_s: float = 2.0
    """How long a started Zuora run is Queued and Processing before it is Finished."""
    workfloo_api_key: str = WORKFLOO_API_KEY
    workfloo_run_duration_s: float = 2.0
    """How long a workfloo execution runs (after its human step, if it waits on one)."""
    eightbyeight_api_key: str = EIGHTBYEIGHT_API_KEY
    eightbyeight_run_duration_s: float | None = None
    """Started 8x8 instances turn Complete (or Terminated) after this long; None: they stay Runnable."""
    seed: int = 0
    """Seeds the random generator behind fault injection, so a benchmark run is reproducible."""
    request_log_limit: int = 10_000
    shutdown_timeout_s: float = 1.0
    """How long ``stop()`` waits for in-flight (possibly deliberately slow) handlers."""
    clock: Clock = field(default=time.time, repr=False, compare=False)

    def zuora_clients(self) -> dict[str, str]:
        """client_id -> client_secret for every tenant the sandbox accepts."""
        return {self.zuora_client_id: self.zuora_client_secret, **dict(self.zuora_extra_clients)}


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
