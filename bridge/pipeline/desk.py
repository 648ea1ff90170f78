"""When a command parks instead of running or being answered: the processor asks here, and the parked
set (:class:`ParkedSet`, implemented by :class:`bridge.parking.state.Parking`) says why and writes the record.

Three moments: a record its target's bulkhead shed (it runs out of its key's turn and may only park),
a command about to be called (its key is parked, its target refuses), and a command whose retries
ended on a wait (its ``dispatched`` ledger entry is then forgotten, so it comes back as new). A parked
command comes back no later than its deadline, to be answered ``expired`` then.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from bridge.ledger.store import Ledger, Ticket
from bridge.messages.commands import Command, expires_in_s
from bridge.messages.outcomes import ErrorKind
from bridge.messages.parsed import Parsed
from bridge.messages.records import Incoming, Outgoing
from bridge.pipeline.bulkheads import Bulkheads, target_of
from bridge.pipeline.decide import Decision
from bridge.pipeline.executor import TargetRuntime


class ParkedSet(Protocol):
    """The parking lane as the processor sees it: why a command must park now, and its parked record.

    The parking package (which reads the pipeline's runtimes and decisions) implements it; the
    pipeline does not import it back."""

    def reason(self, record: Incoming, runtime: TargetRuntime, *, shed: bool) -> str | None: ...

    def park(
        self,
        record: Incoming,
        runtime: TargetRuntime,
        reason: str,
        wait_s: float = 0.0,
        expires_in_s: float | None = None,
        *,
        command_id: str | None = None,
        recovers: bool = True,
    ) -> Outgoing | Decision: ...


_AFTER_CALL = {ErrorKind.CIRCUIT_OPEN: "circuit_open", ErrorKind.TARGET_BUSY: "bulkhead_full"}


class ParkingDesk:
    def __init__(
        self,
        parking: ParkedSet,
        targets: Mapping[str, TargetRuntime],
        ledger: Ledger | None,
        bulkheads: Bulkheads | None,
    ) -> None:
        self._parking = parking
        self._targets = targets
        self._ledger = ledger
        self._bulkheads = bulkheads

    def shed(self, record: Incoming) -> Outgoing | None:
        """The parked record of a record its bulkhead shed (``Bulkheads.out_of_turn``), if any."""
        if self._bulkheads is None or not self._bulkheads.is_shed(record):
            return None
        parsed = self._bulkheads.parsed(record)
        runtime = self._targets.get(target_of(parsed) or "")
        if runtime is None:
            return None
        command = parsed.command if isinstance(parsed, Parsed) else None
        expires = _expires(command, record, runtime) if command is not None else None
        command_id = command.id if command is not None else None
        parked = self._parking.park(
            record, runtime, "bulkhead_full", expires_in_s=expires, command_id=command_id
        )
        return parked if isinstance(parked, Outgoing) else None

    def before_call(
        self, record: Incoming, command: Command, runtime: TargetRuntime | None, result: Decision | None
    ) -> Outgoing | Decision | None:
        """The parked record (or the refusal after the longest wait) when the command must wait long."""
        if runtime is None:
            return None
        shed = result is not None and result.error is not None and result.error.kind is ErrorKind.TARGET_BUSY
        if result is not None and not shed:
            return None  # rejected or expired: answered now
        reason = self._parking.reason(record, runtime, shed=shed)
        if reason is None:
            return None
        expires = _expires(command, record, runtime)
        return self._parking.park(record, runtime, reason, expires_in_s=expires, command_id=command.id)

    def after_call(
        self,
        record: Incoming,
        command: Command,
        runtime: TargetRuntime,
        ticket: Ticket | None,
        result: Decision,
    ) -> Outgoing | None:
        """A command whose retries ended on a wait parks; its ``dispatched`` entry is forgotten."""
        if result.defer_s is None:
            return None
        kind = result.error.kind if result.error else None
        reason = _AFTER_CALL.get(kind, "retry_after") if kind else "retry_after"
        parked = self._parking.park(
            record,
            runtime,
            reason,
            result.defer_s,
            _expires(command, record, runtime),
            command_id=command.id,
            recovers=kind is not ErrorKind.RATE_LIMITED,  # a provider that answers sets its own pace
        )
        if not isinstance(parked, Outgoing):
            return None  # it waited its longest: the answer is the result itself
        if ticket is None or self._ledger is None:
            return parked
        entry = self._ledger.release(ticket)
        return replace(parked, then=(Outgoing(entry.topic, entry.key, None, partition=entry.partition),))


def _expires(command: Command, record: Incoming, runtime: TargetRuntime) -> float | None:
    return expires_in_s(command, record.record_time, runtime.settings.max_age_s)
