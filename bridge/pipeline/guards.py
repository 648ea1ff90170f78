"""Per-target protection: a token-bucket rate limit and a circuit breaker. Clock-driven, no I/O."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from enum import StrEnum

from bridge.config.targets import CircuitSettings, RateLimitSettings

Clock = Callable[[], float]
PROBE_OUT_S = 0.05  # what ``wait_s`` says once only the probe's answer (``news``) can let a call go


class TokenBucket:
    """``reserve()`` takes a token and returns how long the caller must wait before using it."""

    def __init__(self, settings: RateLimitSettings, clock: Clock = time.monotonic) -> None:
        self._rate = settings.rate_per_s
        self._burst = float(settings.burst)
        self._tokens = self._burst
        self._clock = clock
        self._updated = clock()

    def reserve(self) -> float:
        if self._rate is None:
            return 0.0
        self._refill()
        self._tokens -= 1.0
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    def free_in(self) -> float:
        """0 when a token is free now without borrowing one, else the seconds until one is.

        Commands ``reserve`` (and may borrow ahead); status polls only ``take`` a free token, so
        whenever commands wait for tokens, polls wait behind them."""
        if self._rate is None:
            return 0.0
        self._refill()
        return 0.0 if self._tokens >= 1.0 else (1.0 - self._tokens) / self._rate

    def take(self) -> None:
        """Use the token ``free_in`` found free."""
        if self._rate is not None:
            self._tokens -= 1.0

    def _refill(self) -> None:
        now = self._clock()
        assert self._rate is not None
        self._tokens = min(self._burst, self._tokens + (now - self._updated) * self._rate)
        self._updated = now


class CircuitState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


CIRCUIT_GAUGE_VALUE = {CircuitState.CLOSED: 0, CircuitState.HALF_OPEN: 1, CircuitState.OPEN: 2}


class CircuitBreaker:
    """Opens after ``failure_threshold`` consecutive failures; after ``open_s`` lets one probe through."""

    def __init__(
        self,
        settings: CircuitSettings,
        clock: Clock = time.monotonic,
        on_change: Callable[[CircuitState], None] | None = None,
    ) -> None:
        self._settings = settings
        self._clock = clock
        self._on_change = on_change
        self._failures = 0
        self._opened_at = 0.0
        self._probing = False
        self.state = CircuitState.CLOSED
        self.held = 0
        self._succeeded_at: float | None = None
        self._news: list[Callable[[], None]] = []
        self._next_news: asyncio.Future[None] | None = None

    def listen(self, news: Callable[[], None]) -> None:
        """Call ``news()`` after every success and every change of state: parked work waits for these
        instead of asking again and again (bridge/parking/recovery.py)."""
        self._news.append(news)

    def news(self) -> asyncio.Future[None]:
        """Done at the next success or change of state: a command held while the probe's call is
        under way waits on it (the probe's answer), not on a timer."""
        if self._next_news is None:
            self._next_news = asyncio.get_running_loop().create_future()
        return self._next_news

    def wait_s(self) -> float:
        """0 when a call may go now, else the seconds until it is worth asking again."""
        if self.state is CircuitState.CLOSED:
            return 0.0
        remaining = self._opened_at + self._settings.open_s - self._clock()
        if self.state is CircuitState.OPEN and remaining <= 0:
            self._set(CircuitState.HALF_OPEN)
        if self.state is CircuitState.HALF_OPEN and not self._probing:
            self._probing = True
            return 0.0
        return max(remaining, PROBE_OUT_S)

    def refusing(self) -> bool:
        """Open and not yet due for its probe (no side effect, unlike ``wait_s``)."""
        return self.state is CircuitState.OPEN and self._opened_at + self._settings.open_s > self._clock()

    def lets_probe(self) -> bool:
        """Whether the next call would go through as the probe of an open circuit (no side effect)."""
        if self.state is CircuitState.OPEN:
            return not self.refusing()
        return self.state is CircuitState.HALF_OPEN and not self._probing

    def open_for(self) -> float:
        """Seconds since it opened (0 when it is not open)."""
        return self._clock() - self._opened_at if self.state is CircuitState.OPEN else 0.0

    def probe_now(self) -> None:
        """Half-open before ``open_s`` is over: the next call is the probe (parked work probes a down
        target every ``parking.probe_s``, bridge/parking/recovery.py)."""
        if self.state is CircuitState.OPEN:
            self._probing = False
            self._set(CircuitState.HALF_OPEN)

    def since_success(self) -> float | None:
        """Seconds since the target last answered a call well, or None if it never did here."""
        return None if self._succeeded_at is None else self._clock() - self._succeeded_at

    def record_success(self) -> None:
        self._succeeded_at = self._clock()
        self._failures = 0
        self._probing = False
        if self.state is not CircuitState.CLOSED:
            self._set(CircuitState.CLOSED)
        else:
            self._tell()

    def record_failure(self) -> None:
        self._failures += 1
        if self.state is CircuitState.HALF_OPEN or (
            self.state is CircuitState.CLOSED and self._failures >= self._settings.failure_threshold
        ):
            self.trip()

    def trip(self) -> None:
        """Open now (the target stopped answering); an open circuit stays as it is."""
        if self.state is not CircuitState.OPEN:
            self._probing = False
            self._opened_at = self._clock()
            self._set(CircuitState.OPEN)

    def release_probe(self) -> None:
        """A probe ended without telling us anything about the provider (e.g. a 4xx)."""
        self._probing = False
        self._tell()  # the next call may be the probe

    def _set(self, state: CircuitState) -> None:
        self.state = state
        if self._on_change:
            self._on_change(state)
        self._tell()

    def _tell(self) -> None:
        future, self._next_news = self._next_news, None
        if future is not None and not future.done():
            future.set_result(None)
        for news in self._news:
            news()
