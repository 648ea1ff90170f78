"""When a local ledger store is trusted (its changelog tail read) and when it is rebuilt; the store's
atomic batch of records and checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from bridge.ledger.checkpoint import Checkpoint, Corrupt, Identity, decide, encode, read_checkpoint
from bridge.ledger.rocks import CHECKPOINT_KEY, PartitionStore, StoreUnreadable, rocks_options

HERE = Identity("bridge.ledger", 3, 12)
NOW = 1_800_000_000_000
DAY = 86_400_000


def at(offset: int, identity: Identity = HERE, written: int = NOW - 1000) -> Checkpoint:
    return Checkpoint(identity, offset, written)


def judge(found: Checkpoint | Corrupt | None, start: int | None = 0, end: int = 500) -> int | None:
    return decide(found, HERE, start, end, now_ms=NOW, max_age_ms=DAY).resume


def test_a_valid_checkpoint_within_the_log_resumes_from_its_offset() -> None:
    assert judge(at(400)) == 400
    assert judge(at(500)) == 500  # at the end: nothing to read
    assert judge(at(100), start=100) == 100
    decision = decide(at(400), HERE, 0, 500, now_ms=NOW, max_age_ms=DAY)
    assert decision.reason == "local store kept: reading the changelog from offset 400 to 500"


@pytest.mark.parametrize(
    ("found", "start", "end", "why"),
    [
        (None, 0, 500, "no local store checkpoint"),
        (Corrupt("checkpoint unreadable (JSONDecodeError)"), 0, 500, "checkpoint unreadable"),
        (at(600), 0, 500, "beyond the log end 500"),
        (at(50), 100, 500, "before the log start 100"),
        (at(10), None, 500, "first offset is unknown"),
        (at(10, Identity("other.ledger", 3, 12)), 0, 500, "copies other.ledger[3]"),
        (at(10, Identity("bridge.ledger", 4, 12)), 0, 500, "copies bridge.ledger[4]"),
        (at(10, Identity("bridge.ledger", 3, 6)), 0, 500, "had 6 partition(s)"),
        (at(10, written=NOW - 2 * DAY), 0, 500, "old, more than 86400s"),
    ],
)
def test_anything_else_is_rebuilt_and_says_why(
    found: Checkpoint | Corrupt | None, start: int | None, end: int, why: str
) -> None:
    decision = decide(found, HERE, start, end, now_ms=NOW, max_age_ms=DAY)
    assert decision.resume is None
    assert why in decision.reason


def test_an_unknown_log_start_keeps_only_a_store_at_offset_zero() -> None:
    assert judge(at(0), start=None, end=0) == 0


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{",
        b"[]",
        b'{"v": 1}',
        b'{"v": 2, "topic": "t"}',
        b'{"v":1,"topic":"t","partition":"x","partitions":1,"offset":1,"written":1}',
        b'{"v":1,"topic":"t","partition":1,"partitions":1,"offset":-1,"written":1}',
    ],
)
def test_an_unreadable_checkpoint_is_corrupt(raw: bytes) -> None:
    assert isinstance(read_checkpoint(raw), Corrupt)


def test_a_checkpoint_round_trips() -> None:
    assert read_checkpoint(encode(at(42))) == at(42)
    assert read_checkpoint(None) is None


@dataclass
class Rec:
    offset: int
    key: bytes | None
    value: bytes | None


def test_records_and_checkpoint_are_written_together_and_only_forward(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "3", HERE, rocks_options(8))
    overlay: dict[bytes, bytes | None] = {b"cmd:a": None, b"cmd:b": b"3", b"cmd:c": b"4"}
    records = [Rec(0, b"cmd:a", b"1"), Rec(1, b"cmd:b", b"2"), Rec(2, b"cmd:a", None), Rec(3, None, b"x")]
    assert store.apply(records, NOW, overlay) == 3
    assert overlay == {b"cmd:b": b"3", b"cmd:c": b"4"}  # the tombstone of a was read back; b differs
    assert store.next_offset == 4
    assert store.get(b"cmd:a") is None and store.get(b"cmd:b") == b"2"
    assert store.apply([Rec(1, b"cmd:b", b"old")], NOW) == 0  # applied already: never backwards
    assert store.get(b"cmd:b") == b"2"
    store.close()

    reopened = PartitionStore(tmp_path / "3", HERE, rocks_options(8))
    assert reopened.checkpoint() == at(4, written=NOW)
    assert reopened.get(b"cmd:b") == b"2"
    reopened.wipe()
    assert reopened.checkpoint() is None and reopened.get(b"cmd:b") is None
    reopened.close()


def in_memtable(store: PartitionStore) -> int:
    """Entries in the store's active memtable (a full one is switched for a new one as it fills)."""
    return int(store._db.property_int_value("rocksdb.num-entries-active-mem-table") or 0)


