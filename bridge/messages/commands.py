"""The command base: what every command upstream services publish has, and the field types.

Every command is a JSON object with an ``id`` (idempotency and correlation), a ``target`` (the name of
a provider connection in configuration) and an ``operation`` that selects a provider's command model
(declared in ``bridge/providers/<provider>.py``; :mod:`bridge.providers.catalog` collects them).
Commands are untrusted input: identifiers that end up in URL paths or HTTP headers are checked here,
and nothing in a command can choose a URL or a credential.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
)


class CommandFamily(StrEnum):
    """Run commands start work; control commands steer work that exists."""

    RUN = "run"
    CONTROL = "control"


# Printable ASCII without whitespace, '/', '\\', '?', '#', '%': safe in a URL path segment (it is still
# percent-encoded on the wire) and in an HTTP header. Dot-segments are refused separately.
_SEGMENT_PATTERN = r"^[A-Za-z0-9._~:@!$&'()*+,;=-]{1,128}$"
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$")
MAX_TTL_S = 10 * 366 * 86_400  # far beyond any real TTL, and record time + TTL stays a valid datetime


def _no_dot_segment(value: str) -> str:
    """Servers drop ``;params`` before resolving dot-segments: ``..;x`` is ``..`` to them."""
    if value.split(";", 1)[0].strip(".") == "":
        raise ValueError("must not be a dot-segment: only dots, or empty or only dots before a ';'")
    return value


def _rfc3339_text(value: Any) -> Any:
    """Only an RFC 3339 string is a time: no Unix timestamps, numeric strings or bare dates."""
    if isinstance(value, datetime):  # built in Python, not read from JSON
        return value
    if not isinstance(value, str) or not _RFC3339.match(value):
        raise ValueError("must be an RFC 3339 time string with an offset, e.g. 2026-11-23T10:15:00Z")
    return value


CommandId = Annotated[str, StringConstraints(pattern=r"^[\x21-\x7e]{1,200}$")]
TargetName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")]
PathSegment = Annotated[str, StringConstraints(pattern=_SEGMENT_PATTERN), AfterValidator(_no_dot_segment)]
# lax after the check: strict mode takes only datetime objects, never the JSON string
Rfc3339Time = Annotated[AwareDatetime, Field(strict=False), BeforeValidator(_rfc3339_text)]
JsonObject = dict[str, Any]


class StrictModel(BaseModel):
    """Every command model: unknown fields refused, no type coercion (pydantic strict mode).

    ``true`` is not an integer, ``"909"`` is not a number and ``1700000000`` is not a time. The only
    lax fields are those whose own validator is stricter than strict mode could be from JSON
    (:data:`Rfc3339Time`) or that strict mode would refuse in their JSON form (enums)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Command(StrictModel):
    """Fields every command carries; each provider's command models subclass it and narrow
    ``operation`` to their own ``Literal`` (the discriminator of the unions the catalog derives)."""

    id: CommandId = Field(description="Unique command id; the outcome's subject and the idempotency key.")
    target: TargetName = Field(description="Name of a target (provider connection) in the bridge config.")
    expires_at: Rfc3339Time | None = Field(
        default=None, description="Do not execute after this instant (RFC 3339 with offset)."
    )
    ttl_s: float | None = Field(
        default=None,
        gt=0,
        le=MAX_TTL_S,
        description="Do not execute later than this many seconds after the record time.",
    )
    operation: str


def expiry_of(command: Command, record_time: datetime) -> datetime | None:
    """The instant after which the command must not run, from expires_at and ttl_s (earliest wins)."""
    candidates: list[datetime] = []
    if command.expires_at is not None:
        candidates.append(command.expires_at)
    if command.ttl_s is not None:
        candidates.append(record_time + timedelta(seconds=command.ttl_s))
    return min(candidates) if candidates else None


def command_deadline(command: Command, record_time: datetime, max_age_s: float | None) -> datetime | None:
    """Earliest of the command's own expiry and the target's maximum age."""
    deadlines = [d for d in (expiry_of(command, record_time),) if d is not None]
    if max_age_s is not None:
        deadlines.append(record_time + timedelta(seconds=max_age_s))
    return min(deadlines) if deadlines else None


def expires_in_s(command: Command, record_time: datetime, max_age_s: float | None) -> float | None:
    """Seconds from now until :func:`command_deadline` (negative once past), None without one."""
    deadline = command_deadline(command, record_time, max_age_s)
    return None if deadline is None else (deadline - datetime.now(UTC)).total_seconds()
