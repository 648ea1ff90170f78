"""Tracking on the real broker and the sandbox over HTTP: every provider's run is followed to its
end and reported on the lifecycle topic, exactly one terminal event each, across a restart, within
the poll budget, and up to the horizon."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest
from aiokafka import AIOKafkaConsumer

from bridge.sandbox import SandboxConfig, start_sandbox
from bridge.sandbox import eightbyeight as eightbyeight_sandbox
from bridge.sandbox import workfloo as workfloo_sandbox
from bridge.sandbox import zilliant as zilliant_sandbox
from bridge.sandbox import zuora as zuora_sandbox
from bridge.sandbox.eightbyeight import (
    EIGHTBYEIGHT_ACCOUNT,
    EIGHTBYEIGHT_DEFINITION,
    EIGHTBYEIGHT_FAULT_FIELD,
    Instance,
    InstanceStatus,
)
from bridge.sandbox.workfloo import WORKFLOO_API_KEY, WorkflooSandboxSettings
from bridge.sandbox.zilliant import ZilliantSandboxSettings
from bridge.sandbox.zuora_runs import ZuoraSandboxSettings
from tests.integration.conftest import Stack, by_command, workfloo_command, zilliant_command, zuora_command

pytestmark = pytest.mark.integration
FAST = {"first_poll_s": 0.3, "max_interval_s": 1.0, "waiting_interval_s": 1.0, "jitter": 0.1}
TERMINAL = {"completed", "failed", "stopped", "lost"}


@pytest.fixture
async def sandbox() -> AsyncIterator[Any]:
    """Runs that end within a second or two (the integration default is the sandbox's 2 s)."""
    config = SandboxConfig(
        providers={
            "zuora": ZuoraSandboxSettings(run_duration_s=1.5),
            "workfloo": WorkflooSandboxSettings(run_duration_s=1.5),
            "zilliant": ZilliantSandboxSettings(job_duration_s=1.0),
        }
    )
    running = await start_sandbox("127.0.0.1", 0, config=config)
    yield running
    await running.stop()


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


def fast(stack: Stack, **per_target: dict[str, Any]) -> None:
    names = (
        zilliant_sandbox.LOCAL_TARGET,
        zuora_sandbox.LOCAL_TARGET,
        workfloo_sandbox.LOCAL_TARGET,
        eightbyeight_sandbox.LOCAL_TARGET,
    )
    stack.configure(targets={name: {"tracking": {**FAST, **per_target.get(name, {})}} for name in names})


class Lifecycle:
    """A reader of the test's lifecycle topic."""

    def __init__(self, stack: Stack) -> None:
        self._stack = stack
        self._consumer: AIOKafkaConsumer | None = None
        self.events: list[dict[str, Any]] = []
        self.keys: list[bytes | None] = []

    async def until(self, done: Any, within_s: float = 40.0) -> list[dict[str, Any]]:
        if self._consumer is None:
            self._consumer = AIOKafkaConsumer(
                self._stack.settings.topics.lifecycle,
                bootstrap_servers=self._stack.broker.bootstrap,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                isolation_level="read_committed",
            )
            await self._consumer.start()
        deadline = time.monotonic() + within_s
        while not done(self.events) and time.monotonic() < deadline:
            batch = await self._consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    self.events.append(orjson.loads(record.value))
                    self.keys.append(record.key)
        return self.events

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()


@pytest.fixture
async def lifecycle(stack: Stack) -> AsyncIterator[Lifecycle]:
    reader = Lifecycle(stack)
    yield reader
    await reader.close()


def statuses(events: list[dict[str, Any]], command_id: str) -> list[str]:
    return [e["data"]["status"] for e in events if e["subject"] == command_id]


def all_terminal(*ids: str) -> Any:
    return lambda events: all(TERMINAL & set(statuses(events, i)) for i in ids)


def zuora(command_id: str, **parameters: Any) -> dict[str, Any]:
    return zuora_command(command_id, parameters=parameters)


def zilliant(command_id: str, **parameters: Any) -> dict[str, Any]:
    return zilliant_command(command_id, parameters=parameters)


def workfloo(command_id: str, **form: Any) -> dict[str, Any]:
    return {**workfloo_command(command_id), "form": form}


def eightbyeight(command_id: str, action: str, instance: str) -> dict[str, Any]:
    return {
        "id": command_id,
        "target": eightbyeight_sandbox.LOCAL_TARGET,
        "operation": "8x8.update_instance",
        "action": action,
        "definition_id": EIGHTBYEIGHT_DEFINITION,
        "instance_id": instance,
    }


async def waiting_on_a_form(
    stack: Stack, lifecycle: Lifecycle, prefix: str, count: int
) -> tuple[list[str], dict[str, Any]]:
    """``count`` workfloo runs, one key each, that wait on a form: their ids and ``queued`` outcomes,
    once each has reported ``waiting``."""
    ids = [uid(f"{prefix}-{n}") for n in range(count)]
    await stack.send(*[(f"key-{n}".encode(), workfloo(i, sandboxWaitFor="FORM")) for n, i in enumerate(ids)])
    outcomes = by_command(await stack.collect(len(ids)))
    await lifecycle.until(lambda events: all("waiting" in statuses(events, i) for i in ids))
    return ids, outcomes


async def fill_in(stack: Stack, *executions: str) -> None:
    """A human fills in the form each workfloo execution waits on."""
    async with aiohttp.ClientSession() as session:
        for execution in executions:
            url = f"{stack.sandbox.url}/workfloo-sandbox/api/v1/workfloo/{execution}/form"
            async with session.post(url, json={}, headers={"x-api-key": WORKFLOO_API_KEY}) as resp:
                assert resp.status == 200


def suspended_instance(stack: Stack, *, fault: bool) -> str:
    """An 8x8 instance that, once resumed, ends by itself (Complete, or Terminated by a fault)."""
    workflow_id = uuid.uuid4().hex[:24]
    instance = Instance(
        workflow_id,
        EIGHTBYEIGHT_ACCOUNT,
        EIGHTBYEIGHT_DEFINITION,
        InstanceStatus.SUSPENDED,
        time.time(),
        data={EIGHTBYEIGHT_FAULT_FIELD: fault},
        ends_at=time.time() + 1.0,
    )
    stack.sandbox.state.emulator("8x8").instances[workflow_id] = instance
    return workflow_id


async def test_every_provider_reaches_completed_and_failed(stack: Stack, lifecycle: Lifecycle) -> None:
    fast(stack)
    await stack.start_bridge()
    ok, bad = suspended_instance(stack, fault=False), suspended_instance(stack, fault=True)
    commands = {
        uid("zuora-ok"): (b"a", zuora, {}),
        uid("zuora-bad"): (b"b", zuora, {"SANDBOX_RESULT": "error"}),
        uid("zilliant-ok"): (b"c", zilliant, {}),
        uid("zilliant-bad"): (b"c", zilliant, {"SANDBOX_CLOSE_STATUS": "TIMED_OUT"}),
        uid("workfloo-ok"): (b"d", workfloo, {}),
        uid("workfloo-bad"): (b"e", workfloo, {"sandboxResult": "ERROR"}),
    }
    await stack.send(*[(key, make(cid, **extra)) for cid, (key, make, extra) in commands.items()])
    resumes = {uid("8x8-ok"): ok, uid("8x8-bad"): bad}
    await stack.send(*[(i.encode(), eightbyeight(cid, "resume", i)) for cid, i in resumes.items()])
    ids = [*commands, *resumes]
    outcomes = by_command(await stack.collect(len(ids)))
    assert {outcomes[i]["status"] for i in ids} == {"queued", "applied"}
    events = await lifecycle.until(all_terminal(*ids))
    for command_id in ids:
        final = statuses(events, command_id)[-1]
        assert final == ("completed" if "-ok" in command_id else "failed"), statuses(events, command_id)
        assert [s for s in statuses(events, command_id) if s in TERMINAL] == [final]
    failed = {e["subject"]: e["data"] for e in events if e["data"]["status"] == "failed"}
    zuora_bad = next(v for k, v in failed.items() if "zuora-bad" in k)
    assert zuora_bad["provider_status"] == "Finished" and "1 of 3 task(s)" in zuora_bad["detail"]
    zilliant_bad = next(v for k, v in failed.items() if "zilliant-bad" in k)
    assert zilliant_bad["provider_status"] == "TIMED_OUT"
    run = next(e for e in events if "zuora-ok" in e["subject"])
    assert run["type"].startswith("workflow.lifecycle.") and run["data"]["provider_ref"]
    assert run["data"]["provider_ref"] == outcomes[run["subject"]]["provider_ref"]
    assert lifecycle.keys[events.index(run)] == b"a"  # the command's key


async def test_a_waiting_run_reports_waiting_once_then_completes(stack: Stack, lifecycle: Lifecycle) -> None:
    fast(stack)
    await stack.start_bridge()
    command_id = uid("loan")
    await stack.send((b"loan", workfloo(command_id, sandboxWaitFor="FORM")))
    [outcome] = await stack.collect(1)
    execution = outcome["data"]["provider_ref"]
    await lifecycle.until(lambda events: "waiting" in statuses(events, command_id))
    before = len(await stack.requests("workfloo"))
    for _ in range(100):  # it keeps asking, at the waiting interval
        if len(await stack.requests("workfloo")) >= before + 3:
            break
        await asyncio.sleep(0.2)
    await fill_in(stack, execution)
    events = await lifecycle.until(all_terminal(command_id))
    seen = statuses(events, command_id)  # running, unless the run ended between two reads
    assert seen in (["waiting", "running", "completed"], ["waiting", "completed"]), seen
    waiting = next(e for e in events if e["data"]["status"] == "waiting")
    assert waiting["data"]["waiting_for"] == "form"


async def test_restart_mid_tracking_resumes_and_ends_each_workflow_once(
    stack: Stack, lifecycle: Lifecycle
) -> None:
    fast(stack)
    bridge = await stack.start_bridge()
    ids, outcomes = await waiting_on_a_form(stack, lifecycle, "wait", 6)
    await stack.stop_bridge(bridge)
    await stack.start_bridge()  # a new process: its tracking comes from the ledger topic alone
    await fill_in(stack, *[outcomes[i]["provider_ref"] for i in ids])
    events = await lifecycle.until(all_terminal(*ids))
    await asyncio.sleep(2.0)  # time for a duplicate to show up, if one were coming
    events = await lifecycle.until(lambda _: False, within_s=0.5)
    for command_id in ids:  # running may fall in the restart's gap; waiting is not reported again
        seen = statuses(events, command_id)
        assert seen[0] == "waiting" and seen[-1] == "completed", seen
        assert seen.count("waiting") == 1 and len(set(seen)) == len(seen), seen


async def test_the_poll_budget_is_never_exceeded(stack: Stack, lifecycle: Lifecycle) -> None:
    budget = 4.0
    fast(
        stack,
        **{zuora_sandbox.LOCAL_TARGET: {"polls_per_s": budget, "first_poll_s": 0.1, "max_interval_s": 0.2}},
    )
    await stack.start_bridge()
    ids = [uid(f"run-{n}") for n in range(20)]
    await stack.send(*[(f"k{n}".encode(), zuora(i)) for n, i in enumerate(ids)])
    await stack.collect(len(ids))
    await lifecycle.until(all_terminal(*ids), within_s=60)
    reads = sorted(r["arrived_at"] for r in await stack.requests("zuora") if r["method"] == "GET")
    # 20 runs, each first asked 0.1 s after its outcome and at most every 0.2 s, want far more than
    # 4 reads a second; each needs at least one read to end, so there are windows to check
    assert len(reads) >= len(ids)
    windows = [sum(1 for t in reads[n:] if t < started + 1.0) for n, started in enumerate(reads)]
    assert max(windows) <= budget + 2, windows  # the budget's bucket holds 2 tokens at most


async def test_past_the_horizon_a_run_is_lost(stack: Stack, lifecycle: Lifecycle) -> None:
    fast(stack, **{workfloo_sandbox.LOCAL_TARGET: {"horizon_s": 2.0}})
    await stack.start_bridge()
    command_id = uid("forever")
    await stack.send((b"f", workfloo(command_id, sandboxWaitFor="DOCUMENT")))
    events = await lifecycle.until(all_terminal(command_id))
    assert statuses(events, command_id) in (["waiting", "lost"], ["lost"])  # waiting: if read in time
    lost = next(e for e in events if e["data"]["status"] == "lost")
    assert "horizon" in lost["data"]["detail"]


async def test_a_stop_is_confirmed_by_the_run_stopping(stack: Stack, lifecycle: Lifecycle) -> None:
    fast(stack)
    await stack.start_bridge()
    run_id = uid("long-run")
    await stack.send((b"acct", zuora(run_id)))
    [queued] = await stack.collect(1)
    stack.sandbox.state.emulator("zuora").timelines[
        int(queued["data"]["provider_ref"])
    ].duration_s = 600  # still running
    stop_id = uid("stop")
    stop = {"id": stop_id, "target": zuora_sandbox.LOCAL_TARGET, "operation": "zuora.stop_run"}
    await stack.send((b"acct", {**stop, "run_id": int(queued["data"]["provider_ref"])}))
    outcomes = by_command(await stack.collect(1))
    assert outcomes[stop_id]["status"] == "applied"
    events = await lifecycle.until(all_terminal(run_id, stop_id))
    assert statuses(events, stop_id)[-1] == "stopped"
    assert statuses(events, run_id)[-1] == "stopped"


def completed_count(bridge: Any) -> float:
    value = bridge.metrics.registry.get_sample_value(
        "bridge_lifecycle_events_total", {"target": workfloo_sandbox.LOCAL_TARGET, "status": "completed"}
    )
    return value or 0.0


async def test_a_rebalance_moves_tracking_with_the_partition(stack: Stack, lifecycle: Lifecycle) -> None:
    fast(stack)
    first = await stack.start_bridge()
    ids, outcomes = await waiting_on_a_form(stack, lifecycle, "moved", 12)
    second = await stack.start_bridge()
    for _ in range(300):  # the group rebalances: each member ends up with some of the 4 partitions
        engines = [b.engine for b in (first, second)]
        if all(e is not None and e.stats.assigned and not e.stats.restoring for e in engines):
            break
        await asyncio.sleep(0.1)
    await fill_in(stack, *[outcomes[i]["provider_ref"] for i in ids])
    events = await lifecycle.until(all_terminal(*ids))
    await lifecycle.until(lambda _: False, within_s=2.0)  # room for a duplicate, if one were coming
    for command_id in ids:
        seen = statuses(events, command_id)
        assert seen.count("completed") == 1 and seen.count("waiting") == 1, seen
    # both members reported completions: the second one follows the workflows of its partitions
    assert completed_count(first) > 0 and completed_count(second) > 0
    assert completed_count(first) + completed_count(second) == len(ids)
