"""A client that is connecting when its caller is cancelled finishes connecting first, so that the
caller can close what was opened (aiokafka leaks the socket of a connection cancelled half-way)."""

from __future__ import annotations

import asyncio

import pytest

from bridge.kafka import clients
from bridge.kafka.clients import settle_before_cancel


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
