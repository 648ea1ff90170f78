"""One ledger partition's copy on local disk: a RocksDB store and its changelog checkpoint.

The store holds the partition's records as they are in the topic (key and value bytes, any kind of
entry), and under a key no entry can have (:data:`CHECKPOINT_KEY`) the checkpoint: the next
changelog offset to apply, written in the same atomic batch as the records before it. What runs
the stores (restore, follower, overlay) is :mod:`bridge.ledger.disk`.

Example::

    store = PartitionStore(Path("/var/lib/bridge/ledger/workflow.bridge.ledger/3"), ident, rocks_options(32))
    store.apply(records, now_ms)            # records and checkpoint, one batch
    value = store.get(b"cmd:workflow.run.commands:cmd-1")
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

import orjson
from rocksdict import (
    BlockBasedOptions,
    Cache,
    DBCompressionType,
    Options,
    Rdict,
    WriteBatch,
    WriteBufferManager,
    WriteOptions,
)

from bridge.errors import StartupError
from bridge.kafka.ports import Record
from bridge.ledger.checkpoint import Checkpoint, Corrupt, Identity, encode, read_checkpoint

CHECKPOINT_KEY = b"\x00checkpoint"  # entry keys start with a letter: no entry sorts or collides here
WRITE_BUFFER = 8 << 20  # per memtable, two at most per store
BULK_WRITE_BUFFER = 64 << 20  # per memtable while a store is rebuilt (see PartitionStore.bulk_load)
MEMTABLES_LIMIT = 128 << 20  # all stores' memtables together (several rebuilt at once flush sooner)
SWEEP_CHUNK = 2_000  # keys looked at per step of the expiry sweep: about 3 ms on the event loop


class StoreUnreadable(Exception):
    """RocksDB could not open the directory (corrupt, or written by something else)."""


def rocks_options(cache_mb: int, cache: Cache | None = None) -> Options:
    """Small memtables and a bounded, shared block cache: memory stays flat whatever the store holds."""
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_paranoid_checks(True)
    options.set_write_buffer_size(WRITE_BUFFER)
    options.set_write_buffer_manager(WriteBufferManager(MEMTABLES_LIMIT, False))
    options.set_max_write_buffer_number(2)
    options.set_max_open_files(256)
    options.set_keep_log_file_num(2)
    options.set_compression_type(DBCompressionType.lz4())
    table = BlockBasedOptions()
    table.set_block_cache(cache if cache is not None else Cache(cache_mb << 20))
    table.set_bloom_filter(10, False)
    # index and bloom blocks stay with their table readers (about 2.5 bytes per key: 25 MB at 10 M
    # ids), not in the block cache: there, random lookups evicted and re-read them (2,000/s at 1 M ids)
    table.set_cache_index_and_filter_blocks(False)
    options.set_block_based_table_factory(table)
    return options


def _written_ms(value: object) -> int:
    """The ``at`` of an entry's JSON value; an entry without one never expires here."""
    try:
        return int(orjson.loads(value)["at"]) if isinstance(value, bytes) else 2**62
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return 2**62


