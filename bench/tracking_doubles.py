"""The stand-ins the tracking benchmarks share (bench.tracking, bench.tracking_restore): a producer that
only counts, a transport whose every status read finds the run still Processing, the real tracker wired
to both, and the process's RSS from /proc."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import orjson

from bridge.app import build_targets
from bridge.config.settings import Settings
from bridge.http import Call, Response
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor
from bridge.sandbox import zuora as zuora_sandbox
from bridge.tracking.tracker import Tracker

PROCESSING = orjson.dumps({"id": 1, "status": "Processing", "tasks": {"processing": 1, "total": 3}})


def status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class CountingProducer:
    """Acknowledges at once and keeps only counts (a list of 200,000 records would be our RSS)."""

    def __init__(self) -> None:
        self.sent: dict[str, int] = {}

    async def send(
        self,
        topic: str,
        *,
        value: bytes | None,
        key: bytes | None,
        headers: Any,
        partition: int | None = None,
    ) -> asyncio.Future[None]:
        self.sent[topic] = self.sent.get(topic, 0) + 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future


class CountingTransport:
    """Every status read finds the run still Processing; ``times`` are the reads' arrival times."""

    def __init__(self) -> None:
        self.times: list[float] = []

    async def __call__(self, call: Call) -> Response:
        self.times.append(time.monotonic())
        return Response(200, {"Content-Type": "application/json"}, PROCESSING)


def counting_tracker(
    settings: Settings,
    session: aiohttp.ClientSession,
    transport: CountingTransport,
    producer: CountingProducer,
) -> Tracker:
    """The real tracker; its reads go to ``transport`` (with a fixed token), its writes to ``producer``."""
    metrics = Metrics()
    targets = build_targets(settings, session, metrics)

    async def token(**_: object) -> dict[str, str]:
        return {"Authorization": "Bearer bench"}

    targets[zuora_sandbox.LOCAL_TARGET].provider.auth_headers = token  # type: ignore[method-assign]
    executor = Executor(transport, metrics, Redactor(), 2048)
    return Tracker(settings, targets, executor, producer, metrics, Redactor())
