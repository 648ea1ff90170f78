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
from collections.abc import Callable
from datetime import datetime
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
from bridge.status.hints import Hint, Recaller
from bridge.status.scan import LookupError_, Scanned, Scanner, scanner
from bridge.status.story import Facts, Progress, iso

MAX_PASSES = 2  # read the records named by what the first pass found, then stop
RECENT = 20_000  # with the owner's ledger, the newest records are read anyway: those it may not name
SKEW_MS = 60_000  # producers stamp records with their own clocks: read a minute earlier than the command
TERMINAL = frozenset({"completed", "failed", "stopped", "lost"})

T = TypeVar("T")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, now: float) -> int:
    """Unix ms of ``30m``/``2h``/``1d`` ago or of an ISO 8601 time (with its offset); ValueError else."""
    text = text.strip()
    if text[:-1].isdigit() and text[-1:] in _UNITS:
        return int((now - int(text[:-1]) * _UNITS[text[-1]]) * 1000)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30m, 2h, 1d) nor an ISO 8601 time") from None
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no UTC offset (add Z or +01:00)")
    return int(moment.timestamp() * 1000)


def partition_of(key: bytes, partitions: int) -> int:
    """The partition the default partitioner (Java's and aiokafka's) gives ``key``."""
    hashed: int = murmur2(key)
    return (hashed & 0x7FFFFFFF) % partitions


def needles(command_id: str, key: bytes) -> tuple[bytes, ...]:
    """The byte strings a record about the id contains: the id as UTF-8 and as JSON escapes it."""
    found = {command_id.encode(), orjson.dumps(command_id)[1:-1]}
    return tuple(sorted(found))


async def find(
    settings: Settings,
    command_id: str,
    key: bytes | None = None,
    since_ms: int | None = None,
    recall: Recaller | None = None,
    **options: int,
) -> Facts:
    """Everything the topics hold about ``command_id`` in the partitions of ``key`` (default: the id).

    1. Each command partition is read newest first, a few windows at a time, until a record of the
       id turns up (or its start is reached: then the id is unknown there). With ``since_ms``, it is
       read from the first record stamped then, oldest first, up to the first record of the id.
    2. Every other partition is read from the time of that record (less ``SKEW_MS``), found by a
       binary search over record timestamps, and no further than its answer: the outcome topics
       up to the command's outcome, the lifecycle topic up to its terminal event, the ledger up to
       its ``done`` entry.
    3. When the records found are neither answered, dead-lettered, parked nor dispatched (a
       duplicate or a reuse of an id whose first record is older), 1 and 2 go on further back.

    With ``recall`` (what the ledger of the member owning the partition knows, see
    :mod:`bridge.status.hints`) and no ``since_ms``, step 1 reads only what that ledger cannot
    answer for (``_hinted``), and ``facts.notes`` says what was not read.
    """
    key = command_id.encode() if key is None else key
    facts = Facts(command_id, key)
    wanted = needles(command_id, key)
    async with scanner(settings.kafka, **options) as scan:
        plan = _plan(settings, scan, key)
        facts.partitions = {t: p for t, p in plan.items() if t in settings.topics.routes}
        hints = await recall(facts.partitions) if recall is not None and since_ms is None else {}
        hinted = await _hinted(settings, scan, facts, plan, wanted, hints) if hints else None
        ends = hinted if hinted is not None else await _commands(settings, scan, facts, wanted, since_ms)
        for _ in range(MAX_PASSES):
            found = [r for s in ends.values() for r in s.records]
            if not found:
                break
            since = min(r.timestamp_ms for r in found) - SKEW_MS
            others = await _others(settings, scan, facts, plan, wanted, since)
            facts = _understand(settings, facts, {**ends, **others})
            older = _named_older(facts)
            if not older:
                break
            for where in older:  # the first record of the id, older than those read: read it too
                at = await scan.partition(
                    where.topic, where.partition, wanted, since_offset=where.offset, below=where.offset + 1
                )
                ends[where.topic] = _merged(ends[where.topic], at)
    facts.progress = await _progress(settings, facts.partitions, ends)
    return facts


