"""Look one command id up in the bridge's topics: the Kafka reads of ``bridge status`` and of
``GET /v1/commands/{id}``.

Only the partitions the command's key maps to are read (the bridge's topics are co-partitioned:
command partition p keeps its ledger entries in ledger partition p and its parked records in
parking partition p; outcomes, dead letters and lifecycle events carry the command's key), all of
them at once, each as a raw byte search (:mod:`bridge.status.scan`). The consumer group's
committed offsets say whether a record was reached.

Example::

    facts = await find(settings, "cmd-1")
    story = assemble(facts)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from functools import partial
from typing import TypeVar

import orjson
from aiokafka import TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from bridge.config.settings import Settings
from bridge.kafka.clients import make_reader, started
from bridge.messages.commands import CommandFamily
from bridge.status.facts import (
    RawRecord,
    Where,
    read_command,
    read_dead_letter,
    read_ledger,
    read_lifecycle,
    read_outcome,
    read_parking,
)
from bridge.status.scan import LookupError_, Scanned, Scanner, scanner
from bridge.status.story import Facts, Progress

T = TypeVar("T")


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the default partitioner (Java's and aiokafka's) gives ``key``."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def needles(command_id: str, key: bytes) -> tuple[bytes, ...]:
    """The byte strings a record about the id contains: the id as UTF-8 and as JSON escapes it."""
    found = {command_id.encode(), orjson.dumps(command_id)[1:-1]}
    return tuple(sorted(found))


async def find(settings: Settings, command_id: str, key: bytes | None = None, **options: int) -> Facts:
    """Everything the topics hold about ``command_id`` in the partitions of ``key`` (default: the id)."""
    key = command_id.encode() if key is None else key
    facts = Facts(command_id, key)
    async with scanner(settings.kafka, **options) as scan:
        plan = _plan(settings, scan, key)
        facts.partitions = {t: p for t, p in plan.items() if t in settings.topics.routes}
        wanted = needles(command_id, key)
        scans = await asyncio.gather(*(scan.partition(t, p, wanted) for t, p in plan.items()))
    by_topic = {s.topic: s for s in scans}
    _understand(settings, facts, by_topic)
    facts.progress = await _progress(settings, facts.partitions, by_topic)
    return facts


def _plan(settings: Settings, scan: Scanner, key: bytes) -> dict[str, int]:
    """Topic -> the partition of it this key's command lives in (or its records about it)."""
    t = settings.topics
    plan: dict[str, int] = {}
    for topic in (t.run_commands, t.control_commands, *t.results, t.lifecycle):
        count = scan.partitions(topic)
        if count is None:
            if topic in t.routes:
                raise LookupError_(f"topic {topic} does not exist (is this the bridge's configuration?)")
            continue
        plan[topic] = partition_of(key, count)
    home = plan[t.run_commands]
    for topic in (t.ledger, t.parked):  # co-partitioned with the command topics (verify_partitions)
        if scan.partitions(topic) is not None:
            plan[topic] = home
    return plan


def _understand(settings: Settings, facts: Facts, scans: dict[str, Scanned]) -> None:
    t, cid = settings.topics, facts.command_id
    families = {t.run_commands: CommandFamily.RUN, t.control_commands: CommandFamily.CONTROL}
    for topic, family in families.items():
        facts.commands += _each(scans, topic, partial(read_command, family=family, command_id=cid))
    commands = frozenset(c.where for c in facts.commands)
    facts.ledger += _each(scans, t.ledger, lambda r: read_ledger(r, frozenset(families), cid))
    # a parked record keeps its command's partition: parking partition p holds command partition p
    held = frozenset(Where(w.topic, facts.partitions.get(w.topic, w.partition), w.offset) for w in commands)
    facts.parked += _each(scans, t.parked, lambda r: read_parking(r, held))
    for topic in (t.run_outcomes, t.control_outcomes):
        facts.outcomes += _each(scans, topic, lambda r: read_outcome(r, cid))
    facts.dead_letters += _each(scans, t.dead_letter, lambda r: read_dead_letter(r, commands, cid))
    facts.lifecycle += _each(scans, t.lifecycle, lambda r: read_lifecycle(r, cid))


def _each(scans: dict[str, Scanned], topic: str, read: Callable[[RawRecord], T | None]) -> list[T]:
    scanned = scans.get(topic)
    if scanned is None:
        return []
    return [fact for raw in sorted(scanned.records, key=_order) if (fact := read(raw)) is not None]


def _order(raw: RawRecord) -> int:
    return raw.offset


async def _progress(
    settings: Settings, partitions: dict[str, int], scans: dict[str, Scanned]
) -> dict[tuple[str, int], Progress]:
    """The group's committed offset of each command partition read."""
    tps = [TopicPartition(topic, p) for topic, p in partitions.items()]
    try:
        async with started(make_reader(settings.kafka, settings.kafka.group_id)) as reader:
            committed = {tp: await reader.committed(tp) for tp in tps}
    except KafkaError as exc:
        raise LookupError_(f"cannot read the group's committed offsets: {exc}") from exc
    return {
        (tp.topic, tp.partition): Progress(tp.topic, tp.partition, committed[tp], scans[tp.topic].end)
        for tp in tps
    }


def command_topics_read(facts: Facts) -> Sequence[str]:
    return [f"{topic}[{p}]" for topic, p in sorted(facts.partitions.items())]
