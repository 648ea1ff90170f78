"""HTTP endpoints for the kubelet and Prometheus: /healthz, /readyz, /metrics."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.engine import EngineStats
from bridge.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str


def judge_readiness(stats: EngineStats, lag: int, now: float, stall_after_s: float) -> Readiness:
    """Pure: ready when connected, assigned (or idle), and making progress whenever there is lag."""
    if not stats.broker_ok:
        return Readiness(False, "not connected to the Kafka broker")
    if lag > 0 and now - stats.last_progress_at > stall_after_s:
        return Readiness(
            False,
            f"stalled: {lag} record(s) waiting and no command finished for "
            f"{now - stats.last_progress_at:.0f}s",
        )
    return Readiness(True, "ok")


def build_health_app(metrics: Metrics, readiness: Callable[[], Readiness]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        verdict = readiness()
        metrics.ready.set(1 if verdict.ready else 0)
        return web.json_response(
            {"ready": verdict.ready, "reason": verdict.reason}, status=200 if verdict.ready else 503
        )

    async def metrics_view(_: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(metrics.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics_view)
    return app


def monotonic() -> float:
    return time.monotonic()