async def _commands(
    settings: Settings, scan: Scanner, facts: Facts, wanted: tuple[bytes, ...], since_ms: int | None
) -> dict[str, Scanned]:
    families = _families(settings)

    def done_for(family: CommandFamily) -> Callable[[list[RawRecord]], bool]:
        return lambda found: any(read_command(r, family, facts.command_id) for r in found)

    topics = list(facts.partitions)
    scans = await asyncio.gather(
        *(
            scan.partition(
                t,
                facts.partitions[t],
                wanted,
                newest_first=since_ms is None,  # with since: forward from then, the id is near
                done=done_for(families[t]),
                since_ms=since_ms,
            )
            for t in topics
        )
    )
    return dict(zip(topics, scans, strict=True))


async def _hinted(
    settings: Settings,
    scan: Scanner,
    facts: Facts,
    plan: dict[str, int],
    wanted: tuple[bytes, ...],
    hints: dict[str, Hint],
) -> dict[str, Scanned] | None:
    """Step 1 with the owner's ledger: each command partition it holds is read only where the
    ledger cannot answer, all at once; None when that found a record of the id in a place the ledger
    does not explain (then the whole partitions are read, as without hints). See hints.py."""
    families = _families(settings)
    committed = await _committed(settings, {t: facts.partitions[t] for t in hints})
    topics = list(facts.partitions)
    notes: dict[str, list[str]] = {topic: [] for topic in topics}

    def done_for(family: CommandFamily) -> Callable[[list[RawRecord]], bool]:
        return lambda found: any(read_command(r, family, facts.command_id) for r in found)

    async def one(topic: str) -> Scanned | None:
        partition, hint, done = facts.partitions[topic], hints.get(topic), done_for(families[topic])
        if hint is None:
            return await scan.partition(topic, partition, wanted, newest_first=True, done=done)
        if hint.last_write_ms is not None:
            return await _remembered(scan, topic, partition, wanted, hint, done, notes[topic])
        return await _not_remembered(
            scan, topic, partition, wanted, hint, committed.get(topic), done, notes[topic]
        )

    t = settings.topics
    unknown = any(hint.last_write_ms is None for hint in hints.values())
    beside = [x for x in (t.parked, t.dead_letter) if x in plan] if unknown else []  # the ledger may not name
    found = await asyncio.gather(
        *(one(topic) for topic in topics), *(scan.partition(x, plan[x], wanted) for x in beside)
    )
    read, others = found[: len(topics)], found[len(topics) :]
    if any(r is None for r in read) or any(r is not None and r.records for r in others):
        return None
    facts.notes += [note for topic in topics for note in notes[topic]]
    if beside:
        facts.notes.append(f"read whole: {', '.join(f'{r.topic}[{r.partition}]' for r in others if r)}")
    return {topic: r for topic, r in zip(topics, read, strict=True) if r is not None}


async def _remembered(
    scan: Scanner,
    topic: str,
    partition: int,
    wanted: tuple[bytes, ...],
    hint: Hint,
    done: Callable[[list[RawRecord]], bool],
    notes: list[str],
) -> Scanned:
    """The ledger wrote about the id last in the minute of ``hint.last_write_ms``: its command record
    is older, so read newest first from there, and the newest ``RECENT`` records (a later duplicate
    or reuse of the id), both at once; the records between only if the id is not found."""
    assert hint.last_write_ms is not None
    bound, high = await scan.offset_at(topic, partition, hint.last_write_ms + 60_000 + SKEW_MS)
    near, newest = await asyncio.gather(
        scan.partition(topic, partition, wanted, newest_first=True, done=done, below=bound),
        scan.partition(topic, partition, wanted, since_offset=max(bound, high - RECENT)),
    )
    both = _merged(near, newest)
    if not done(both.records):  # not where the ledger says: read the rest, nothing is assumed
        rest = await scan.partition(
            topic, partition, wanted, newest_first=True, done=done, since_offset=near.end, below=newest.start
        )
        return _merged(both, rest)
    if newest.start > near.end:
        notes.append(
            f"{topic}[{partition}]: read newest first from offset {near.end} (the ledger of {hint.member} "
            f"last wrote about the id at {iso(hint.last_write_ms)}) and offsets {newest.start}-{newest.high} "
            f"(the newest); the {newest.start - near.end} records between were not read: a duplicate "
            "of the id among them would not show (--full reads every record)"
        )
    return both