def lock_directory(root: Path) -> BinaryIO:
    """Hold ``root`` for this member: a second process (or bridge) on the same directory would wipe
    and rewrite the stores under the first."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        handle = (root / "MEMBER.lock").open("a+b")
    except OSError as exc:
        raise StartupError(
            f"ledger.store.path: cannot use {root.parent} ({exc.strerror or exc}): "
            "set it to a writable directory (a volume of this pod)"
        ) from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise StartupError(
            f"ledger.store.path: {root.parent} is in use by another bridge: "
            "give each member a directory of its own (a volume per pod)"
        ) from None
    return handle


class PartitionStore:
    """One ledger partition's copy on disk; ``next_offset``: the next changelog offset to apply."""

    def __init__(self, path: Path, identity: Identity, options: Options) -> None:
        self.path, self.identity, self._options = path, identity, options
        self._db = self._open()
        self.next_offset = 0

    def _open(self) -> Rdict:
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            db = Rdict(str(self.path), self._options)
        except Exception as exc:  # noqa: BLE001  rocksdict raises a plain Exception (corrupt, foreign)
            raise StoreUnreadable(f"the store does not open ({str(exc).splitlines()[0][:120]})") from None
        # No write-ahead log: a crash loses the writes since the last memtable flush, records and
        # checkpoint alike (one batch, one memtable), so the store reopens at an older checkpoint and
        # reads a longer tail; it is never ahead of its checkpoint.
        unlogged = WriteOptions()
        unlogged.disable_wal = True  # type: ignore[method-assign,assignment]  # a property; the stub says method
        db.set_write_options(unlogged)
        return db

    def checkpoint(self) -> Checkpoint | Corrupt | None:
        try:
            raw = self._db.get(CHECKPOINT_KEY)
        except Exception as exc:  # noqa: BLE001  a checksum error in the block that holds it
            return Corrupt(f"the checkpoint does not read ({str(exc).splitlines()[0][:120]})")
        return read_checkpoint(raw)

    def wipe(self) -> None:
        self._db.close()
        shutil.rmtree(self.path, ignore_errors=True)
        self._db = self._open()
        self.next_offset = 0

    def get(self, key: bytes) -> bytes | None:
        value: bytes | None = self._db.get(key)
        return value

    def apply(
        self, records: Sequence[Record], now_ms: int, overlay: dict[bytes, bytes | None] | None = None
    ) -> int:
        """Write the records not applied yet and the checkpoint after them, in one batch (a record
        before ``next_offset`` was applied already: skipped); an ``overlay`` entry with the same bytes
        as a record written is dropped (read back). Returns how many records were written."""
        start = self.next_offset
        if not records or records[-1].offset < start:
            return 0
        batch = WriteBatch(raw_mode=True)
        put, delete = batch.put, batch.delete
        written, last = 0, start - 1
        for record in records:  # the restore's inner loop: kept lean
            offset = record.offset
            if offset < start:
                continue
            last, key, value = offset, record.key, record.value
            if key is None:
                continue  # the ledger's records are all keyed; an unkeyed one is nobody's entry
            if value is None:
                delete(key)
            else:
                put(key, value)
            written += 1
            if overlay and key in overlay and overlay[key] == value:
                del overlay[key]
        self.next_offset = last + 1
        put(CHECKPOINT_KEY, encode(Checkpoint(self.identity, self.next_offset, now_ms)))
        self._db.write(batch)
        return written

    def bulk_load(self, on: bool) -> None:
        """Larger memtables while a rebuild writes the whole changelog: fewer, larger flushes and
        far less compaction (about half the store's CPU for a million entries); back to the small
        ones for the steady state."""
        size = BULK_WRITE_BUFFER if on else WRITE_BUFFER
        self._db.set_options({"write_buffer_size": str(size)})
        if not on:
            self._db.flush()  # the large memtable to disk now: its memory back at once

    def mark(self, offset: int, now_ms: int) -> None:
        """Write the checkpoint alone: the partition's end was reached with no record to apply."""
        self.next_offset = max(self.next_offset, offset)
        self._db.put(CHECKPOINT_KEY, encode(Checkpoint(self.identity, self.next_offset, now_ms)))

    def scan(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        for key, value in self._db.items(from_key=prefix):
            if not isinstance(key, bytes) or not key.startswith(prefix):
                return
            yield key, value

    def expire(self, start: bytes, before_ms: int, limit: int = SWEEP_CHUNK) -> tuple[int, bytes | None]:
        """Delete command and dead-letter entries written before ``before_ms``, from ``start`` on, at
        most ``limit`` keys looked at; returns (deleted, where to go on, or None when done). The
        retention's work that the changelog's own deletions never tell a copy about."""
        stale: list[bytes] = []
        after = None
        for seen, (key, value) in enumerate(self._db.items(from_key=start)):
            if not isinstance(key, bytes) or key >= b"trk:":  # tracked workflows end by tombstone
                break
            if seen == limit:
                after = key
                break
            if _written_ms(value) < before_ms:
                stale.append(key)
        if stale:
            batch = WriteBatch(raw_mode=True)
            for key in stale:
                batch.delete(key)
            self._db.write(batch)
        return len(stale), after

    def estimate(self) -> int:
        """About how many entries the store holds: RocksDB's key estimate, less the checkpoint's key."""
        keys = int(self._db.property_int_value("rocksdb.estimate-num-keys") or 0)
        return max(0, keys - (CHECKPOINT_KEY in self._db))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._db.flush()  # no write-ahead log: what is not flushed is read from the changelog again
            self._db.close()
