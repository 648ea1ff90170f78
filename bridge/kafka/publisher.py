"""Publish one outcome or dead letter until the broker acknowledges it, and count it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from aiokafka.errors import KafkaError

from bridge.kafka.fence import check_owner
from bridge.kafka.ports import ProducerPort
from bridge.messages.records import Outgoing
from bridge.observability import tracing
from bridge.observability.metrics import Metrics
from bridge.observability.repeats import COLLAPSE

log = logging.getLogger("bridge.engine")


class Publisher:
    """A failing broker is retried every ``retry_backoff_s``, never skipped: nothing is committed
    past an unpublished outcome, so waiting here is what keeps the delivery guarantee."""

    def __init__(
        self,
        producer: ProducerPort,
        metrics: Metrics,
        retry_backoff_s: float,
        on_error: Callable[[str | None], None] = lambda _: None,
    ) -> None:
        self._producer = producer
        self._metrics = metrics
        self._backoff_s = retry_backoff_s
        self._on_error = on_error  # the last failure, or None once a publish succeeds again

    @tracing.traced_publish
    async def publish(self, outgoing: Outgoing) -> None:
        check_owner()  # nothing is written for a partition this member lost (bridge/kafka/fence.py)
        while True:
            try:
                future = await self._producer.send(
                    outgoing.topic,
                    value=sendable_value(outgoing),
                    key=outgoing.key,
                    headers=outgoing.headers,
                    partition=outgoing.partition,
                )
                await future
            except KafkaError as exc:
                self._on_error(f"{type(exc).__name__}: {exc}"[:200])
                self._metrics.publish_failed()
                log.warning("publish to %s failed, will retry: %s", outgoing.topic, exc, extra=COLLAPSE)
                await asyncio.sleep(self._backoff_s)
                continue
            self._on_error(None)
            count_published(self._metrics, outgoing)
            return


def count_published(metrics: Metrics, outgoing: Outgoing) -> None:
    if outgoing.outcome is not None:
        metrics.outcome(*outgoing.labels)
    elif outgoing.dead_letter is not None:
        metrics.dead_letter(outgoing.dead_letter.reason.value)


def sendable_value(outgoing: Outgoing) -> bytes | None:
    """Kafka clients refuse a record with neither key nor value; an empty value then stands for
    "no value" (a dead letter whose value was omitted, or could not be read, from an unkeyed record)."""
    if outgoing.value is None and outgoing.key is None:
        return b""
    return outgoing.value
