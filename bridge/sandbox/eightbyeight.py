"""8x8 Automation: start, read and steer workflow instances.

Routes, with ``W = /api/v1/accounts/{accountId}/definitions/{definitionId}/workflows``::

    POST  /8x8{W}                 start an instance: 201 + Location
    GET   /8x8{W}/{workflowId}    the workflowInstance
    PATCH /8x8{W}/{workflowId}    {"status": "suspend" | "resume" | "terminate"}: 200, empty body

Every answer >= 400 carries ``{code, message, errorId, timestamp}``. With
``eightbyeight_run_duration_s`` set, a started instance that is still Runnable that long after its
start turns Complete, or Terminated when its start payload had ``sandboxFault: true``.
"""

from __future__ import annotations

import hmac
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from aiohttp import web

from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.spec import Emulation, Example, LocalTargets, SandboxSpec
from bridge.sandbox.state import JsonObject, bearer, iso_millis, json_response, parse_json, utc

KIND = "8x8"
EIGHTBYEIGHT_API_KEY = "sandbox-8x8-key"
EIGHTBYEIGHT_ACCOUNT = "acme"
EIGHTBYEIGHT_DEFINITION = "5870442f-3ddd-4657-b74c-6e17308f5230"
EIGHTBYEIGHT_RUNNABLE = "60dbe307fe55d99fc083db61"
EIGHTBYEIGHT_SUSPENDED = "60dbe307fe55d99fc083db62"
EIGHTBYEIGHT_COMPLETE = "60dbe307fe55d99fc083db63"
EIGHTBYEIGHT_TERMINATED = "60dbe307fe55d99fc083db64"
EIGHTBYEIGHT_FAULT_FIELD = "sandboxFault"  # a start payload field: true ends Terminated (a fault)
LOCAL_TARGET = "8x8-sandbox"
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")
INVALID, UNAUTHORIZED, NOT_FOUND = 1000, 1200, 1300
SEED_STARTED_AT = 1625108400.0  # 2021-07-01T03:00:00Z


@dataclass(frozen=True, kw_only=True, slots=True)
class EightByEightSandboxSettings:
    api_key: str = EIGHTBYEIGHT_API_KEY
    run_duration_s: float | None = None
    """Started instances turn Complete (or Terminated) after this long; None: they stay Runnable."""


class InstanceStatus(StrEnum):
    RUNNABLE = "Runnable"  # running, waiting for an event, or sleeping
    SUSPENDED = "Suspended"
    COMPLETE = "Complete"
    TERMINATED = "Terminated"  # terminated by hand, or faulted


class StatusCommand(StrEnum):
    SUSPEND = "suspend"
    RESUME = "resume"
    TERMINATE = "terminate"


LEGAL = {
    (InstanceStatus.RUNNABLE, StatusCommand.SUSPEND): InstanceStatus.SUSPENDED,
    (InstanceStatus.SUSPENDED, StatusCommand.RESUME): InstanceStatus.RUNNABLE,
    (InstanceStatus.RUNNABLE, StatusCommand.TERMINATE): InstanceStatus.TERMINATED,
    # (inference) terminate is not documented as limited to running instances.
    (InstanceStatus.SUSPENDED, StatusCommand.TERMINATE): InstanceStatus.TERMINATED,
}


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a command is illegal in the instance's current status (answered as 400 code 1000)."""

    message: str


def transition(current: InstanceStatus, command: StatusCommand) -> InstanceStatus | Refusal:
    """Pure: the new status, or the refusal of the command.

    (inference) 8x8 documents no answer for the cells outside ``LEGAL``; the only documented
    non-404 error is the generic 400 code 1000, so that is what they get.
    """
    target = LEGAL.get((current, command))
    if target is not None:
        return target
    if current is InstanceStatus.TERMINATED and command is StatusCommand.RESUME:
        return Refusal("A terminated workflow cannot be resumed.")
    return Refusal(f"Cannot {command.value} a workflow in status {current.value}.")


def error_timestamp(epoch_s: float) -> str:
    """``yyyy-MM-ddTHH:mm:ss.ffZ`` (hundredths of a second), as in 8x8's examples."""
    moment = utc(epoch_s)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 10_000:02d}Z"


