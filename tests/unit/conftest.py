"""Shared fixtures: the sandbox providers over real loopback HTTP, and a client session."""

from collections.abc import AsyncIterator

import aiohttp
import pytest

from bridge.sandbox import RunningSandbox, start_sandbox


@pytest.fixture
async def sandbox() -> AsyncIterator[RunningSandbox]:
    running = await start_sandbox()
    yield running
    await running.stop()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
def http(session: aiohttp.ClientSession) -> aiohttp.ClientSession:
    """The sandbox tests' name for the same client session."""
    return session
