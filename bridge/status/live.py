"""What the member that owns a command's partition adds to its story: where the record is in this
process right now (queued behind an earlier command of its key, or in flight, at which attempt, next
attempt when) and the circuit state of its target.

Example::

    view = OwnerView("pod-1", engine.partition, targets, executor.calls, ledger.recall)
    call = view.call(command_id)                   # before the topics are read
    live = view.live(record, key, target, call)    # None when another member owns it
    hints = view.hints(command_id, {"workflow.run.commands": 3})   # what its ledger knows
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bridge.kafka.partitions import Partition
from bridge.ledger.store import Recall
from bridge.pipeline.calls import CallProgress, CallsInFlight
from bridge.pipeline.executor import TargetRuntime
from bridge.status.facts import Where
from bridge.status.hints import Hint, Recaller
from bridge.status.story import Live

Owned = Callable[[str, int], Partition | None]
Remember = Callable[[str, int, str], Recall | None]  # Ledger.recall


@dataclass
class OwnerView:
    member: str
    partition: Owned  # the engine's assigned partition, or None when this member does not own it
    targets: Callable[[], Mapping[str, TargetRuntime]]
    calls: CallsInFlight
    ledger: Remember | None = None  # None: the ledger is off

    def hints(self, command_id: str, partitions: Mapping[str, int]) -> dict[str, Hint]:
        """What this member's ledger knows about the id in those of ``partitions`` it holds."""
        found: dict[str, Hint] = {}
        for topic, partition in partitions.items():
            recall = self.ledger(topic, partition, command_id) if self.ledger is not None else None
            if recall is not None:
                found[topic] = Hint(topic, partition, self.member, recall.last_write_ms, recall.horizon_ms)
        return found

    def recaller(self, command_id: str) -> Recaller:
        async def recall(partitions: Mapping[str, int]) -> dict[str, Hint]:
            return self.hints(command_id, partitions)

        return recall

    def call(self, command_id: str) -> CallProgress | None:
        """The command's call as it is now, copied. Taken before the topics are read, so that what
        it says the topics hold already: an attempt waiting for the next one has its ``dispatched``
        entry acknowledged (the executor sets ``next_attempt_at`` after it), and the lookup's read of
        the ledger, which starts later, finds it."""
        call = self.calls.get(command_id)
        return None if call is None else CallProgress(call.attempt, call.next_attempt_at)

    def live(
        self, record: Where, key: bytes | None, target: str | None, call: CallProgress | None
    ) -> Live | None:
        """``call``: what :meth:`call` said before the topics were read."""
        owned = self.partition(record.topic, record.partition)
        if owned is None:
            return None
        runtime = self.targets().get(target) if target else None
        circuit = runtime.breaker.state.value if runtime is not None else None
        queue = owned.keys.get(key) if key is not None else None
        offsets = [r.offset for r in queue] if queue else []
        if record.offset in offsets and offsets[0] != record.offset:
            return Live(self.member, queued_behind=offsets[0], circuit=circuit)
        if (offsets and offsets[0] == record.offset) or call is not None:
            attempt = call.attempt if call is not None and call.attempt else None
            at = call.next_attempt_at if call is not None else None
            next_ms = int(at * 1000) if at is not None else None
            return Live(
                self.member, in_flight=True, attempt=attempt, next_attempt_at_ms=next_ms, circuit=circuit
            )
        return Live(self.member, circuit=circuit)
