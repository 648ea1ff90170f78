"""The ledger's local disk store (ledger.store.path) on the real broker, with the sandbox over real HTTP:
a restart that keeps the store reads only the changelog's tail; a deleted or corrupt store is rebuilt
from the changelog; either way every command id runs once."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from bridge.app import Bridge
from tests.integration.conftest import Stack, start_process, workfloo_command
from tests.integration.test_ledger import calls, sample, uid, wait_for

pytestmark = pytest.mark.integration
FIRST = 40  # commands before the restart: 80 ledger records (dispatched and done each)


def restored(bridge: Bridge, source: str) -> float:
    return sample(bridge, "bridge_ledger_restore_records_total", source=source)


async def first_run(stack: Stack, store: Path) -> list[dict[str, object]]:
    """FIRST commands run once with the store at ``store``; the bridge stopped cleanly after."""
    stack.configure(ledger={"store": {"path": str(store)}})
    bridge = await stack.start_bridge()
    docs = [workfloo_command(uid(f"store-{n}")) for n in range(FIRST)]
    await stack.send(*[(d["id"].encode(), d) for d in docs])
    assert len(await stack.collect(FIRST, within_s=60)) == FIRST
    assert restored(bridge, "rebuild") == 0  # an empty ledger: nothing to read
    assert restored(bridge, "memory") == 0
    await stack.stop_bridge(bridge)
    assert (store / stack.settings.topics.ledger).is_dir()
    return docs


async def second_run(stack: Stack, docs: list[dict[str, object]]) -> Bridge:
    """The same commands again, and one new: only the new one runs."""
    bridge = await stack.start_bridge()
    fresh = workfloo_command(uid("store-new"))
    await stack.send(*[(str(d["id"]).encode(), d) for d in docs], (fresh["id"].encode(), fresh))
    [outcome] = await stack.collect(1, within_s=60)
    assert outcome["data"]["command_id"] == fresh["id"]
    await wait_for(lambda: sample(bridge, "bridge_duplicates_total", reason="done") == FIRST, 60)
    assert await stack.collect(1, within_s=1) == []
    assert len(await calls(stack, "workfloo")) == FIRST + 1  # every id called once
    return bridge


async def test_a_restart_that_keeps_the_store_reads_only_the_tail(stack: Stack, tmp_path: Path) -> None:
    docs = await first_run(stack, tmp_path / "store")
    bridge = await second_run(stack, docs)
    # the store was caught up by the follower before the stop: nothing, or a few records, to read
    assert restored(bridge, "tail") < FIRST
    assert restored(bridge, "rebuild") == 0
    assert restored(bridge, "memory") == 0


async def test_a_deleted_store_is_rebuilt_from_the_changelog(stack: Stack, tmp_path: Path) -> None:
    docs = await first_run(stack, tmp_path / "store")
    shutil.rmtree(tmp_path / "store")
    bridge = await second_run(stack, docs)
    assert restored(bridge, "rebuild") >= 2 * FIRST  # dispatched and done of each, read again
    assert restored(bridge, "tail") == 0


@pytest.mark.parametrize("damage", ["database", "checkpoint"])
async def test_a_corrupt_store_is_rebuilt_from_the_changelog(
    stack: Stack, tmp_path: Path, damage: str
) -> None:
    docs = await first_run(stack, tmp_path / "store")
    partitions = [p for p in (tmp_path / "store" / stack.settings.topics.ledger).iterdir() if p.is_dir()]
    assert partitions
    for partition in partitions:
        if damage == "database":  # RocksDB cannot open it
            (partition / "CURRENT").write_bytes(b"not a manifest name\n")
        else:  # it opens, and its checkpoint does not read
            from rocksdict import Rdict

            from bridge.ledger.rocks import CHECKPOINT_KEY, rocks_options

            db = Rdict(str(partition), rocks_options(8))
            db[CHECKPOINT_KEY] = b"{not json"
            db.close()
    bridge = await second_run(stack, docs)
    assert restored(bridge, "rebuild") >= 2 * FIRST
    assert restored(bridge, "tail") == 0


async def test_without_a_store_path_the_ledger_stays_in_memory(stack: Stack) -> None:
    bridge = await stack.start_bridge()
    doc = workfloo_command(uid("memory"))
    await stack.send((b"k", doc))
    assert len(await stack.collect(1, within_s=60)) == 1
    await stack.stop_bridge(bridge)
    again = await stack.start_bridge()
    await stack.send((b"k", doc))
    await wait_for(lambda: sample(again, "bridge_duplicates_total", reason="done") == 1, 60)
    assert restored(again, "memory") >= 2
    assert restored(again, "tail") == restored(again, "rebuild") == 0


async def test_a_store_path_in_use_or_unusable_is_one_line_and_a_non_zero_exit(
    stack: Stack, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    stack.configure(ledger={"store": {"path": str(store)}})
    holder = await stack.start_bridge()  # holds the directory
    await wait_for(lambda: (store / stack.settings.topics.ledger / "MEMBER.lock").exists(), 60)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory\n")
    for path, words in [(store, "is in use by another bridge"), (blocked / "sub", "cannot use")]:
        process = await start_process(stack, tmp_path, ledger={"store": {"path": str(path)}})
        _, stderr = await process.communicate()
        lines = [line for line in stderr.decode().splitlines() if "ledger.store.path" in line]
        assert process.returncode not in (0, None)
        assert len(lines) == 1 and words in lines[0], stderr.decode()[-2000:]
        assert "Traceback" not in stderr.decode()
    await stack.stop_bridge(holder)
