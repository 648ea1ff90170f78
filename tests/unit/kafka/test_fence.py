"""One owner per partition without transactions (issue 25.2): a member whose session is lost starts
nothing more and writes nothing more for its partitions; the broker's word on the generation is asked
once per round of confirmations, not once per command."""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace

import pytest
from aiokafka import TopicPartition
from aiokafka.errors import CommitFailedError

from bridge.kafka.fence import Fence, Fenced, check_owner, confirm_owner
from bridge.kafka.partitions import Partition
from tests.unit.kafka import test_engine
from tests.unit.kafka.test_engine import P0, World, add, until

settings = test_engine.settings  # the engine's fixtures: fakes of bridge.testing, no broker
world = test_engine.world


def fenced(world: World, what: str) -> float:
    return world.metrics.registry.get_sample_value("bridge_fenced_total", {"what": what}) or 0.0


async def test_a_refused_commit_stops_the_partition_before_its_answer_is_written(world: World) -> None:
    world.provider.held = {0}
    add(world, b"a", b"a", b"b")  # 0 runs, 1 waits behind it; 2 (key b) is answered at once
    await world.consumer.rebalance([P0])
    await until(lambda: world.provider.started == [0, 2] and world.answered() == [2])
    world.consumer.commit_error = CommitFailedError("the group rebalanced")  # another member owns P0 now
    world.provider.release(0)  # its call ends after the session was lost
    await until(lambda: fenced(world, "command") == 1)
    await asyncio.sleep(0.05)
    assert world.answered() == [2]  # offset 0's answer is not written, offset 1 never starts
    assert world.provider.started == [0, 2]
    assert fenced(world, "partition") == 1


async def test_a_revocation_after_a_lost_session_gives_the_partition_up_at_once(world: World) -> None:
    world.provider.held = {0}
    add(world, b"a", b"b")
    await world.consumer.rebalance([P0])
    await until(lambda: world.answered() == [1])
    commits = len(world.consumer.commits)
    # as aiokafka's coordinator after a refused heartbeat (unknown member, illegal generation)
    world.consumer._coordinator = SimpleNamespace(generation=-1)  # type: ignore[attr-defined]
    began = time.monotonic()
    await world.consumer.rebalance([])
    assert time.monotonic() - began < 0.5  # no drain grace (2 s): another member may own it already
    world.provider.release(0)
    await asyncio.sleep(0.05)
    assert world.answered() == [1]
    assert len(world.consumer.commits) == commits  # no final commit either
    assert fenced(world, "partition") == 1


async def test_confirmations_share_one_probe_sent_after_they_asked() -> None:
    sent: list[int] = []
    gate = asyncio.Event()

    async def probe() -> bool:
        sent.append(len(sent))
        await gate.wait()
        return True

    fence = Fence(probe, lambda _: None)
    first = asyncio.create_task(fence.confirm())
    await asyncio.sleep(0)
    later = [asyncio.create_task(fence.confirm()) for _ in range(10)]  # asked while the first is out
    await asyncio.sleep(0.01)
    assert sent == [0]  # the later ones wait for a probe sent after they asked
    gate.set()
    assert await first and all(await asyncio.gather(*later))
    assert sent == [0, 1]


async def test_a_refused_probe_loses_the_session_until_the_next_assignment() -> None:
    lost: list[str] = []

    async def probe() -> bool:
        return False

    fence = Fence(probe, lost.append)
    assert not await fence.confirm()
    assert fence.lost and len(lost) == 1
    assert not await fence.confirm()  # no second probe: lost is lost
    fence.renew()
    assert not fence.lost


async def test_a_routine_of_a_fenced_partition_cannot_call_or_write() -> None:
    partition = Partition(TopicPartition("cmd", 0))
    outcomes: list[str] = []

    async def routine() -> None:
        await confirm_owner()
        outcomes.append("called")
        partition.fenced = True
        check_owner()
        outcomes.append("written")

    task = partition.adopt(routine(), "key")
    await asyncio.wait([task])
    assert outcomes == ["called"] and isinstance(task.exception(), Fenced)
    await confirm_owner()  # outside a partition's routine: nothing to confirm
    check_owner()


@pytest.mark.parametrize("held", [True, False])
async def test_the_probe_runs_in_the_background_of_whoever_asked(held: bool) -> None:
    """Cancelling one caller does not cancel the round the others wait for."""
    gate = asyncio.Event()

    async def probe() -> bool:
        await gate.wait()
        return held

    fence = Fence(probe, lambda _: None)
    a, b = asyncio.create_task(fence.confirm()), asyncio.create_task(fence.confirm())
    await asyncio.sleep(0.01)
    a.cancel()
    gate.set()
    assert await b is held
