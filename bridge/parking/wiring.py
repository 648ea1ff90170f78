"""Putting parking together with the rest: one partition state for the ledger and the parked set, and
the replay routines (one per command topic), started and stopped with the bridge."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiokafka import TopicPartition

from bridge.config.settings import Settings
from bridge.kafka.ports import ProducerPort
from bridge.kafka.publisher import Publisher
from bridge.kafka.restores import PartitionState
from bridge.observability.metrics import Metrics
from bridge.parking.replay import Handler, Home, Replayer
from bridge.parking.state import Parking

log = logging.getLogger("bridge.parking")


class States:
    """Several partition states restored and forgotten together (the ledger and the parked set)."""

    def __init__(self, *states: PartitionState) -> None:
        self._states = states

    async def restore(self, tps: list[TopicPartition]) -> None:
        await asyncio.gather(*(state.restore(tps) for state in self._states))

    def forget(self, tps: list[TopicPartition]) -> None:
        for state in self._states:
            state.forget(tps)


def partition_state(*states: PartitionState | None) -> PartitionState | None:
    present = [state for state in states if state is not None]
    return None if not present else present[0] if len(present) == 1 else States(*present)


@contextlib.asynccontextmanager
async def replaying(
    settings: Settings,
    parking: Parking | None,
    handler: Handler,
    producer: ProducerPort,
    metrics: Metrics,
    home: Home,
) -> AsyncIterator[None]:
    """Run the replay routines while the block runs (none when parking is off)."""
    tasks = []
    if parking is not None:
        publisher = Publisher(producer, metrics, settings.engine.publish_retry_backoff_s)
        for topic in (settings.topics.run_commands, settings.topics.control_commands):
            replayer = Replayer(
                settings.kafka,
                topic,
                parking,
                handler,
                publisher,
                home,
                max_held=settings.parking.max_held,
                mark_answered=not settings.ledger.enabled,  # the ledger absorbs a second replay itself
            )
            tasks.append(asyncio.create_task(replayer.run(), name=f"replay:{topic}"))
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                log.error("parked-command replay crashed", exc_info=result)
