"""The real bridge against a real broker and the sandbox providers over real sockets."""

from __future__ import annotations

import asyncio
import uuid

import aiohttp
import pytest

from bridge.local import examples
from bridge.sandbox import eightbyeight as eightbyeight_sandbox
from bridge.sandbox import workfloo as workfloo_sandbox
from bridge.sandbox.eightbyeight import EIGHTBYEIGHT_ACCOUNT, EIGHTBYEIGHT_API_KEY, EIGHTBYEIGHT_DEFINITION
from bridge.sandbox.workfloo import WORKFLOO_DEFINITION_WITH_LINKS, WORKFLOO_SCENARIO
from tests.integration.conftest import Stack, by_command, zuora_command

pytestmark = pytest.mark.integration


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def test_every_operation_reaches_its_outcome(stack: Stack) -> None:
    await stack.start_bridge()
    commands = examples.example_commands(uid("e2e"))
    await stack.send(*commands)
    await stack.send((b"junk", examples.NOT_A_COMMAND), topic=stack.settings.topics.run_commands)

    events = await stack.collect(len(commands) + 1)
    outcomes = by_command(events)
    dead = [e for e in events if not isinstance(e, dict)]
    assert len(outcomes) == len(commands) and len(dead) == 1

    def status(suffix: str) -> tuple[str, str | None]:
        data = next(v for k, v in outcomes.items() if k.endswith(suffix))
        return data["status"], (data["error"] or {}).get("kind")

    # same key, same scope: the second runs after the first while its job still holds the scope
    assert status("zilliant-queued") == ("queued", None)
    assert status("zilliant-conflict") == ("conflict", "conflict")
    assert status("zuora-queued") == ("queued", None)
    assert status("zuora-run-fails") == ("queued", None)  # it fails later: see its lifecycle events
    assert status("zuora-stop-finished") == ("rejected", "provider_rejected")
    assert status("zuora-missing-param") == ("rejected", "provider_rejected")
    assert status("zuora-reserved-word") == ("rejected", "validation")
    assert status("zuora-rerun") == ("applied", None)
    assert status("workfloo-queued") == ("queued", None)
    assert status("workfloo-unknown-definition") == ("rejected", "provider_rejected")
    assert status("workfloo-auth-error") == ("error", "auth")
    assert status("8x8-suspend") == ("applied", None), [v for k, v in outcomes.items() if "8x8" in k]
    assert status("8x8-resume-terminated") == ("rejected", "provider_rejected")
    assert status("unknown-target") == ("rejected", "unknown_target")

    queued = next(v for k, v in outcomes.items() if k.endswith("zuora-queued"))
    assert queued["provider"] == "zuora" and queued["http_status"] == 200 and queued["provider_ref"]
    assert queued["attempts"] == 1 and queued["duration_ms"] > 0
    missing = next(v for k, v in outcomes.items() if k.endswith("zuora-missing-param"))
    assert missing["http_status"] == 406 and "missing" in (missing["error"]["provider_body"] or "")
    reserved = next(v for k, v in outcomes.items() if k.endswith("zuora-reserved-word"))
    assert reserved["attempts"] == 0  # refused before any call
    headers = dict(dead[0].headers)
    assert dead[0].value == examples.NOT_A_COMMAND
    assert headers["dlq.reason"] == b"invalid_json"
    assert headers["dlq.source.topic"] == stack.settings.topics.run_commands.encode()


async def test_outcomes_keep_the_command_key_and_are_cloudevents(stack: Stack) -> None:
    await stack.start_bridge()
    doc = {
        "id": uid("key"),
        "target": workfloo_sandbox.LOCAL_TARGET,
        "operation": "workfloo.execute",
        "definition_id": WORKFLOO_DEFINITION_WITH_LINKS,
        "scenario_id": WORKFLOO_SCENARIO,
    }
    await stack.send((b"customer-42", doc))
    [event] = await stack.collect(1)
    assert event["specversion"] == "1.0" and event["type"] == "workflow.outcome.queued"
    assert event["subject"] == doc["id"]
    assert stack._consumer is not None
    # the raw record: same key as the command
    await stack._consumer.seek_to_beginning()
    batch = await stack._consumer.getmany(timeout_ms=2000)
    [record] = [r for rs in batch.values() for r in rs]
    assert record.key == b"customer-42"
    assert dict(record.headers)["content-type"].startswith(b"application/cloudevents+json")


async def _new_instance(session: aiohttp.ClientSession, url: str) -> str:
    base = f"{url}/8x8/api/v1/accounts/{EIGHTBYEIGHT_ACCOUNT}/definitions/{EIGHTBYEIGHT_DEFINITION}"
    async with session.post(
        f"{base}/workflows",
        json={"demo": True},
        headers={"Authorization": f"Bearer {EIGHTBYEIGHT_API_KEY}"},
    ) as resp:
        assert resp.status == 201, await resp.text()
        return resp.headers["Location"].rstrip("/").rsplit("/", 1)[-1]


