"""HTTP endpoints for the kubelet and Prometheus: /healthz, /readyz, /metrics."""

from __future__ import annotations

from collections.abc import Callable, Set
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.observability.metrics import Metrics


@dataclass(frozen=True, slots=True)
class Readiness:
    ready: bool
    reason: str


class EngineFacts(Protocol):
    """What readiness reads of the engine's progress (``bridge.kafka.stats.EngineStats`` has it)."""

    @property
    def broker_ok(self) -> bool: ...
    @property
    def publish_error(self) -> str | None: ...
    @property
    def restoring(self) -> int: ...
    @property
    def lag(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    @property
    def last_progress_at(self) -> float: ...
    @property
    def assigned(self) -> Set[object]: ...


def judge_readiness(stats: EngineFacts, now: float, stall_after_s: float) -> Readiness:
    """Pure: ready when connected and, whenever work is waiting, finishing commands.

    No assigned partitions is ready: with more replicas than partitions some have nothing to do.
    """
    if not stats.broker_ok:
        return Readiness(False, "not connected to the Kafka broker")
    if stats.publish_error is not None:
        return Readiness(
            False, f"cannot publish outcomes to the Kafka broker ({stats.publish_error}); retrying"
        )
    if stats.restoring:
        return Readiness(False, f"restoring the command ledger of {stats.restoring} partition(s)")
    waiting = max(stats.lag, stats.in_flight)
    idle_for = now - stats.last_progress_at
    if waiting > 0 and idle_for > stall_after_s:
        return Readiness(
            False,
            f"stalled: {waiting} command(s) waiting ({stats.in_flight} in flight) and none finished "
            f"for {idle_for:.0f}s; check provider latency, circuit state and broker health",
        )
    if not stats.assigned:
        return Readiness(True, "ok: no partitions assigned (nothing to do)")
    return Readiness(True, f"ok: {len(stats.assigned)} partition(s), {stats.in_flight} in flight")


def degraded(verdict: Readiness, troubles: list[str], *, parking: bool = False) -> Readiness:
    """Pure: a ready bridge with a target in trouble is ready and says so (its other targets flow):
    what happens to that target's commands, parked (``parking``) or answered at once."""
    if not verdict.ready or not troubles:
        return verdict
    fate = (
        "their commands are parked until the target is back (parking topic)"
        if parking
        else "their commands are answered at once (circuit_open / target_busy)"
    )
    return Readiness(
        True, f"{verdict.reason}; degraded: {', '.join(troubles)}: {fate}, the other targets flow"
    )


def build_health_app(metrics: Metrics, readiness: Callable[[], Readiness]) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "alive"})

    async def readyz(_: web.Request) -> web.Response:
        verdict = readiness()
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
