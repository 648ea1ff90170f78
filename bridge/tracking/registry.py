"""The tracked workflows this process owns, by command partition, with a timer heap per target. No I/O.

It is the ledger's sibling state: while the ledger restores a partition it hands every record of
another kind to :meth:`Registry.load`; :meth:`Registry.restore_finished` schedules what was
restored, :meth:`Registry.forget` drops a revoked partition's workflows (their entries stay in the
ledger topic for the next owner).

Example::

    registry = Registry(first_poll_s=lambda target: 2.0)
    registry.restore_started({("workflow.run.commands", 3)})
    registry.load(3, key, value)
    registry.restore_finished({("workflow.run.commands", 3)}, now_s, rng)
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterable, Iterator

from aiokafka import TopicPartition

from bridge.tracking.entries import TrackedEntry, decode, split_key
from bridge.tracking.schedule import TimerHeap, Tracked

PartitionKey = tuple[str, int]


class Registry:
    def __init__(self, first_poll_s: Callable[[str], float]) -> None:
        self._first_poll_s = first_poll_s
        self.heaps: dict[str, TimerHeap] = {}
        self._owned: dict[PartitionKey, dict[str, Tracked]] = {}
        self._staging: dict[PartitionKey, dict[str, TrackedEntry]] = {}
        self.per_target: Counter[str] = Counter()

    def __len__(self) -> int:
        return sum(self.per_target.values())

    def workflows(self) -> Iterator[Tracked]:
        for owned in self._owned.values():
            yield from owned.values()

    # -- restore (the ledger's sibling state) ----------------------------------------------------

    def restore_started(self, wanted: Iterable[PartitionKey]) -> None:
        """(Re)start collecting the entries of these partitions; a retried restore starts over."""
        for where in wanted:
            self._staging[where] = {}

    def load(self, partition: int, key: bytes | None, value: bytes | None) -> None:
        names = split_key(key)
        staged = self._staging.get((names[0], partition)) if names else None
        if names is None or staged is None:
            return
        entry = decode(key, value, partition)
        if entry is None:
            staged.pop(names[1], None)  # a tombstone: that workflow has ended
        else:
            staged[names[1]] = entry

    def restore_finished(self, kept: Iterable[PartitionKey], now_s: float, rng: random.Random) -> int:
        """Own and schedule what was restored (spread over the first interval); returns how many."""
        restored = 0
        for where in kept:
            self._owned.setdefault(where, {})
            for entry in self._staging.pop(where, {}).values():
                first = self._first_poll_s(entry.target)
                self.add(entry, now_s + rng.random() * first)
                restored += 1
        return restored

    # -- ownership -------------------------------------------------------------------------------

    def add(self, entry: TrackedEntry, due: float) -> Tracked | None:
        """Track ``entry`` (replacing a workflow of the same command); None if the partition is not ours."""
        owned = self._owned.get((entry.topic, entry.partition))
        if owned is None:
            return None
        previous = owned.get(entry.command_id)
        if previous is not None:
            self.finish(previous)
        workflow = Tracked(entry, self._first_poll_s(entry.target))
        owned[entry.command_id] = workflow
        self.per_target[entry.target] += 1
        self.heap(entry.target).push(workflow, due)
        return workflow

    def heap(self, target: str) -> TimerHeap:
        """The schedule of one target's workflows: each target's reads wait for its own tokens."""
        found = self.heaps.get(target)
        if found is None:
            found = self.heaps[target] = TimerHeap()
        return found

    def finish(self, workflow: Tracked) -> None:
        if not workflow.active:
            return
        workflow.active = False
        entry = workflow.entry
        owned = self._owned.get((entry.topic, entry.partition), {})
        if owned.get(entry.command_id) is workflow:
            del owned[entry.command_id]
        self.per_target[entry.target] -= 1

    def forget(self, tps: Iterable[TopicPartition]) -> None:
        for tp in tps:
            where = (tp.topic, tp.partition)
            self._staging.pop(where, None)
            for workflow in self._owned.pop(where, {}).values():
                workflow.active = False
                self.per_target[workflow.entry.target] -= 1

    def oldest_started_ms(self) -> int | None:
        return min((w.entry.started_ms for w in self.workflows()), default=None)
