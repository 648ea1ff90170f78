"""What the member that owns a command partition knows about an id from its ledger, and how a lookup
gets it: in process (the admin endpoint of that member) or over HTTP (``bridge status`` asking a
member's admin listener, ``GET /v1/ledger/{id}``).

The ledger remembers every command it admitted (dispatched or done) for its retention, with the
minute of its last entry. That turns the two slow lookups of a long partition into short ones:

- a remembered id: its command record is older than its last entry, so the command partition is
  read newest first from the offset of that minute (plus the clock skew) instead of from the end;
- an id it does not remember: only what the ledger cannot vouch for is read (the records the
  group has not committed yet, those older than the ledger's horizon, the parking and dead-letter
  partitions), and the answer says what was read and what the ledger stood in for.

Example::

    hints = await ask_member("http://127.0.0.1:9465", None, "cmd-1", {"workflow.run.commands": 3})
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

ASK_TIMEOUT_S = 2.0  # a member that does not answer by then: the lookup reads the topics alone


@dataclass(frozen=True, slots=True)
class Hint:
    """What the ledger of ``member`` (which holds ``topic[partition]``) knows about the id."""

    topic: str
    partition: int
    member: str
    last_write_ms: int | None  # the minute of the id's last ledger entry; None: not remembered
    horizon_ms: int  # every admitted id whose last entry is this recent or more is remembered


# {command topic: partition} -> the hints of the partitions the answering member holds
Recaller = Callable[[Mapping[str, int]], Awaitable[dict[str, Hint]]]


def hint_json(hint: Hint) -> dict[str, Any]:
    return {
        "topic": hint.topic,
        "partition": hint.partition,
        "remembered": hint.last_write_ms is not None,
        "last_write_ms": hint.last_write_ms,
        "horizon_ms": hint.horizon_ms,
    }


def hints_from_json(body: Any, wanted: Mapping[str, int]) -> dict[str, Hint]:
    """The hints of a ``GET /v1/ledger/{id}`` body that are about ``wanted``; {} for anything else."""
    if not isinstance(body, dict) or not isinstance(body.get("partitions"), list):
        return {}
    member = str(body.get("member", "?"))
    found: dict[str, Hint] = {}
    for doc in body["partitions"]:
        try:
            topic, partition = str(doc["topic"]), int(doc["partition"])
            last = doc["last_write_ms"]
            hint = Hint(topic, partition, member, None if last is None else int(last), int(doc["horizon_ms"]))
        except (KeyError, TypeError, ValueError):
            return {}  # not a body this version understands: no hints rather than wrong ones
        if wanted.get(topic) == partition:
            found[topic] = hint
    return found


async def ask_member(
    url: str, token: str | None, command_id: str, partitions: Mapping[str, int]
) -> dict[str, Hint]:
    """The hints of the member at ``url`` (its admin listener); {} when it cannot be asked or holds
    none of ``partitions`` (the lookup then reads the topics alone)."""
    params = [("partition", f"{topic}:{p}") for topic, p in partitions.items()]
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    timeout = aiohttp.ClientTimeout(total=ASK_TIMEOUT_S)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(f"{url.rstrip('/')}/v1/ledger/{command_id}", params=params, headers=headers) as resp,
        ):
            if resp.status != 200:
                return {}
            body = orjson.loads(await resp.read())
    except (aiohttp.ClientError, TimeoutError, orjson.JSONDecodeError, ValueError):
        return {}
    return hints_from_json(body, partitions)


def parse_partitions(values: list[str]) -> dict[str, int] | None:
    """``["workflow.run.commands:3", ...]`` -> {topic: 3}; None when one is not ``TOPIC:N``."""
    found: dict[str, int] = {}
    for value in values:
        topic, sep, number = value.rpartition(":")
        if not sep or not topic or not number.isdigit():
            return None
        found[topic] = int(number)
    return found