async def _not_remembered(
    scan: Scanner,
    topic: str,
    partition: int,
    wanted: tuple[bytes, ...],
    hint: Hint,
    committed: int | None,
    done: Callable[[list[RawRecord]], bool],
    notes: list[str],
) -> Scanned | None:
    """The ledger does not know the id: read the records it cannot answer for (those the group has
    not committed, and the newest ``RECENT`` before them; those older than its horizon), at once;
    None when the id is there (then everything is read)."""
    committed = committed or 0  # never committed: the ledger vouches for nothing, all is read
    below = max(0, committed - RECENT)
    newest, oldest = await asyncio.gather(
        scan.partition(topic, partition, wanted, since_offset=below),  # whole: in parts, at once
        scan.partition(topic, partition, wanted, until_ms=hint.horizon_ms + SKEW_MS, below=below),
    )
    if newest.records or oldest.records:
        return None
    if newest.start > oldest.end:
        older = (
            f" and {oldest.start}-{oldest.end} (older than the ledger's horizon)"
            if oldest.end > oldest.start
            else ""
        )
        notes.append(
            f"{topic}[{partition}]: read offsets {newest.start}-{newest.high} (the newest, and those not "
            f"committed by the group){older}; offsets {oldest.end}-{newest.start}: the ledger of "
            f"{hint.member} remembers every command admitted there since {iso(hint.horizon_ms)}, and not "
            "this id (a command refused before admission, such as an invalid payload, is not in it: "
            "--full reads every record)"
        )
    return _merged(newest, oldest)


async def _committed(settings: Settings, partitions: dict[str, int]) -> dict[str, int | None]:
    tps = [TopicPartition(topic, p) for topic, p in partitions.items()]
    try:
        async with started(make_reader(settings.kafka, settings.kafka.group_id)) as reader:
            return {tp.topic: await reader.committed(tp) for tp in tps}
    except KafkaError as exc:
        raise LookupError_(f"cannot read the group's committed offsets: {exc}") from exc


async def _others(
    settings: Settings,
    scan: Scanner,
    facts: Facts,
    plan: dict[str, int],
    wanted: tuple[bytes, ...],
    since_ms: int,
) -> dict[str, Scanned]:
    t, cid = settings.topics, facts.command_id
    stops: dict[str, Callable[[list[RawRecord]], bool] | None] = {
        t.run_outcomes: lambda found: any(read_outcome(r, cid) for r in found),
        t.control_outcomes: lambda found: any(read_outcome(r, cid) for r in found),
        t.lifecycle: lambda found: any(
            (e := read_lifecycle(r, cid)) is not None and e.status in TERMINAL for r in found
        ),
        t.ledger: lambda found: any(
            (e := read_ledger(r, frozenset(t.routes), cid)) is not None and e.state == "done" for r in found
        ),
    }
    topics = [topic for topic in plan if topic not in t.routes]
    scans = await asyncio.gather(
        *(scan.partition(x, plan[x], wanted, done=stops.get(x), since_ms=since_ms) for x in topics)
    )
    return dict(zip(topics, scans, strict=True))


def _merged(before: Scanned | None, more: Scanned) -> Scanned:
    """A command partition read further back: what both passes found, and how far they reached."""
    if before is None:
        return more
    before.records += more.records
    before.bytes_read += more.bytes_read
    before.read_from = min(before.read_from, more.read_from)
    return before


def _named_older(facts: Facts) -> list[Where]:
    """Command records the outcomes, dead letters and the ledger name that were not read yet (the
    newest-first read stopped at a later record of the id: a duplicate, or a reuse of the id)."""
    read = {c.where for c in facts.commands}
    named = {o.source for o in facts.outcomes} | {d.source for d in facts.dead_letters if d.source}
    named |= {
        Where(e.topic, facts.partitions[e.topic], e.command_offset)
        for e in facts.ledger
        if e.command_offset is not None and e.command_offset >= 0 and e.topic in facts.partitions
    }
    lowest = {t: min((w.offset for w in read if w.topic == t), default=-1) for t in facts.partitions}
    return sorted(w for w in named - read if w.topic in lowest and w.offset < lowest[w.topic])


def _families(settings: Settings) -> dict[str, CommandFamily]:
    t = settings.topics
    return {t.run_commands: CommandFamily.RUN, t.control_commands: CommandFamily.CONTROL}


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


def _understand(settings: Settings, previous: Facts, scans: dict[str, Scanned]) -> Facts:
    """The facts of ``previous`` (its id, key and partitions) from what ``scans`` found."""
    facts = Facts(previous.command_id, previous.key, previous.partitions, notes=previous.notes)
    t, cid = settings.topics, facts.command_id
    families = _families(settings)
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
    return facts


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
    committed = await _committed(settings, partitions)
    return {
        (topic, p): Progress(topic, p, committed[topic], scans[topic].high) for topic, p in partitions.items()
    }
