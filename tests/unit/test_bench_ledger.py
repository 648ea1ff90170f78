"""bench.ledger's changelog: what its benchmarks fill a ledger partition with."""

from __future__ import annotations

from bench.ledger import ledger_records
from bridge.ledger.entries import EntryState, decode


def test_each_id_has_its_dispatched_entry_and_then_its_done_entry() -> None:
    records = list(ledger_records("run", 3, 1_000, compacted=False))
    entries = [decode(key, value) for key, value in records]
    assert [(e.command_id, e.state) for e in entries if e is not None] == [
        (f"cmd-{i:08d}", state) for i in range(3) for state in (EntryState.DISPATCHED, EntryState.DONE)
    ]


def test_a_compacted_changelog_keeps_the_done_entry_alone() -> None:
    full = list(ledger_records("run", 3, 1_000))
    compacted = list(ledger_records("run", 3, 1_000, compacted=True))
    assert compacted == full[1::2]
    assert all(e is not None and e.state is EntryState.DONE for e in (decode(*r) for r in compacted))
