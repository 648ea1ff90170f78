"""Ask the cluster for metadata every second: ``getmany()`` stays silent when the broker is gone.

Readiness follows the answer (``stats.broker_ok``) within a second or two both ways. An outage logs
one line when it starts, a reminder at most once a minute while it lasts (how long, how many probes
failed, which repeated log lines were held back: bridge/observability/repeats.py) and one line when
it ends; outside outages, held-back repeats are reported once a minute.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError

from bridge.kafka.clients import settle_before_cancel
from bridge.kafka.ports import ConsumerPort
from bridge.kafka.stats import EngineStats
from bridge.observability.repeats import Key, describe, drain_installed

log = logging.getLogger("bridge.engine")
BROKER_PROBE_INTERVAL_S = 1.0
BROKER_PROBE_TIMEOUT_S = 1.5
REMIND_S = 60.0


class BrokerWatch:
    """The broker's state as the probes see it, and the few lines an outage is worth. No I/O."""

    def __init__(
        self,
        stats: EngineStats,
        drain: Callable[[], dict[Key, int]] = drain_installed,
        clock: Callable[[], float] = time.monotonic,
        remind_s: float = REMIND_S,
    ) -> None:
        self._stats = stats
        self._drain = drain
        self._clock = clock
        self._remind_s = remind_s
        self._down_since: float | None = None
        self._failed = 0
        self._next_report = clock() + remind_s

    def probed(self, error: str | None) -> None:
        """One probe's result: None when the broker answered, else why not."""
        now = self._clock()
        if error is not None:
            self._failed += 1
            if self._down_since is None:
                self._down_since, self._next_report = now, now + self._remind_s
                log.warning(
                    "Kafka broker outage: the broker does not answer (%s); NOT ready until it does",
                    error,
                    extra={"broker": "down"},
                )
            elif now >= self._next_report:
                self._next_report = now + self._remind_s
                log.warning(
                    "Kafka broker outage goes on: no answer for %.0fs (%d probe(s) failed, last: %s); %s",
                    now - self._down_since,
                    self._failed,
                    error,
                    self._held_back(),
                    extra={"broker": "down", "outage_s": round(now - self._down_since, 1)},
                )
        elif self._down_since is not None:
            lasted = now - self._down_since
            log.info(
                "Kafka broker outage over: it answers again after %.1fs (%d probe(s) failed); %s",
                lasted,
                self._failed,
                self._held_back(),
                extra={"broker": "up", "outage_s": round(lasted, 1)},
            )
            self._down_since, self._failed, self._next_report = None, 0, now + self._remind_s
        elif now >= self._next_report:
            self._next_report = now + self._remind_s
            counts = self._drain()
            if counts:
                log.warning("in the last minute: %s", describe(counts))
        self._stats.broker_ok = self._down_since is None

    def _held_back(self) -> str:
        counts = self._drain()
        return describe(counts) if counts else "no repeated log line held back"


async def probe_broker(
    consumer: ConsumerPort, stats: EngineStats, interval_s: float = BROKER_PROBE_INTERVAL_S
) -> None:
    """Runs until cancelled; keeps ``stats.broker_ok`` current and logs an outage's start and end.

    A probe that outlasts ``BROKER_PROBE_TIMEOUT_S`` counts as failed but is not cut short, and the
    next probe waits for its answer: a metadata request cancelled while it connects leaks its socket
    (see :func:`bridge.kafka.clients.settle_before_cancel`, which also lets a stop wait for it)."""
    watch = BrokerWatch(stats)
    asking: asyncio.Future[object] | None = None
    try:
        while True:
            await asyncio.sleep(interval_s)
            asking = asking or asyncio.ensure_future(settle_before_cancel(consumer.topics()))
            done, _ = await asyncio.wait([asking], timeout=BROKER_PROBE_TIMEOUT_S)
            if not done:
                watch.probed(TimeoutError.__name__)
                continue
            answered, asking = asking, None
            error = answered.exception()
            if error is not None and not isinstance(error, KafkaError | OSError):
                raise error
            watch.probed(None if error is None else type(error).__name__)
    finally:
        if asking is not None:
            asking.cancel()
            await asyncio.gather(asking, return_exceptions=True)
