"""What the member that owns a command's partition adds to its story: where the record is in this
process right now (queued behind an earlier command of its key, or in flight, at which attempt, next
attempt when) and the circuit state of its target.

Example::

    view = OwnerView("pod-1", engine.partition, targets, executor.calls)
    live = view.live(record, key, target, command_id)   # None when another member owns it
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bridge.kafka.partitions import Partition
from bridge.pipeline.calls import CallsInFlight
from bridge.pipeline.executor import TargetRuntime
from bridge.status.facts import Where
from bridge.status.story import Live

Owned = Callable[[str, int], Partition | None]


@dataclass
class OwnerView:
    member: str
    partition: Owned  # the engine's assigned partition, or None when this member does not own it
    targets: Callable[[], Mapping[str, TargetRuntime]]
    calls: CallsInFlight

    def live(self, record: Where, key: bytes | None, target: str | None, command_id: str) -> Live | None:
        owned = self.partition(record.topic, record.partition)
        if owned is None:
            return None
        runtime = self.targets().get(target) if target else None
        circuit = runtime.breaker.state.value if runtime is not None else None
        queue = owned.keys.get(key) if key is not None else None
        offsets = [r.offset for r in queue] if queue else []
        if record.offset in offsets and offsets[0] != record.offset:
            return Live(self.member, queued_behind=offsets[0], circuit=circuit)
        call = self.calls.get(command_id)
        if (offsets and offsets[0] == record.offset) or call is not None:
            attempt = call.attempt if call is not None and call.attempt else None
            at = call.next_attempt_at if call is not None else None
            next_ms = int(at * 1000) if at is not None else None
            return Live(
                self.member, in_flight=True, attempt=attempt, next_attempt_at_ms=next_ms, circuit=circuit
            )
        return Live(self.member, circuit=circuit)
