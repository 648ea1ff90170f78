"""One owner per partition without transactions (issue 25.2): a member that lost its group session
starts no provider call and writes nothing more for its partitions.

The proof of ownership is the broker's: an offset commit carries the member's generation and is refused
(``CommitFailedError``) once the group has moved on. A call starts only after a commit that was *sent
after* the command's ``dispatched`` entry was acknowledged came back accepted: the next owner's
restore begins after the group's next generation, so it reads that entry (the command is in doubt, not
new) and never races it. Concurrent confirmations share one commit (a round), so the cost is one
commit round-trip per round, not per command.

A lost session (a refused commit, or the client's generation reset after a failed heartbeat) fences
every partition the member holds: nothing more starts, nothing more is written (outcomes, parked
records, ledger entries), running routines are cancelled; the partitions' next owner redoes them.

Where transactions are on, the transactional producer fences the old owner instead (no fence here).

Example::

    fence = Fence(probe, on_lost)
    partition.fence = fence           # Partition.adopt runs its routines "inside" the partition
    await confirm_owner()             # in a routine: raises Fenced unless still the owner
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import Any, Protocol

log = logging.getLogger("bridge.engine")


class Fenced(BaseException):
    """This member no longer owns the routine's partition: stop, write nothing (a BaseException, so
    that no ``except Exception`` turns it into an outcome or a dead letter)."""


class Owned(Protocol):
    """A command partition as the fence sees it (bridge.kafka.partitions.Partition)."""

    fenced: bool
    fence: Fence | None


HOME: ContextVar[Owned | None] = ContextVar("bridge_partition", default=None)
"""The partition whose routine runs in this context (set by ``Partition.adopt``)."""


def check_owner() -> None:
    """Before a write: raise :class:`Fenced` if the current routine's partition was fenced."""
    home = HOME.get()
    if home is not None and home.fenced:
        raise Fenced


async def confirm_owner() -> None:
    """Before a provider call (after its ``dispatched`` entry was acknowledged) and before a
    routine's answer is written: the broker confirms the generation, or :class:`Fenced` is raised.
    Outside a partition's routine (a local command, a test), or without a fence: nothing to do."""
    home = HOME.get()
    if home is None:
        return
    if home.fenced or (home.fence is not None and not await home.fence.confirm()):
        home.fenced = True
        raise Fenced


def member_generation(consumer: Any) -> int | None:
    """The consumer group generation the client believes in; -1 once it was reset (its session was
    lost: a heartbeat or commit answered unknown member / illegal generation). None: not known.
    aiokafka keeps it on its coordinator, which has no public accessor."""
    generation = getattr(getattr(consumer, "_coordinator", None), "generation", None)
    return generation if isinstance(generation, int) else None


class Fence:
    """The member's ownership: ``probe()`` asks the broker (True: still the owner); ``on_lost`` fences
    the member's partitions. Confirmations arriving while a probe is out wait for the next one."""

    def __init__(self, probe: Callable[[], Awaitable[bool]], on_lost: Callable[[str], None]) -> None:
        self._probe = probe
        self._on_lost = on_lost
        self.lost = False
        self._next: asyncio.Future[bool] | None = None  # the round not sent yet
        self._runner: asyncio.Task[None] | None = None
        self.rounds = 0

    async def confirm(self) -> bool:
        if self.lost:
            return False
        if self._next is None:
            self._next = asyncio.get_running_loop().create_future()
            if self._runner is None or self._runner.done():
                self._runner = asyncio.create_task(self._run(), name="ownership-probe")
        return await asyncio.shield(self._next)

    async def _run(self) -> None:
        while (round_ := self._next) is not None:
            self._next = None
            self.rounds += 1
            try:
                held = not self.lost and await self._probe()
            except BaseException:
                round_.set_result(False)
                raise
            if not held:
                self.lose("the broker refused this member's generation")
            round_.set_result(held)

    def lose(self, why: str) -> None:
        """The session is lost: every partition held now is fenced until the next assignment."""
        if not self.lost:
            self.lost = True
            log.warning(
                "group session lost (%s): no call starts and nothing is written for its partitions", why
            )
        self._on_lost(why)

    def renew(self) -> None:
        """A new assignment: this member is in the group's current generation again."""
        self.lost = False

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            await asyncio.gather(self._runner, return_exceptions=True)
        if self._next is not None and not self._next.done():
            self._next.set_result(False)
