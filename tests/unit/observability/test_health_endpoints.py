"""``/healthz``, ``/readyz`` and ``/metrics`` over real loopback HTTP, and the readiness rules.

The kubelet reads only the status code; an operator reads the JSON ``reason``. The rules are
checked in their order of precedence: broker, publishing, stall, then the happy cases.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter

from bridge.kafka.stats import EngineStats
from bridge.observability.health import Readiness, build_health_app, judge_readiness
from bridge.observability.metrics import Metrics

STALL_AFTER_S = 60.0


def stats(**changes: object) -> EngineStats:
    base: dict[str, object] = {
        "broker_ok": True,
        "last_progress_at": 1000.0,
        "assigned": frozenset({("t", 0), ("t", 1)}),
    }
    return EngineStats(**{**base, **changes})  # type: ignore[arg-type]


def judge(now: float = 1000.0, **changes: object) -> Readiness:
    return judge_readiness(stats(**changes), now, STALL_AFTER_S)


# -- readiness rules -----------------------------------------------------------------------------------


def test_the_broker_being_down_wins_over_everything_else():
    verdict = judge(now=5000.0, broker_ok=False, publish_error="x", lag=10)
    assert verdict == Readiness(False, "not connected to the Kafka broker")


def test_failing_publishes_name_the_error_and_say_it_is_retried():
    verdict = judge(now=5000.0, publish_error="KafkaTimeoutError", lag=10)
    assert verdict == Readiness(
        False, "cannot publish outcomes to the Kafka broker (KafkaTimeoutError); retrying"
    )


def test_lag_alone_counts_as_waiting_work():
    verdict = judge(now=1061.0, lag=5, in_flight=0)
    assert not verdict.ready and "5 command(s) waiting (0 in flight)" in verdict.reason


def test_in_flight_alone_counts_as_waiting_work():
    verdict = judge(now=1061.0, lag=0, in_flight=3)
    assert not verdict.ready and "3 command(s) waiting (3 in flight)" in verdict.reason


def test_waiting_counts_the_larger_of_lag_and_in_flight_not_their_sum():
    assert "7 command(s) waiting" in judge(now=1061.0, lag=7, in_flight=4).reason


def test_a_stall_reason_says_what_to_check():
    reason = judge(now=1090.0, lag=1).reason
    assert reason.startswith("stalled: ") and "for 90s" in reason
    assert "provider latency, circuit state and broker health" in reason


def test_idle_for_exactly_the_stall_limit_is_still_ready():
    assert judge(now=1000.0 + STALL_AFTER_S, lag=1).ready


def test_a_stalled_consumer_with_no_partitions_is_still_a_stall():
    # waiting work without progress is a stall whatever the assignment says
    assert not judge(now=2000.0, lag=3, assigned=frozenset()).ready


def test_ready_reason_counts_partitions_and_in_flight():
    assert judge(in_flight=2) == Readiness(True, "ok: 2 partition(s), 2 in flight")


def test_no_partitions_is_ready_with_nothing_to_do():
    assert judge(now=9999.0, assigned=frozenset()) == Readiness(
        True, "ok: no partitions assigned (nothing to do)"
    )


# -- the endpoints -------------------------------------------------------------------------------------


class Switch:
    """The readiness the app asks for on every request."""

    def __init__(self) -> None:
        self.verdict = Readiness(True, "ok: 1 partition(s), 0 in flight")
        self.calls = 0

    def __call__(self) -> Readiness:
        self.calls += 1
        return self.verdict


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics(registry)


@pytest.fixture
def readiness() -> Switch:
    return Switch()


@pytest.fixture
async def client(metrics: Metrics, readiness: Switch) -> AsyncIterator[TestClient]:
    server = TestServer(build_health_app(metrics, readiness), host="127.0.0.1")
    async with TestClient(server) as running:
        yield running


async def test_healthz_says_alive_whatever_the_readiness(client: TestClient, readiness: Switch):
    readiness.verdict = Readiness(False, "not connected to the Kafka broker")
    response = await client.get("/healthz")
    assert response.status == 200 and await response.json() == {"status": "alive"}
    assert readiness.calls == 0


async def test_readyz_is_200_with_the_reason_when_ready(client: TestClient):
    response = await client.get("/readyz")
    assert response.status == 200
    assert await response.json() == {"ready": True, "reason": "ok: 1 partition(s), 0 in flight"}


async def test_readyz_is_503_with_the_reason_when_not_ready(client: TestClient, readiness: Switch):
    readiness.verdict = Readiness(False, "stalled: 4 command(s) waiting")
    response = await client.get("/readyz")
    assert response.status == 503
    assert await response.json() == {"ready": False, "reason": "stalled: 4 command(s) waiting"}


async def test_readyz_judges_afresh_on_every_request(client: TestClient, readiness: Switch):
    statuses = []
    for verdict in (Readiness(True, "a"), Readiness(False, "b"), Readiness(True, "c")):
        readiness.verdict = verdict
        statuses.append((await client.get("/readyz")).status)
    assert statuses == [200, 503, 200] and readiness.calls == 3


async def test_metrics_are_prometheus_text_from_the_bridge_registry(client: TestClient, metrics: Metrics):
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
    text = await response.text()
    assert "bridge_build_info" in text and "bridge_ready" in text


async def test_metrics_are_read_at_request_time(client: TestClient, registry: CollectorRegistry):
    probe = Counter("probe_events_total", "counted after the app was built", registry=registry)
    probe.inc(3)
    assert "probe_events_total 3.0" in await (await client.get("/metrics")).text()


@pytest.mark.parametrize(("method", "path"), [("POST", "/readyz"), ("GET", "/"), ("GET", "/metrics/extra")])
async def test_nothing_else_is_served(client: TestClient, method: str, path: str):
    response = await client.request(method, path)
    assert response.status in (404, 405)