@dataclass(slots=True)
class Instance:
    workflow_id: str
    account_id: str
    definition_id: str
    status: InstanceStatus
    started_at: float
    completed_at: float | None = None
    data: JsonObject | None = None
    version: int = 1
    ends_at: float | None = None
    """When a Runnable instance ends on its own (None: never)."""

    def settle(self, now: float) -> None:
        """Apply the instance's own ending, once it is due."""
        if self.ends_at is None or now < self.ends_at or self.status is not InstanceStatus.RUNNABLE:
            return
        faulted = bool((self.data or {}).get(EIGHTBYEIGHT_FAULT_FIELD))
        self.status = InstanceStatus.TERMINATED if faulted else InstanceStatus.COMPLETE
        self.completed_at = None if faulted else self.ends_at

    def to_json(self) -> JsonObject:
        data = {**(self.data or {}), "accountId": self.account_id, "triggeredAt": iso_millis(self.started_at)}
        return {
            "workflowId": self.workflow_id,
            "data": data,
            "definitionId": self.definition_id,
            "version": self.version,
            "status": self.status.value,
            "startedAt": iso_millis(self.started_at),
            "completedAt": iso_millis(self.completed_at) if self.completed_at is not None else None,
        }


def seeded_instances() -> dict[str, Instance]:
    seeds = [
        (EIGHTBYEIGHT_RUNNABLE, InstanceStatus.RUNNABLE, None),
        (EIGHTBYEIGHT_SUSPENDED, InstanceStatus.SUSPENDED, None),
        (EIGHTBYEIGHT_COMPLETE, InstanceStatus.COMPLETE, SEED_STARTED_AT + 60),
        (EIGHTBYEIGHT_TERMINATED, InstanceStatus.TERMINATED, None),
    ]
    return {
        wid: Instance(wid, EIGHTBYEIGHT_ACCOUNT, EIGHTBYEIGHT_DEFINITION, status, SEED_STARTED_AT, done)
        for wid, status, done in seeds
    }


