"""Ledger records: what a compacted ledger partition holds, encoded and decoded. Pure.

One record per command id and state, keyed ``cmd:<command topic>:<command id>`` so that compaction
keeps only the latest state of each id. Topic names cannot contain ``:``, so the key splits
unambiguously. The ``kind`` field and the key prefix leave room for other kinds of partition state
(tracked workflows, parked keys): a reader skips kinds it does not know.

Example::

    key, value = encode_dispatched("workflow.run.commands", "cmd-1", fingerprint(command), 1187, now_ms)
    entry = decode(key, value)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

from bridge.messages.commands import Command

COMMAND_PREFIX = b"cmd:"
DEAD_LETTER_PREFIX = b"dlq:"  # dlq:<command topic>:<offset>: that record was dead-lettered
VERSION = 1


class EntryState(StrEnum):
    DISPATCHED = "dispatched"  # acknowledged before the first provider call
    DONE = "done"  # written after the outcome was acknowledged


class LedgerEntry(BaseModel):
    """The JSON value of a command entry (its schema is published in ``topics/schemas``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    v: Literal[1] = Field(description="Entry format version.")
    kind: Literal["command"] = Field(description="Entry kind; readers skip kinds they do not know.")
    state: EntryState
    fp: str = Field(pattern="^[0-9a-f]{16}$", description="Fingerprint of the command payload (64 bits).")
    at: int = Field(description="Unix time of the write, in milliseconds.")
    offset: int = Field(ge=0, description="Offset of the command record this entry is about.")
    attempt: int = Field(default=1, ge=1, description="1, or more after explicit re-runs (bridge.redrive).")
    status: str | None = Field(default=None, description="done: the outcome status.")
    ref: str | None = Field(default=None, description="done: the provider reference, if any.")
    event: str | None = Field(default=None, description="done: the CloudEvents id of the outcome.")


class DeadLetterEntry(BaseModel):
    """The JSON value of a dead-letter entry: the record at this offset was dead-lettered, so a
    redelivery of it is absorbed instead of dead-lettered again."""

    model_config = ConfigDict(extra="allow", frozen=True)

    v: Literal[1] = Field(description="Entry format version.")
    kind: Literal["dead_letter"] = Field(description="Entry kind; readers skip kinds they do not know.")
    at: int = Field(description="Unix time of the write, in milliseconds.")
    offset: int = Field(ge=0, description="Offset of the command record that was dead-lettered.")
    reason: str = Field(description="The dead letter's reason (its dlq.reason header).")


def dead_letter_key(topic: str, offset: int) -> bytes:
    return DEAD_LETTER_PREFIX + f"{topic}:{offset}".encode()


def encode_dead_letter(topic: str, offset: int, reason: str, at_ms: int) -> tuple[bytes, bytes]:
    value = {"v": VERSION, "kind": "dead_letter", "at": at_ms, "offset": offset, "reason": reason}
    return dead_letter_key(topic, offset), orjson.dumps(value)


def decode_dead_letter(key: bytes | None, value: bytes | None) -> tuple[str, int, int] | None:
    """(command topic, offset, at_ms) of a dead-letter entry; None for anything else."""
    if key is None or value is None or not key.startswith(DEAD_LETTER_PREFIX):
        return None
    topic, sep, offset = key[len(DEAD_LETTER_PREFIX) :].decode("utf-8", "replace").rpartition(":")
    try:
        return (topic, int(offset), int(orjson.loads(value)["at"])) if sep else None
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class CommandEntry:
    """A decoded command entry: what restore feeds into the index."""

    topic: str
    command_id: str
    state: EntryState
    fingerprint: int
    at_ms: int
    status: str | None = None
    attempt: int = 1


def fingerprint(command: Command) -> int:
    """64-bit fingerprint of everything the command asks for except its id."""
    payload = command.model_dump_json(exclude={"id"}).encode()
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "big")


def entry_key(topic: str, command_id: str) -> bytes:
    return COMMAND_PREFIX + topic.encode() + b":" + command_id.encode()


def encode_dispatched(
    topic: str, command_id: str, fp: int, offset: int, at_ms: int, attempt: int = 1
) -> tuple[bytes, bytes]:
    value = {"v": VERSION, "kind": "command", "state": "dispatched", "fp": f"{fp:016x}", "at": at_ms}
    value |= {"offset": offset, "attempt": attempt}
    return entry_key(topic, command_id), orjson.dumps(value)


@dataclass(frozen=True, slots=True)
class DoneFields:
    status: str
    ref: str | None
    event: str


def encode_done(
    topic: str, command_id: str, fp: int, offset: int, at_ms: int, done: DoneFields, attempt: int = 1
) -> tuple[bytes, bytes]:
    value = {"v": VERSION, "kind": "command", "state": "done", "fp": f"{fp:016x}", "at": at_ms}
    value |= {
        "offset": offset,
        "attempt": attempt,
        "status": done.status,
        "ref": done.ref,
        "event": done.event,
    }
    return entry_key(topic, command_id), orjson.dumps(value)


def command_of(key: bytes | None) -> tuple[str, str] | None:
    """The command topic and id a command entry's key names, or None for other keys."""
    if key is None or not key.startswith(COMMAND_PREFIX):
        return None
    topic, sep, command_id = key[len(COMMAND_PREFIX) :].decode("utf-8", "replace").partition(":")
    return (topic, command_id) if sep else None


def decode(key: bytes | None, value: bytes | None) -> CommandEntry | None:
    """A command entry, or None for other kinds, tombstones and records this version cannot read."""
    named = command_of(key)
    if named is None or value is None:
        return None
    topic, command_id = named
    try:
        doc = orjson.loads(value)
        return CommandEntry(
            topic,
            command_id,
            EntryState(doc["state"]),
            int(doc["fp"], 16),
            int(doc["at"]),
            doc.get("status"),
            int(doc.get("attempt", 1)),
        )
    except (orjson.JSONDecodeError, KeyError, ValueError, TypeError):
        return None
