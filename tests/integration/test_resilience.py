"""Failure semantics against the real broker and the sandbox's fault injection."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import orjson
import pytest

from bridge.sandbox import workfloo as workfloo_sandbox
from bridge.sandbox import zilliant as zilliant_sandbox
from bridge.sandbox import zuora as zuora_sandbox
from bridge.sandbox.zuora_runs import ZUORA_SEEDED_INSTANCE
from tests.integration.conftest import Stack, by_command, workfloo_command, zuora_command

pytestmark = pytest.mark.integration


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def test_retries_reuse_the_idempotency_key_and_never_block_other_keys(stack: Stack) -> None:
    stack.configure(
        targets={
            zuora_sandbox.LOCAL_TARGET: {
                "retry": {
                    "max_attempts": 5,
                    "base_backoff_s": 0.05,
                    "max_backoff_s": 0.1,
                    "max_retry_after_s": 5,
                }
            }
        }
    )
    # first a 429 asking for 2 s, then two 503s, then success
    await stack.fault(
        "zuora",
        {"rate_limit_next": {"count": 1, "retry_after": "2"}, "fail_next": {"count": 2, "status": 503}},
    )
    slow, fast = uid("retried"), uid("other-key")
    await stack.send((b"key-a", zuora_command(slow)), (b"key-b", workfloo_command(fast)))
    await stack.start_bridge()
    events = await stack.collect(2)
    outcomes = by_command(events)
    assert (outcomes[slow]["status"], outcomes[slow]["attempts"]) == ("queued", 4)
    assert outcomes[fast]["status"] == "queued"
    assert [e["data"]["command_id"] for e in events] == [fast, slow]  # the retrying key blocked nobody
    runs = [r for r in await stack.requests("zuora") if r["path"].endswith("/run")]
    assert [r["status"] for r in runs] == [429, 503, 503, 200]
    assert len({r["headers"]["idempotency-key"] for r in runs}) == 1  # one key for every attempt


async def warm_up(stack: Stack) -> None:
    """Start a bridge and wait until it has joined the group and answered one command."""
    await stack.start_bridge()
    await stack.send((b"warm-up", workfloo_command(uid("warm-up"))))
    assert len(await stack.collect(1)) == 1


@pytest.mark.parametrize("form", ["seconds", "http-date"])
async def test_retry_after_is_honoured_in_both_forms(stack: Stack, form: str) -> None:
    stack.configure(
        targets={workfloo_sandbox.LOCAL_TARGET: {"retry": {"max_attempts": 3, "max_retry_after_s": 10}}}
    )
    await warm_up(stack)
    # HTTP-dates have whole seconds: 3 s ahead leaves at least 2 s after truncation
    when = (
        "2" if form == "seconds" else format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    )
    await stack.fault("workfloo", {"rate_limit_next": {"count": 1, "retry_after": when}})
    await stack.send((b"k", workfloo_command(uid("retry-after"))))
    [event] = await stack.collect(1)
    data = event["data"]
    assert data["status"] == "queued" and data["attempts"] == 2
    assert data["duration_ms"] >= 1500  # waited for the Retry-After, not a short backoff


async def test_final_4xx_is_not_retried_and_5xx_exhausts_to_error(stack: Stack) -> None:
    stack.configure(
        targets={
            zuora_sandbox.LOCAL_TARGET: {
                "retry": {"max_attempts": 3, "base_backoff_s": 0.01, "max_backoff_s": 0.02}
            }
        }
    )
    await stack.start_bridge()
    rejected, failed = uid("instance-409"), uid("always-500")
    await stack.send((b"a", {**zuora_command(rejected), "workflow_id": ZUORA_SEEDED_INSTANCE}))
    [first] = await stack.collect(1)
    await stack.fault("zuora", {"fail_next": {"count": 10, "status": 500}})
    await stack.send((b"b", zuora_command(failed)))
    [second] = await stack.collect(1)
    assert (first["data"]["status"], first["data"]["attempts"]) == ("rejected", 1)
    assert first["data"]["error"]["kind"] == "provider_rejected"
    err = second["data"]
    assert (err["status"], err["attempts"], err["http_status"]) == ("error", 3, 500)
    assert err["error"]["kind"] == "provider_error" and err["error"]["retryable"] is True


async def test_scope_conflict_policy_retry_waits_for_the_scope(stack: Stack) -> None:
    stack.configure(
        targets={
            zilliant_sandbox.LOCAL_TARGET: {
                "conflict": {"policy": "retry", "retry_deadline_s": 20},
                "retry": {"base_backoff_s": 0.2, "max_backoff_s": 0.5},
            }
        }
    )
    await stack.start_bridge()
    first, second = uid("scope-first"), uid("scope-second")
    job = {
        "target": zilliant_sandbox.LOCAL_TARGET,
        "operation": "zilliant.queue_job",
        "automation_id": "A",
        "scope": "s1",
    }
    await stack.send((b"k1", {**job, "id": first}))
    await stack.send((b"k2", {**job, "id": second}))
    outcomes = by_command(await stack.collect(2, within_s=40))
    assert outcomes[first]["status"] == "queued"
    assert outcomes[second]["status"] == "queued"
    assert outcomes[second]["attempts"] > 1  # it met the busy scope and waited it out


async def test_expired_commands_are_not_executed(stack: Stack) -> None:
    stack.configure(targets={workfloo_sandbox.LOCAL_TARGET: {"max_age_s": 60}})
    await stack.start_bridge()
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    expired_abs, expired_ttl, too_old, fresh = uid("abs"), uid("ttl"), uid("old"), uid("fresh")
    await stack.send((b"a", {**workfloo_command(expired_abs), "expires_at": past}))
    await stack.send((b"b", {**workfloo_command(fresh), "ttl_s": 3600}))
    old_ms = int((time.time() - 7200) * 1000)
    await stack.send((b"c", {**workfloo_command(expired_ttl), "ttl_s": 60}), timestamp_ms=old_ms)
    await stack.send((b"d", workfloo_command(too_old)), timestamp_ms=old_ms)  # beyond the target's max_age_s
    outcomes = by_command(await stack.collect(4))
    for command_id in (expired_abs, expired_ttl, too_old):
        assert outcomes[command_id]["status"] == "rejected"
        assert outcomes[command_id]["error"]["kind"] == "expired"
        assert outcomes[command_id]["attempts"] == 0
    assert outcomes[fresh]["status"] == "queued"
    assert len(await stack.requests("workfloo")) == 1  # only the fresh one reached the provider


async def test_circuit_opens_for_the_failing_target_only(stack: Stack) -> None:
    stack.configure(
        parking={"enabled": False},  # the circuit's own fail_fast answer; parking: test_parking.py
        targets={
            zuora_sandbox.LOCAL_TARGET: {
                "retry": {"max_attempts": 1},
                "circuit": {"failure_threshold": 3, "open_s": 30, "mode": "fail_fast"},
            }
        },
    )
    await stack.fault("zuora", {"error_rate": 1.0, "error_status": 503})
    bridge = await stack.start_bridge()
    broken = [(b"z", zuora_command(uid(f"broken-{i}"))) for i in range(6)]
    healthy = [(f"w{i}".encode(), workfloo_command(uid(f"healthy-{i}"))) for i in range(3)]
    await stack.send(*broken)
    await stack.send(*healthy)
    outcomes = by_command(await stack.collect(9))
    zuora = [outcomes[d["id"]] for _, d in broken]
    assert [o["error"]["kind"] for o in zuora] == ["provider_error"] * 3 + ["circuit_open"] * 3
    assert all(o["attempts"] == 0 for o in zuora[3:])  # failed fast, no call
    assert len([r for r in await stack.requests("zuora") if r["path"].endswith("/run")]) == 3
    assert {outcomes[d["id"]]["status"] for _, d in healthy} == {"queued"}

    def state(target: str) -> float | None:
        return bridge.metrics.registry.get_sample_value("bridge_circuit_state", {"target": target})

    assert state(zuora_sandbox.LOCAL_TARGET) == 2 and state(workfloo_sandbox.LOCAL_TARGET) == 0


async def test_wrong_credentials_are_an_auth_error_that_leaks_nothing(stack: Stack) -> None:
    secret = "wrong-secret-that-must-not-leak"
    settings = stack.configure()
    from bridge.local.stack import local_settings

    settings = local_settings(
        stack.broker.bootstrap,
        stack.sandbox.url,
        overrides={
            "topics": settings.topics.model_dump(),
            "kafka": {
                "group_id": settings.kafka.group_id,
                "enable_idempotence": settings.kafka.enable_idempotence,
            },
        },
        environ={"SANDBOX_ZUORA_CLIENT_SECRET": secret},
    )
    bridge = await stack.start_bridge(settings)
    await stack.send((b"a", zuora_command(uid("auth-1"))), (b"b", zuora_command(uid("auth-2"))))
    events = await stack.collect(2)
    for data in by_command(events).values():
        assert (data["status"], data["error"]["kind"], data["error"]["retryable"]) == ("error", "auth", False)
        assert "refused" in data["error"]["message"]
    assert secret not in orjson.dumps(events).decode()
    from prometheus_client import generate_latest

    assert secret.encode() not in generate_latest(bridge.metrics.registry)
    tokens = await stack.requests("zuora-token")
    assert 1 <= len(tokens) <= 2  # refused credentials back off; not one token call per command


async def test_random_poison_gets_exactly_one_result_each(stack: Stack) -> None:
    rng = random.Random(20261123)
    good_ids = []
    messages: list[tuple[bytes, bytes]] = []
    for i in range(120):
        kind = rng.choice(["bytes", "json", "command", "good"])
        if kind == "bytes":
            value = rng.randbytes(rng.randint(1, 60))
        elif kind == "json":
            value = orjson.dumps(rng.choice([[1, 2], "x", 3.5, None, {"a": {"b": []}}, {"id": i}]))
        elif kind == "command":
            doc = (
                zuora_command(f"bad-{i}", parameters={"id": 1})
                if i % 2
                else workfloo_command(f"bad-{i}", target="../x")
            )
            value = orjson.dumps(doc)
        else:
            good_ids.append(f"good-{i}")
            value = orjson.dumps(workfloo_command(f"good-{i}"))
        messages.append((f"k{i % 7}".encode(), value))
    await stack.send(*messages, topic=stack.settings.topics.run_commands)
    await stack.start_bridge()
    events = await stack.collect(len(messages), within_s=30)
    assert await stack.collect(1, within_s=2) == []  # and nothing more
    sources = set()
    for e in events:
        if isinstance(e, dict):
            sources.add((e["data"]["source"]["partition"], e["data"]["source"]["offset"]))
        else:
            headers = dict(e.headers)
            sources.add((int(headers["dlq.source.partition"]), int(headers["dlq.source.offset"])))
    assert len(events) == len(messages) and len(sources) == len(messages)
    outcomes = by_command(events)
    assert all(outcomes[g]["status"] == "queued" for g in good_ids)


async def test_rate_limit_spaces_calls_to_one_target(stack: Stack) -> None:
    stack.configure(targets={workfloo_sandbox.LOCAL_TARGET: {"rate_limit": {"rate_per_s": 4, "burst": 1}}})
    await warm_up(stack)  # spends the one burst token
    commands = [(f"r{i}".encode(), workfloo_command(uid(f"rate-{i}"))) for i in range(4)]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await stack.send(*commands)
    outcomes = by_command(await stack.collect(4))
    assert {o["status"] for o in outcomes.values()} == {"queued"}
    assert loop.time() - started >= 0.9  # 4 calls at 4/s after the burst: at least ~1 s, however fast


async def test_open_circuit_in_hold_mode_waits_for_the_probe_then_recovers(stack: Stack) -> None:
    stack.configure(
        parking={"enabled": False},  # the circuit's own hold mode; with parking they park (test_parking.py)
        targets={
            zuora_sandbox.LOCAL_TARGET: {
                "retry": {"max_attempts": 1},
                "circuit": {"failure_threshold": 2, "open_s": 2, "mode": "hold"},
            }
        },
    )
    await stack.fault("zuora", {"fail_next": {"count": 2, "status": 500}})
    await stack.start_bridge()
    failing = [(b"z", zuora_command(uid(f"fail-{i}"))) for i in range(2)]
    held = [(f"h{i}".encode(), zuora_command(uid(f"held-{i}"))) for i in range(3)]
    await stack.send(*failing)
    first = by_command(await stack.collect(2))
    assert [first[d["id"]]["error"]["kind"] for _, d in failing] == ["provider_error"] * 2  # circuit now open
    await stack.send(*held)
    later = by_command(await stack.collect(3))
    assert {later[d["id"]]["status"] for _, d in held} == {
        "queued"
    }  # held, probed after open_s, then let through
    assert all(later[d["id"]]["duration_ms"] >= 1000 for _, d in held)  # they waited for the circuit