def test_a_bulk_load_keeps_writes_in_memory_and_flushes_them_when_it_ends(tmp_path: Path) -> None:
    """12 MB of entries: more than a steady-state memtable holds (8 MB), less than a bulk load's."""
    value = b"x" * 1000
    records = [Rec(i, b"cmd:%08d" % i, value) for i in range(12_000)]
    steady = PartitionStore(tmp_path / "0", HERE, rocks_options(8))
    bulk = PartitionStore(tmp_path / "1", HERE, rocks_options(8))
    bulk.bulk_load(True)
    for start in range(0, len(records), 1000):  # as a restore applies them, a fetch at a time
        steady.apply(records[start : start + 1000], NOW)
        bulk.apply(records[start : start + 1000], NOW)
    assert in_memtable(steady) < 9_000, "the steady-state memtable held a bulk load's worth"
    assert in_memtable(bulk) == 12_000 + 12, "a bulk load switched memtables before 64 MB"  # + checkpoints
    bulk.bulk_load(False)
    assert in_memtable(bulk) == 0, "the end of a bulk load left the large memtable in memory"
    assert bulk.get(b"cmd:00011999") == value and bulk.checkpoint() == at(12_000, written=NOW)
    steady.close()
    bulk.close()


def test_a_checkpoint_key_no_entry_can_have_and_a_scan_by_prefix(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "0", HERE, rocks_options(8))
    store.apply([Rec(5, b"trk:t:1", b"x"), Rec(6, b"cmd:t:1", b"y"), Rec(7, b"trk:t:2", b"z")], NOW)
    assert list(store.scan(b"trk:")) == [(b"trk:t:1", b"x"), (b"trk:t:2", b"z")]
    assert CHECKPOINT_KEY < b"cmd:"
    store.close()


def test_the_entry_estimate_leaves_out_the_checkpoint_key(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "0", HERE, rocks_options(8))
    assert store.estimate() == 0
    store.apply([Rec(n, b"cmd:t:%d" % n, b"x") for n in range(5)], NOW)
    assert store.estimate() == 5  # five entries and the checkpoint under its own key
    store.close()


def test_a_directory_rocksdb_cannot_open_is_unreadable(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "0", HERE, rocks_options(8))
    store.apply([Rec(0, b"cmd:t:1", b"x")], NOW)
    store.close()
    for name in ("CURRENT",):
        (tmp_path / "0" / name).write_bytes(b"garbage\n")
    with pytest.raises(StoreUnreadable, match="does not open"):
        PartitionStore(tmp_path / "0", HERE, rocks_options(8))


def test_the_expiry_sweep_deletes_old_command_and_dead_letter_entries_in_steps(tmp_path: Path) -> None:
    store = PartitionStore(tmp_path / "0", HERE, rocks_options(8))
    old, new = b'{"at": 1000}', b'{"at": 5000}'
    records = [Rec(n, f"cmd:t:{n:02d}".encode(), old if n % 2 else new) for n in range(10)]
    records += [Rec(10, b"dlq:t:7", old), Rec(11, b"trk:t:1", old), Rec(12, b"cmd:t:xx", b"not json")]
    store.apply(records, NOW)
    deleted, after = store.expire(b"cmd:", before_ms=2000, limit=4)
    assert (deleted, after) == (2, b"cmd:t:04")  # 4 looked at, 01 and 03 were old
    total = deleted
    while after is not None:
        deleted, after = store.expire(after, before_ms=2000, limit=4)
        total += deleted
    assert total == 6  # 01 03 05 07 09 and the dead letter; the tracked workflow and "xx" stay
    assert store.get(b"cmd:t:01") is None and store.get(b"cmd:t:02") == new
    assert store.get(b"trk:t:1") == old and store.get(b"cmd:t:xx") == b"not json"
    assert store.checkpoint() == at(13, written=NOW)
    store.close()


CRASH = """
import os, sys
from dataclasses import dataclass
from pathlib import Path
from bridge.ledger.checkpoint import Identity
from bridge.ledger.rocks import PartitionStore, rocks_options

@dataclass
class Rec:
    offset: int
    key: bytes
    value: bytes

store = PartitionStore(Path(sys.argv[1]), Identity("bridge.ledger", 3, 12), rocks_options(8))
store.apply([Rec(n, b"cmd:t:%04d" % n, b"first") for n in range(100)], 1)
store._db.flush()
store.apply([Rec(n, b"cmd:t:%04d" % n, b"second") for n in range(100, 20000)], 2)
os._exit(9)  # no close, no flush: what a kill -9 leaves
"""


def test_a_crash_leaves_records_and_checkpoint_together(tmp_path: Path) -> None:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-c", CRASH, str(tmp_path / "3")], check=False, timeout=120)
    store = PartitionStore(tmp_path / "3", HERE, rocks_options(8))
    found = store.checkpoint()
    assert isinstance(found, Checkpoint)
    assert found.offset in (100, 20000)  # the flushed batch, or both: never between
    assert store.get(b"cmd:t:0099") == b"first"
    assert (store.get(b"cmd:t:19999") is not None) == (found.offset == 20000)
    store.close()
