"""What to do with a command the ledger may have seen before. Pure.

Example::

    admission = admit(index.get(command.id), fingerprint(command), redrive=is_redrive(record.headers))
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from bridge.ledger.index import Remembered, short_fp
from bridge.messages.outcomes import ErrorKind, OutcomeError
from bridge.messages.provenance import REDRIVE
from bridge.messages.wire import Header


class Admission(StrEnum):
    NEW = "new"  # never seen (or forgotten): dispatch and run
    DUPLICATE = "duplicate"  # done with the same payload: no call, no outcome, commit past it
    ID_REUSED = "id_reused"  # seen with another payload: dead letter, not run
    IN_DOUBT = "in_doubt"  # dispatched but never done (a crash): the target's on_unknown policy
    RERUN = "rerun"  # done with status error and explicitly re-driven: a new attempt


def admit(seen: Remembered | None, fp: int, *, redrive: bool) -> Admission:
    if seen is None:
        return Admission.NEW
    if seen.fp != short_fp(fp):
        return Admission.ID_REUSED
    if not seen.done:
        return Admission.IN_DOUBT
    return Admission.RERUN if redrive and seen.error else Admission.DUPLICATE


def is_redrive(headers: Iterable[Header]) -> bool:
    return any(name == REDRIVE and value == b"1" for name, value in headers)


def unknown_error(provider: str, command_id: str, what_to_check: str) -> OutcomeError:
    """The ``report`` answer to a command caught between its call and its recorded result;
    ``what_to_check``: what to look for in the provider (its spec says)."""
    return OutcomeError(
        kind=ErrorKind.OUTCOME_UNKNOWN,
        retryable=False,
        message=(
            f"command {command_id} was sent to {provider} before the bridge stopped, and its "
            f"result was never recorded; it is not sent again. Check in {provider} "
            f"{what_to_check}; "
            "if it did not run, re-drive it (bridge.redrive: 1) or send it with a new id"
        ),
    )
