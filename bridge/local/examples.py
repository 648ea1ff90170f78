"""Example commands for the local stack: every operation, and every outcome status.

Each sandbox (``bridge/sandbox/<provider>.py``) declares its own; one more is for no target at all.
"""

from __future__ import annotations

from bridge.providers.catalog import CATALOG
from bridge.sandbox.catalog import SANDBOXES
from bridge.sandbox.spec import Example


def example_commands(run_id: str) -> list[Example]:
    """(Kafka key, command document) pairs; ``run_id`` keeps command ids unique across runs."""

    def cid(name: str) -> str:
        return f"{run_id}-{name}"

    return [
        *(e for sandbox in SANDBOXES for e in sandbox.local.examples(cid)),
        unknown_target(cid("unknown-target")),
    ]


def unknown_target(command_id: str) -> Example:
    """A valid command (the first contract example's fields) for a target no configuration has."""
    command = CATALOG.commands[0]
    fields = {name: value for name, value in command.example.fields.items() if name != "target"}
    return b"misc", {"id": command_id, "target": "nowhere", "operation": command.operation, **fields}


NOT_A_COMMAND = b"this is not JSON"


def example_records(run_id: str) -> list[Example]:
    """What ``bridge local`` sends, in order: every example, the first one again (the ledger absorbs
    the duplicate: no second call, no second outcome), and one record that is not JSON at all."""
    commands = example_commands(run_id)
    return [*commands, commands[0], (b"junk", NOT_A_COMMAND)]


def your_command(run_id: str) -> dict[str, object]:
    """A command for the user to send next: the first example under an id of its own."""
    _, doc = example_commands(run_id)[0]
    return {**doc, "id": f"{run_id}-yours-1"}