class EightByEightSandbox:
    def __init__(self, config: SandboxConfig, prefix: str = "/8x8") -> None:
        self.config = config
        self.settings = config.of(KIND, EightByEightSandboxSettings)
        self.prefix = prefix
        self.definitions = {EIGHTBYEIGHT_ACCOUNT: {EIGHTBYEIGHT_DEFINITION}}
        self.instances = seeded_instances()

    def reset(self) -> None:
        self.instances = seeded_instances()

    def routes(self) -> list[web.RouteDef]:
        base = f"{self.prefix}/api/v1/accounts/{{accountId}}/definitions/{{definitionId}}/workflows"
        return [
            web.post(base, self.start),
            web.get(base + "/{workflowId}", self.read),
            web.patch(base + "/{workflowId}", self.update),
        ]

    def error(self, status: int, code: int, message: str) -> web.Response:
        now = self.config.clock()
        body = {
            "code": code,
            "message": message,
            "errorId": str(uuid.uuid4()),
            "timestamp": error_timestamp(now),
        }
        return json_response(body, status)

    def refusal(self, request: web.Request) -> web.Response | None:
        """The error for bad credentials or an unknown account or definition, else None."""
        key = bearer(request)
        if key is None or not hmac.compare_digest(key.encode(), self.settings.api_key.encode()):
            return self.error(401, UNAUTHORIZED, "Unauthorized access.")
        account, definition = request.match_info["accountId"], request.match_info["definitionId"]
        if account not in self.definitions:
            return self.error(404, NOT_FOUND, f"Account {account} not found.")
        if not UUID_RE.match(definition):
            return self.error(400, INVALID, "Invalid definition id.")
        if definition.lower() not in self.definitions[account]:
            return self.error(404, NOT_FOUND, f"Definition {definition} not found.")
        return None

    def resolve(self, request: web.Request) -> Instance | web.Response:
        """The addressed instance, or the error response that refuses the request."""
        refused = self.refusal(request)
        if refused is not None:
            return refused
        instance = self._instance(request)
        if instance is None:
            # (inference) 8x8 does not document the instance-not-found message; code 1300 is probable.
            return self.error(404, NOT_FOUND, f"Workflow {request.match_info['workflowId']} not found.")
        return instance

    def _instance(self, request: web.Request) -> Instance | None:
        found = self.instances.get(request.match_info["workflowId"])
        if found is not None:
            found.settle(self.config.clock())
        match = (request.match_info["accountId"], request.match_info["definitionId"].lower())
        return found if found and (found.account_id, found.definition_id) == match else None

    async def start(self, request: web.Request) -> web.Response:
        refused = self.refusal(request)
        if refused is not None:
            return refused
        version = request.query.get("version", "1")
        if not version.isdigit() or int(version) < 1:
            return self.error(400, INVALID, "Invalid version.")
        try:
            payload = await _optional_json(request)
        except ValueError:
            return self.error(400, INVALID, "Invalid request body.")  # (inference) shape undocumented
        instance = Instance(
            workflow_id=secrets.token_hex(12),
            account_id=request.match_info["accountId"],
            definition_id=request.match_info["definitionId"].lower(),
            status=InstanceStatus.RUNNABLE,
            started_at=self.config.clock(),
            data=payload if isinstance(payload, dict) else {},
            version=int(version),
        )
        duration = self.settings.run_duration_s
        instance.ends_at = None if duration is None else instance.started_at + duration
        self.instances[instance.workflow_id] = instance
        location = f"{request.path.rstrip('/')}/{instance.workflow_id}"
        return json_response({"workflowId": instance.workflow_id}, 201, {"Location": location})

    async def read(self, request: web.Request) -> web.Response:
        instance = self.resolve(request)
        if isinstance(instance, web.Response):
            return instance
        body = instance.to_json()
        if request.query.get("includeLogs", "").lower() == "true":
            body["logs"] = []
        return json_response(body)

    async def update(self, request: web.Request) -> web.Response:
        instance = self.resolve(request)
        if isinstance(instance, web.Response):
            return instance
        try:
            payload = await _optional_json(request)
        except ValueError:
            payload = None
        command = payload.get("status") if isinstance(payload, dict) else None
        if command not in set(StatusCommand):
            return self.error(
                400, INVALID, "Invalid status. Supported values are suspend, resume, terminate."
            )
        outcome = transition(instance.status, StatusCommand(command))
        if isinstance(outcome, Refusal):
            return self.error(400, INVALID, outcome.message)
        instance.status = outcome
        return web.Response(status=200)


async def _optional_json(request: web.Request) -> Any:
    """The JSON body, None when empty; raises ValueError when it does not parse."""
    raw = await request.read()
    return parse_json(raw) if raw.strip() else None


def _examples(cid: Callable[[str], str]) -> list[Example]:
    update = {"target": LOCAL_TARGET, "operation": "8x8.update_instance"}
    return [
        (
            EIGHTBYEIGHT_RUNNABLE.encode(),
            {
                "id": cid("8x8-suspend"),
                **update,
                "action": "suspend",
                "definition_id": EIGHTBYEIGHT_DEFINITION,
            }
            | {"instance_id": EIGHTBYEIGHT_RUNNABLE},
        ),
        (
            EIGHTBYEIGHT_TERMINATED.encode(),
            {"id": cid("8x8-resume-terminated"), **update, "action": "resume"}
            | {"definition_id": EIGHTBYEIGHT_DEFINITION, "instance_id": EIGHTBYEIGHT_TERMINATED},
        ),
    ]


def _local_targets(url: str) -> dict[str, dict[str, Any]]:
    target = {"provider": KIND, "base_url": f"{url}/8x8", "account_id": EIGHTBYEIGHT_ACCOUNT}
    return {LOCAL_TARGET: {**target, "api_key": {"env": "SANDBOX_8X8_API_KEY"}}}


SANDBOX = SandboxSpec(
    kind=KIND,
    fault_keys=(KIND,),
    fault_key=lambda path: KIND if path.split("/")[0] == KIND else None,
    emulate=lambda config: Emulation((EightByEightSandbox(config),)),
    local=LocalTargets(_local_targets, {"SANDBOX_8X8_API_KEY": EIGHTBYEIGHT_API_KEY}, _examples),
)
