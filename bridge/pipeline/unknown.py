"""A command found ``dispatched`` but not ``done``: the target's ``on_unknown`` policy decides.

- ``retry``: call again (at least once; safe for Zuora, whose Idempotency-Key replays for 24 h);
- ``report``: no call; an ``error`` outcome of kind ``outcome_unknown`` that says what to check;
- ``read_before_write`` (8x8): GET the instance; already in the asked state means ``applied``
  without a PATCH, otherwise the PATCH is sent; a failed read falls back to ``report``.
"""

from __future__ import annotations

from bridge.ledger.rules import unknown_error
from bridge.messages.commands import Command
from bridge.messages.outcomes import Status
from bridge.pipeline.decide import Decision
from bridge.pipeline.executor import Executor, TargetRuntime
from bridge.providers.catalog import CATALOG

CALL_AGAIN = None


async def resolve_in_doubt(
    runtime: TargetRuntime, command: Command, executor: Executor
) -> tuple[Decision | None, str]:
    """(the answer without a new call, or None to call again; what was done, as a metric label)."""
    policy = runtime.settings.on_unknown
    if policy == "retry":
        return CALL_AGAIN, "retried"
    check = CATALOG.effect_check(runtime.settings) if policy == "read_before_write" else None
    request = check.request(command) if check is not None else None
    if check is not None and request is not None:
        answer = await executor.read(runtime, request)
        if answer is not None and answer[0] == 200:
            reference = check.applied(command, answer[1])
            if reference is not None:
                return Decision(Status.APPLIED, reference, 200, 1), "already_applied"
            return CALL_AGAIN, "not_yet_applied"
    kind = runtime.provider.kind
    error = unknown_error(kind, command.id, CATALOG.spec(kind).what_to_check)
    return Decision(Status.ERROR, error=error), "reported"
