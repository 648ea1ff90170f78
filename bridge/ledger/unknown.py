"""A command found ``dispatched`` but not ``done``: the target's ``on_unknown`` policy decides.

- ``retry``: call again (at least once; safe for Zuora, whose Idempotency-Key replays for 24 h);
- ``report``: no call; an ``error`` outcome of kind ``outcome_unknown`` that says what to check;
- ``read_before_write`` (8x8): GET the instance; already in the asked state means ``applied``
  without a PATCH, otherwise the PATCH is sent; a failed read falls back to ``report``.
"""

from __future__ import annotations

from bridge.commands import Command, EightByEightUpdateInstance
from bridge.decide import Decision
from bridge.executor import Executor, TargetRuntime
from bridge.ledger.rules import already_in_state, unknown_error
from bridge.outcomes import Status
from bridge.providers.base import json_or_none
from bridge.providers.eightbyeight import build_status_request
from bridge.settings import EightByEightTarget

CALL_AGAIN = None


async def resolve_in_doubt(
    runtime: TargetRuntime, command: Command, executor: Executor
) -> tuple[Decision | None, str]:
    """(the answer without a new call, or None to call again; what was done, as a metric label)."""
    policy = runtime.settings.on_unknown
    if policy == "retry":
        return CALL_AGAIN, "retried"
    settings = runtime.settings
    if policy == "read_before_write" and isinstance(command, EightByEightUpdateInstance):
        assert isinstance(settings, EightByEightTarget)  # the settings allow the policy only there
        answer = await executor.read(
            runtime, build_status_request(command, default_account=settings.account_id)
        )
        if answer is not None and answer[0] == 200:
            if already_in_state(command.action, json_or_none(answer[1])):
                return Decision(Status.APPLIED, command.instance_id, 200, 1), "already_applied"
            return CALL_AGAIN, "not_yet_applied"
    return Decision(Status.ERROR, error=unknown_error(runtime.provider.kind, command.id)), "reported"
