"""TokenCache: skew refresh, single flight, forced refresh and failure backoff, on an injected clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from bridge.errors import AuthError
from bridge.providers.tokens import Token, TokenCache
from tests.fakes import FakeClock


class FakeEndpoint:
    """Hands out tok-1, tok-2, ... valid for ``lifetime_s``; can fail or be held open."""

    def __init__(self, clock: FakeClock, lifetime_s: float | None = 100.0) -> None:
        self.clock = clock
        self.lifetime_s = lifetime_s
        self.calls = 0
        self.error: AuthError | None = None
        self.gate: asyncio.Event | None = None

    async def fetch(self) -> Token:
        self.calls += 1
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        expires = None if self.lifetime_s is None else self.clock() + self.lifetime_s
        return Token(f"tok-{self.calls}", expires)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def endpoint(clock: FakeClock) -> FakeEndpoint:
    return FakeEndpoint(clock)


def make_cache(endpoint: FakeEndpoint, clock: FakeClock, **kwargs: Any) -> TokenCache:
    return TokenCache(endpoint.fetch, skew_s=10.0, clock=clock, **kwargs)


async def test_token_is_reused_until_skew_before_expiry(endpoint: FakeEndpoint, clock: FakeClock) -> None:
    cache = make_cache(endpoint, clock)
    assert await cache.get() == "tok-1"
    clock.now += 89.9  # expires at +100, skew 10
    assert await cache.get() == "tok-1"
    clock.now += 0.2
    assert await cache.get() == "tok-2"
    assert endpoint.calls == 2


async def test_token_without_expiry_lives_until_refresh(endpoint: FakeEndpoint, clock: FakeClock) -> None:
    endpoint.lifetime_s = None
    cache = make_cache(endpoint, clock)
    await cache.get()
    clock.now += 10**6
    assert await cache.get() == "tok-1"
    assert await cache.get(refresh=True) == "tok-2"


async def test_concurrent_callers_share_one_fetch(endpoint: FakeEndpoint, clock: FakeClock) -> None:
    endpoint.gate = asyncio.Event()
    cache = make_cache(endpoint, clock)
    waiters = [asyncio.ensure_future(cache.get()) for _ in range(1000)]
    await asyncio.sleep(0)
    endpoint.gate.set()
    assert set(await asyncio.gather(*waiters)) == {"tok-1"}
    assert endpoint.calls == 1


async def test_cancelled_waiter_does_not_cancel_the_fetch(endpoint: FakeEndpoint, clock: FakeClock) -> None:
    endpoint.gate = asyncio.Event()
    cache = make_cache(endpoint, clock)
    first = asyncio.ensure_future(cache.get())
    second = asyncio.ensure_future(cache.get())
    await asyncio.sleep(0)
    first.cancel()
    endpoint.gate.set()
    assert await second == "tok-1"
    with pytest.raises(asyncio.CancelledError):
        await first
    assert endpoint.calls == 1


async def test_refresh_with_stale_value_refreshes_once(endpoint: FakeEndpoint, clock: FakeClock) -> None:
    cache = make_cache(endpoint, clock)
    stale = await cache.get()
    assert await cache.get(refresh=True, stale=stale) == "tok-2"
    # A second 401 for a request that carried tok-1 must not discard tok-2.
    assert await cache.get(refresh=True, stale=stale) == "tok-2"
    assert endpoint.calls == 2


async def test_failure_backoff_grows_and_is_capped(endpoint: FakeEndpoint, clock: FakeClock) -> None:
    cache = make_cache(endpoint, clock, failure_backoff_s=1.0, max_failure_backoff_s=4.0)
    endpoint.error = AuthError("Zuora token endpoint failed (503)", retryable=True)
    for expected_delay in (1.0, 2.0, 4.0, 4.0):
        calls = endpoint.calls
        with pytest.raises(AuthError):
            await cache.get()
        assert endpoint.calls == calls + 1
        clock.now += expected_delay - 0.01
        with pytest.raises(AuthError) as again:
            await cache.get()
        assert again.value.retryable is True
        assert endpoint.calls == calls + 1, "no request while backing off"
        clock.now += 0.02


async def test_success_after_failure_resets_backoff(endpoint: FakeEndpoint, clock: FakeClock) -> None:
    cache = make_cache(endpoint, clock, failure_backoff_s=1.0)
    endpoint.error = AuthError("refused", retryable=False)
    with pytest.raises(AuthError):
        await cache.get()
    clock.now += 1.01
    endpoint.error = None
    assert await cache.get() == "tok-2"
    endpoint.error = AuthError("refused", retryable=False)
    with pytest.raises(AuthError):
        await cache.get(refresh=True)
    clock.now += 1.01  # first failure again: 1 s, not 2 s
    endpoint.error = None
    assert await cache.get() == "tok-4"


async def test_on_refresh_reports_success_and_failure(endpoint: FakeEndpoint, clock: FakeClock) -> None:
    seen: list[bool] = []
    cache = make_cache(endpoint, clock, on_refresh=seen.append)
    await cache.get()
    endpoint.error = AuthError("refused")
    with pytest.raises(AuthError):
        await cache.get(refresh=True)
    assert seen == [True, False]
