"""A client that is connecting when its caller is cancelled finishes connecting first, so that the
caller can close what was opened (aiokafka leaks the socket of a connection cancelled half-way)."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.errors import KafkaConnectionError

from bridge.kafka import clients
from bridge.kafka.clients import close_late_connections, settle_before_cancel, stop_client


async def test_a_cancel_waits_for_the_connect_then_is_raised():
    steps: list[str] = []

    async def connect() -> str:
        await asyncio.sleep(0.2)
        steps.append("connected")
        return "client"

    async def caller() -> None:
        await settle_before_cancel(connect())
        steps.append("used")  # never: the caller was cancelled

    task = asyncio.create_task(caller())
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["connected"]


async def test_a_second_cancel_does_not_cut_the_grace_short():
    """A stop cancels, then a shutdown cancels again: the connect still finishes before the caller
    goes on (and closes the client); before, the second cancel left it connecting after the close."""
    steps: list[str] = []

    async def connect() -> None:
        await asyncio.sleep(0.2)
        steps.append("connected")

    async def caller() -> None:
        try:
            await settle_before_cancel(connect())
        finally:
            steps.append("closed")

    task = asyncio.create_task(caller())
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps == ["connected", "closed"]


async def test_a_connect_that_hangs_past_the_grace_is_cancelled(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(clients, "START_GRACE_S", 0.1)
    ended: list[str] = []

    async def connect() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    task = asyncio.create_task(settle_before_cancel(connect()))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    assert ended == ["cancelled"]


async def test_without_a_cancel_the_result_comes_back():
    async def connect() -> int:
        return 7

    assert await settle_before_cancel(connect()) == 7


class GroupCoordinator:
    """Stands in for aiokafka's: its commit request is shielded from the caller's cancel."""

    def __init__(self, client: FakeKafkaClient) -> None:
        self.client = client

    async def _do_commit_offsets(self) -> None:
        await asyncio.sleep(0.05)  # the broker answers late (it was paused)
        self.client.connect("coordinator connection")  # opened after stop() closed the others


class FakeConnection:
    def __init__(self) -> None:
        self.closed = False

    def close(self, reason: object = None) -> None:
        self.closed = True


class FakeKafkaClient:
    """aiokafka's AIOKafkaClient as the helpers see it: its connections and its metadata refresh."""

    def __init__(self) -> None:
        self._conns: dict[str, FakeConnection] = {}
        self._sync_task: asyncio.Task[None] | None = None
        self.connect("bootstrap")

    def connect(self, name: str) -> None:
        self._conns[name] = FakeConnection()

    @property
    def open(self) -> set[str]:
        return {name for name, conn in self._conns.items() if not conn.closed}

    async def close(self) -> None:
        for conn in self._conns.values():
            conn.close()


class StoppedConsumer:
    def __init__(self) -> None:
        self._client = FakeKafkaClient()
        self._coordinator = GroupCoordinator(self._client)


async def test_a_commit_request_still_out_at_stop_has_its_connection_closed_after_it() -> None:
    consumer = StoppedConsumer()

    async def commit() -> None:
        await asyncio.shield(consumer._coordinator._do_commit_offsets())

    caller = asyncio.create_task(commit())
    await asyncio.sleep(0)
    caller.cancel()  # the fence check or the last commit, cut short by the stop
    await asyncio.gather(caller, return_exceptions=True)
    await consumer._client.close()  # what stop() does
    await close_late_connections(consumer)  # type: ignore[arg-type]
    assert consumer._client.open == set()


async def test_without_a_commit_request_out_nothing_is_waited_for() -> None:
    consumer = StoppedConsumer()
    await close_late_connections(consumer)  # type: ignore[arg-type]
    assert consumer._client.open == {"bootstrap"}  # untouched: stop() is the one that closes


class ConsumerThatStopsHalfWay(StoppedConsumer):
    """aiokafka's consumer whose stop() raises before it closes its connections (a fetch request waiting
    out a retry, cancelled by the stop, lets its CancelledError escape) and does nothing the second time."""

    def __init__(self, error: BaseException | None, stop_s: float = 0.0) -> None:
        super().__init__()
        self.error = error
        self.stop_s = stop_s
        self.stops = 0
        self.stopped = False

    async def stop(self) -> None:
        self.stops += 1
        if self.stops > 1:
            return
        await asyncio.sleep(self.stop_s)  # leaving the group, closing the coordinator
        if self.error is not None:
            raise self.error
        await self._client.close()
        self.stopped = True


async def test_a_stop_that_raises_cancelled_half_way_still_closes_the_connections() -> None:
    consumer = ConsumerThatStopsHalfWay(asyncio.CancelledError())
    consumer._client.connect("group coordinator")
    await stop_client(consumer)  # type: ignore[arg-type]  # not the caller's cancel: the stop is done
    assert consumer._client.open == set()


async def test_a_stop_that_fails_closes_the_connections_then_raises() -> None:
    consumer = ConsumerThatStopsHalfWay(KafkaConnectionError("broker gone"))
    with pytest.raises(KafkaConnectionError):
        await stop_client(consumer)  # type: ignore[arg-type]
    assert consumer._client.open == set()


async def test_a_caller_cancelled_while_stopping_lets_the_stop_finish_then_is_cancelled() -> None:
    consumer = ConsumerThatStopsHalfWay(None, stop_s=0.2)
    caller = asyncio.create_task(stop_client(consumer))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    caller.cancel()
    await asyncio.sleep(0.05)
    caller.cancel()  # a second cancel (a restore cancelled, then its engine stopped) changes nothing
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert consumer.stopped and consumer.stops == 1
    assert consumer._client.open == set()


async def test_a_caller_cancelled_while_stopping_is_not_taken_for_an_escape(
    caplog: pytest.LogCaptureFixture,
) -> None:
    consumer = ConsumerThatStopsHalfWay(asyncio.CancelledError(), stop_s=0.2)
    caller = asyncio.create_task(stop_client(consumer))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert consumer._client.open == set()
    assert "stopped half-way" not in caplog.text


async def test_a_caller_cancelled_before_and_caught_still_tells_a_later_escape_apart(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """``started()`` stops its client in a ``finally`` after its caller's cancel was delivered: that
    earlier cancel must not make aiokafka's own CancelledError look like the caller's."""
    consumer = ConsumerThatStopsHalfWay(asyncio.CancelledError())

    async def restore() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await stop_client(consumer)  # type: ignore[arg-type]

    caller = asyncio.create_task(restore())
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):  # the caller's own cancel, not swallowed
        await caller
    assert consumer._client.open == set()
    assert "stopped half-way" in caplog.text  # the stop's own CancelledError was seen as aiokafka's


async def test_a_clean_stop_closes_through_stop_alone() -> None:
    consumer = ConsumerThatStopsHalfWay(None)
    await stop_client(consumer)  # type: ignore[arg-type]
    assert consumer.stops == 1 and consumer.stopped
    assert consumer._client.open == set()
