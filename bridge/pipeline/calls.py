"""The commands being executed right now, and where each is in its retries: what the admin
endpoint's owner adds to a command's story (``GET /v1/commands/{id}``). Pure.

Example::

    call = calls.begin("cmd-1")
    call.attempt = 2
    call.next_attempt_at = time.time() + 1.5   # while it waits between attempts
    calls.end("cmd-1", call)
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class CallProgress:
    attempt: int = 0  # the attempt under way or last made; 0 before the first
    next_attempt_at: float | None = None  # Unix time of the next attempt while it waits for it


@dataclass
class CallsInFlight:
    """Command id -> its call in progress (the latest one, when two of an id run at once)."""

    _calls: dict[str, CallProgress] = field(default_factory=dict)

    def begin(self, command_id: str) -> CallProgress:
        call = self._calls[command_id] = CallProgress()
        return call

    def end(self, command_id: str, call: CallProgress) -> None:
        if self._calls.get(command_id) is call:
            del self._calls[command_id]

    def get(self, command_id: str) -> CallProgress | None:
        return self._calls.get(command_id)

    def __len__(self) -> int:
        return len(self._calls)