async def test_same_key_runs_in_order_while_keys_run_concurrently(stack: Stack) -> None:
    """Each instance gets suspend, resume, suspend, resume, terminate under its own key.

    Only in-order execution makes every transition legal; random latency would reorder a naive
    concurrent consumer. Keys interleave in the partitions and must not serialise each other.
    """
    async with aiohttp.ClientSession() as session:
        instances = [await _new_instance(session, stack.sandbox.url) for _ in range(8)]
    await stack.fault("8x8", {"latency_ms": 40, "latency_distribution": "uniform"})
    actions = ["suspend", "resume", "suspend", "resume", "terminate"]
    commands = []
    for step, action in enumerate(actions):
        for instance in instances:
            commands.append(
                (
                    instance.encode(),
                    {
                        "id": f"{instance}-{step}",
                        "target": eightbyeight_sandbox.LOCAL_TARGET,
                        "operation": "8x8.update_instance",
                        "action": action,
                        "definition_id": EIGHTBYEIGHT_DEFINITION,
                        "instance_id": instance,
                    },
                )
            )
    await stack.send(*commands)
    await stack.start_bridge()
    outcomes = by_command(await stack.collect(len(commands), within_s=60))
    assert len(outcomes) == len(commands)
    assert {o["status"] for o in outcomes.values()} == {"applied"}, [
        (k, o["error"]) for k, o in outcomes.items() if o["status"] != "applied"
    ]
    log = [r for r in await stack.requests("8x8") if r["method"] == "PATCH"]
    for instance in instances:
        seen = [r["body"]["status"] for r in log if r["path"].endswith(instance)]
        assert seen == actions
    assert max(r["concurrent"] for r in log) > 1  # different keys were in flight at the same time


async def test_dead_letters_keep_the_original_and_the_next_command_runs(stack: Stack) -> None:
    await stack.start_bridge()
    good = zuora_command(uid("after-poison"))
    poison = [(b"p1", b"\xff\xfe not utf8"), (b"p2", b'{"no": "id"}'), (b"p3", b"[1,2,3]"), (b"p4", None)]
    await stack.send(*poison, topic=stack.settings.topics.run_commands)
    await stack.send((b"p1", good))  # same key as the first poison: must not be blocked by it
    events = await stack.collect(len(poison) + 1)
    dead = {r.key: dict(r.headers) for r in events if not isinstance(r, dict)}
    assert {k: h["dlq.reason"] for k, h in dead.items()} == {
        b"p1": b"not_utf8",
        b"p2": b"missing_id",
        b"p3": b"not_an_object",
        b"p4": b"empty_value",
    }
    assert all(h["dlq.source.offset"].isdigit() for h in dead.values())
    assert by_command(events)[good["id"]]["status"] == "queued"


async def test_restart_resumes_from_the_committed_offset(stack: Stack) -> None:
    def run(i: int) -> tuple[bytes, dict[str, object]]:
        return (f"k{i}".encode(), zuora_command(f"restart-{i}"))

    bridge = await stack.start_bridge()
    await stack.send(*[run(i) for i in range(10)])
    assert len(await stack.collect(10)) == 10
    await stack.stop_bridge(bridge)

    await stack.send(*[run(i) for i in range(10, 15)])
    await stack.start_bridge()
    later = await stack.collect(5, within_s=40)  # the group must first notice the old member left
    assert sorted(e["data"]["command_id"] for e in later) == [f"restart-{i}" for i in range(10, 15)]
    assert await stack.collect(1, within_s=2) == []  # nothing before the committed offset was replayed


async def test_in_flight_work_is_bounded_and_fetching_pauses_at_the_limit(stack: Stack) -> None:
    stack.configure(engine={"max_in_flight": 5})
    await stack.fault("zuora", {"latency_ms": 200})
    commands = [(f"bound-{i}".encode(), zuora_command(uid(f"bound-{i}"))) for i in range(40)]
    await stack.send(*commands)
    bridge = await stack.start_bridge()
    peak, paused_seen = 0, False
    collected: list[object] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while len(collected) < len(commands) and loop.time() < deadline:
        if bridge.engine is not None:
            peak = max(peak, bridge.engine.stats.accepted - bridge.engine.stats.finished)
            paused_seen = paused_seen or bridge.engine.paused
        collected += await stack.collect(1, within_s=0.05)
    assert len(by_command(collected)) == len(commands)
    assert peak <= 5  # never more than max_in_flight held
    assert paused_seen  # the consumer was paused at the limit rather than buffering more


async def test_a_rebalance_drains_and_commits_so_nothing_runs_twice(stack: Stack) -> None:
    """A second member joins mid-stream: the first drains the revoked partitions' in-flight work,
    commits it, and abandons only what it had not started; the newcomer resumes from the commit."""
    # slow enough that the stream outlasts the newcomer's join (the parked set's restore, on by
    # default, delays a partition's first records by a few hundred ms on the embedded broker)
    await stack.fault("zuora", {"latency_ms": 400})
    commands = [(f"rb-{i}".encode(), zuora_command(uid(f"rebalance-{i}"))) for i in range(120)]
    stack.configure(engine={"max_in_flight": 20})
    first = await stack.start_bridge()
    await stack.send(*commands)
    seen = await stack.collect(10, within_s=60)
    second = await stack.start_bridge()  # joins the group: partitions move while work is in flight
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    expected = {doc["id"] for _, doc in commands}
    while {e["data"]["command_id"] for e in seen} != expected and loop.time() < deadline:
        seen += await stack.collect(1, within_s=1)
    seen += await stack.collect(1, within_s=2)
    ids = [e["data"]["command_id"] for e in seen]
    assert set(ids) == expected
    assert len(ids) == len(expected), "a command ran twice across the rebalance"
    assert first.engine is not None and second.engine is not None
    assert first.engine.stats.drained > 0  # the revocation found work in flight and drained it
    assert second.engine.stats.assigned  # the newcomer really took partitions over
    runs = [r for r in await stack.requests("zuora") if r["path"].endswith("/run")]
    assert len(runs) == len(expected)  # and no provider call was repeated either
