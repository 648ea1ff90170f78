"""Ask the cluster for metadata now and then: ``getmany()`` stays silent when the broker is gone."""

from __future__ import annotations

import asyncio
import logging

from aiokafka.errors import KafkaError

from bridge.kafka.ports import ConsumerPort
from bridge.kafka.stats import EngineStats

log = logging.getLogger("bridge.engine")
BROKER_PROBE_INTERVAL_S = 5.0
BROKER_PROBE_TIMEOUT_S = 5.0


async def probe_broker(
    consumer: ConsumerPort, stats: EngineStats, interval_s: float = BROKER_PROBE_INTERVAL_S
) -> None:
    """Runs until cancelled; keeps ``stats.broker_ok`` current and logs each change."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            async with asyncio.timeout(BROKER_PROBE_TIMEOUT_S):  # not wait_for: see bridge/waits.py
                await consumer.topics()
        except (KafkaError, OSError, TimeoutError) as exc:
            if stats.broker_ok:
                log.warning("the Kafka broker does not answer (%s)", type(exc).__name__)
            stats.broker_ok = False
        else:
            if not stats.broker_ok:
                log.info("the Kafka broker answers again")
            stats.broker_ok = True
