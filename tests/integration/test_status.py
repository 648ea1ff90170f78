"""``bridge status ID`` and ``GET /v1/commands/{id}`` on the real broker and the sandbox over HTTP:
every state reached for real and looked up through the CLI (a subprocess) and the admin endpoint,
from the member that owns the command's partition and from another member of the group."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml

from bridge.app import Bridge
from bridge.local.stack import SANDBOX_ENV, local_config
from bridge.sandbox import SandboxConfig, start_sandbox
from bridge.sandbox import zilliant as zilliant_sandbox
from bridge.sandbox.zilliant import ZilliantSandboxSettings
from bridge.status import lookup as lookup_module
from bridge.status.hints import Hint, ask_member
from bridge.status.lookup import find, partition_of
from bridge.status.story import assemble
from tests.integration.conftest import Stack, by_command, workfloo_command, zilliant_command

pytestmark = pytest.mark.integration
ADMIN = {"port": 0, "show_payload": True}
FAST_TRACKING = {"first_poll_s": 0.3, "max_interval_s": 1.0, "waiting_interval_s": 1.0, "jitter": 0.1}
Z = zilliant_sandbox.LOCAL_TARGET


@pytest.fixture
async def sandbox() -> AsyncIterator[Any]:
    """Zilliant jobs that end within a second (tracked runs complete during the test)."""
    config = SandboxConfig(providers={"zilliant": ZilliantSandboxSettings(job_duration_s=1.0)})
    running = await start_sandbox("127.0.0.1", 0, config=config)
    yield running
    await running.stop()


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def run_cli(
    stack: Stack, tmp_path: Path, *args: str, admin: dict[str, Any] | None = None
) -> tuple[int, str, str]:
    """``python -m bridge status ...`` against this test's topics and group (and ``admin``: the
    configuration's admin listener, which it asks what the owner's ledger knows)."""
    raw = local_config(
        stack.broker.bootstrap,
        stack.sandbox.url,
        overrides={
            "topics": stack.settings.topics.model_dump(),
            "kafka": {"group_id": stack.settings.kafka.group_id},
            **({"admin": admin} if admin else {}),
        },
    )
    config = tmp_path / "status.yaml"
    config.write_text(yaml.safe_dump(raw))
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bridge",
        "status",
        *args,
        "--config",
        str(config),
        env={**os.environ, **SANDBOX_ENV},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def status_json(stack: Stack, tmp_path: Path, command_id: str, *args: str) -> dict[str, Any]:
    code, out, err = await run_cli(stack, tmp_path, command_id, "--json", *args)
    assert code == 0, (code, out, err)
    body: dict[str, Any] = orjson.loads(out)
    return body


async def http_get(
    bridge: Bridge, path: str, token: str | None = None, **params: str
) -> tuple[int, dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"http://127.0.0.1:{bridge.admin_port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url, params=params, headers=headers) as resp:
        return resp.status, await resp.json()


async def lookup(bridge: Bridge, command_id: str, **params: str) -> dict[str, Any]:
    status, body = await http_get(bridge, f"/v1/commands/{command_id}", **params)
    assert status == 200, body
    return body


async def two_members(stack: Stack) -> tuple[Bridge, Bridge]:
    first, second = await stack.start_bridge(), await stack.start_bridge()
    deadline = time.monotonic() + 40
    while time.monotonic() < deadline:
        engines = [b.engine for b in (first, second)]
        if all(e is not None and e.stats.assigned for e in engines):
            total = sum(len(e.stats.assigned) for e in engines if e is not None)
            if total == 8:  # both command topics' 4 partitions, split between the two
                return first, second
        await asyncio.sleep(0.2)
    raise AssertionError("the two members did not share the partitions")


def owner_and_other(bridges: tuple[Bridge, Bridge], stack: Stack, key: bytes) -> tuple[Bridge, Bridge]:
    topic, partition = stack.settings.topics.run_commands, partition_of(key, 4)
    first, second = bridges
    assert first.engine is not None
    return (first, second) if first.engine.partition(topic, partition) is not None else (second, first)


async def wait_for_state(
    bridge: Bridge, command_id: str, state: str, within_s: float = 30.0, **params: str
) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = await lookup(bridge, command_id, **params)
        if body["state"] == state:
            return body
        await asyncio.sleep(0.3)
    raise AssertionError(f"{command_id} never reached {state}: {body}")


def kinds(body: dict[str, Any]) -> list[str]:
    return [step["kind"] for step in body["steps"]]


async def test_answered_duplicate_reused_and_tracked_from_both_members(stack: Stack, tmp_path: Path) -> None:
    stack.configure(admin=ADMIN, targets={Z: {"tracking": FAST_TRACKING}})
    members = await two_members(stack)
    cid = uid("answered")
    await stack.send((cid.encode(), zilliant_command(cid)))
    assert by_command(await stack.collect(1))[cid]["status"] == "queued"
    await stack.send((cid.encode(), zilliant_command(cid)))  # a duplicate: absorbed
    await stack.send((cid.encode(), zilliant_command(cid, automation_id="Other")))  # the id reused
    letters = await stack.collect(1)
    assert letters and not isinstance(letters[0], dict)
    owner, other = owner_and_other(members, stack, cid.encode())
    body = await wait_for_state(owner, cid, "answered")
    deadline = time.monotonic() + 30
    while body["workflow"] != "completed" and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
        body = await lookup(owner, cid)
    assert body["workflow"] == "completed", body
    assert kinds(body).count("received") == 3
    assert kinds(body).count("answered") == 1
    assert {"dispatched", "duplicate_absorbed", "id_reused", "lifecycle"} <= set(kinds(body))
    assert body["owner"]["circuit"] == "closed" and not body["owner"]["in_flight"]
    assert [s["status"] for s in body["steps"] if s["kind"] == "lifecycle"][-1] == "completed"
    times = [s["at"] for s in body["steps"]]
    assert times == sorted(times)
    elsewhere = await lookup(other, cid)
    assert "owner" not in elsewhere
    assert elsewhere["state"] == "answered" and kinds(elsewhere) == kinds(body)
    # one record per window, newest first: the read stops at the reuse, then fetches the record
    # its outcome names (the first), and the duplicate between them is not part of the story
    narrow = assemble(await find(stack.settings, cid, window=1, segments=1))
    assert (
        narrow.phase.value == "answered" and narrow.record == assemble(await find(stack.settings, cid)).record
    )
    assert [s.kind for s in narrow.steps].count("received") == 2
    assert "payload" not in elsewhere
    with_payload = await lookup(other, cid, payload="true")
    assert with_payload["payload"]["automation_id"] == "PublishListPrices"
    cli = await status_json(stack, tmp_path, cid)
    assert cli["state"] == "answered" and kinds(cli) == kinds(body) and "payload" not in cli
    code, text, _ = await run_cli(stack, tmp_path, cid)
    assert code == 0
    assert text.splitlines()[1].startswith("state: answered  (answered: queued  ref=")
    assert "duplicate absorbed" in text and "refused: id reused" in text and "workflow completed" in text
    code, text, _ = await run_cli(stack, tmp_path, cid, "--since", "10m")
    assert code == 0 and "state: answered" in text
    code, text, _ = await run_cli(stack, tmp_path, cid, "--since", "2999-01-01T00:00:00Z")
    assert code == 3 and "state: unknown" in text  # nothing was sent since then
    code, _, err = await run_cli(stack, tmp_path, cid, "--since", "yesterday")
    assert code == 2 and err.startswith("bridge status: --since: 'yesterday' is neither")
    status, unknown = await http_get(other, f"/v1/commands/{uid('never-sent')}")
    assert status == 404 and unknown["state"] == "unknown"
    code, text, err = await run_cli(stack, tmp_path, uid("never-sent"))
    assert code == 3 and "state: unknown" in text and err == ""
    status, spec = await http_get(owner, "/v1/openapi.json")
    assert status == 200 and "/v1/commands/{command_id}" in spec["paths"]


async def test_not_consumed_then_waiting_behind_a_slow_key(stack: Stack, tmp_path: Path) -> None:
    stack.configure(admin=ADMIN)
    first, head, second = uid("slow-first"), uid("slow-head"), uid("slow-second")
    key = b"slow-key"
    await stack.send((key, zilliant_command(first)))
    body = await status_json(stack, tmp_path, first, "--key", "slow-key")
    assert body["state"] == "not_consumed", body
    assert "lag 1" in body["summary"]
    members = await two_members(stack)
    assert len(await stack.collect(1, within_s=60)) == 1
    # the slow head is sent to the settled group: a rebalance while it is in flight would move it
    await stack.fault("zilliant", {"latency_ms": 15000})
    await stack.send((key, zilliant_command(head)), (key, zilliant_command(second)))
    owner, other = owner_and_other(members, stack, key)
    waiting = await wait_for_state(owner, second, "waiting", within_s=20, key="slow-key")
    looked_up = await lookup(owner, head, key="slow-key")
    assert waiting["owner"]["queued_behind"] == looked_up["record"]["offset"]
    assert looked_up["state"] == "in_flight" and looked_up["owner"]["in_flight"], looked_up
    elsewhere = await lookup(other, second, key="slow-key")
    assert "owner" not in elsewhere and elsewhere["state"] == "not_consumed"
    await stack.fault("zilliant", {})
    assert len(await stack.collect(2, within_s=60)) == 2
    assert (await wait_for_state(other, second, "answered", key="slow-key"))["summary"].startswith(
        "answered: queued"
    )


async def test_retry_backoff_shows_the_attempt_and_the_next_one(stack: Stack, tmp_path: Path) -> None:
    stack.configure(admin=ADMIN, targets={Z: {"retry": {"max_attempts": 3, "budget_s": 60}}})
    members = await two_members(stack)
    # the backoff is the window in which the lookups below must find the command in flight: wide
    # enough for two members' lookups on a loaded machine
    await stack.fault("zilliant", {"rate_limit_next": {"count": 1, "retry_after": "12"}})
    cid = uid("backoff")
    await stack.send((cid.encode(), zilliant_command(cid)))
    owner, other = owner_and_other(members, stack, cid.encode())
    body = await wait_for_state(owner, cid, "in_flight", within_s=20)
    deadline = time.monotonic() + 10
    while body["owner"]["next_attempt_at"] is None and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        body = await lookup(owner, cid)
    assert body["owner"]["attempt"] == 1 and body["owner"]["next_attempt_at"] is not None, body
    # the owner's part is taken before the topics are read: waiting for attempt 2, its dispatched entry
    # is among what the same lookup read (CI once showed the owner read after the topics, ahead of them)
    assert body["state"] == "in_flight" and "dispatched" in kinds(body), body
    elsewhere = await lookup(other, cid)
    assert elsewhere["state"] == "in_flight" and "owner" not in elsewhere  # the ledger's dispatched entry
    cli = await status_json(stack, tmp_path, cid)
    assert cli["state"] in ("in_flight", "answered") and "dispatched" in kinds(
        cli
    )  # the CLI reads the topics
    answered = await wait_for_state(other, cid, "answered", within_s=45)
    assert "attempts=2" in answered["summary"]


async def test_a_parked_command_is_visible_and_answered_once_later(stack: Stack, tmp_path: Path) -> None:
    parking = {
        "retry": {"max_attempts": 2, "budget_s": 1, "base_backoff_s": 0.05, "max_backoff_s": 0.1},
        "circuit": {"failure_threshold": 1, "open_s": 2},
        "parking": {"retry_s": 2, "max_delay_s": 120},
    }
    target = workfloo_command("x")["target"]
    stack.configure(admin=ADMIN, targets={target: parking})
    await stack.fault("workfloo", {"fail_next": {"count": 100_000, "status": 503}})
    bridge = await stack.start_bridge()
    cid = uid("parked")
    await stack.send((cid.encode(), workfloo_command(cid)))
    body = await wait_for_state(bridge, cid, "parked", within_s=30)
    parked = [s for s in body["steps"] if s["kind"] == "parked"]
    assert parked and parked[-1]["reason"] and parked[-1]["due"]
    assert body["summary"].startswith("parked: ")
    cli = await status_json(stack, tmp_path, cid)
    assert cli["state"] == "parked" and cli["summary"].startswith("parked: ")  # parked again meanwhile, maybe
    assert [s["kind"] for s in cli["steps"]][:2] == ["received", "dispatched"]
    await stack.fault("workfloo", {})
    outcomes = [e for e in await stack.collect(1, within_s=150) if isinstance(e, dict)]
    assert [e["data"]["command_id"] for e in outcomes] == [cid]
    assert outcomes[0]["data"]["status"] == "queued"
    done = await wait_for_state(bridge, cid, "answered")
    assert kinds(done).count("answered") == 1 and "parked" in kinds(done)
    assert await stack.collect(1, within_s=3) == []  # still exactly one outcome


async def test_a_dead_lettered_command(stack: Stack, tmp_path: Path) -> None:
    stack.configure(engine={"max_message_bytes": 2048}, admin=ADMIN)
    members = await two_members(stack)
    cid = uid("too-large")
    await stack.send((cid.encode(), zilliant_command(cid, note="x" * 4000)))
    letters = await stack.collect(1)
    assert letters and not isinstance(letters[0], dict)
    await asyncio.sleep(1.0)  # the offset commit
    code, text, _ = await run_cli(stack, tmp_path, cid)
    assert code == 0, text
    assert text.splitlines()[1].startswith("state: dead_lettered  (dead-lettered: too_large")
    owner, other = owner_and_other(members, stack, cid.encode())
    for member in (owner, other):  # the owner's ledger does not name it: its dead letter does
        body = await lookup(member, cid)
        assert body["state"] == "dead_lettered" and body["summary"].startswith("dead-lettered: too_large")
        assert "dead_lettered" in kinds(body)


async def test_a_token_guards_an_admin_listener_off_loopback(stack: Stack, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    stack.configure(admin={"host": "0.0.0.0", "port": 0, "token_file": str(token_file)})  # noqa: S104
    bridge = await stack.start_bridge()
    deadline = time.monotonic() + 20
    while bridge.admin_port is None and time.monotonic() < deadline:  # noqa: ASYNC110 - set by its run()
        await asyncio.sleep(0.1)
    status, body = await http_get(bridge, "/v1/commands/x")
    assert status == 401 and "bearer token" in body["error"]
    status, body = await http_get(bridge, "/v1/commands/x", token="wrong")
    assert status == 401
    status, body = await http_get(bridge, "/v1/commands/x", token="s3cret-token")
    assert status == 404 and body["state"] == "unknown", body
    status, body = await http_get(bridge, "/v1/commands/x", token="s3cret-token", payload="true")
    assert status == 403 and "show_payload" in body["error"]


async def test_operator_mistakes_get_one_line(stack: Stack, tmp_path: Path) -> None:
    raw = local_config(stack.broker.bootstrap, stack.sandbox.url)
    raw["admin"] = {"host": "0.0.0.0", "port": 0}  # noqa: S104
    config = tmp_path / "open.yaml"
    config.write_text(yaml.safe_dump(raw))
    check = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "check-config", "--config", str(config),
        env={**os.environ, **SANDBOX_ENV}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await check.communicate()
    assert check.returncode == 2 and "admin.token_file" in err.decode() and "Traceback" not in err.decode()
    raw["admin"]["token_file"] = str(tmp_path / "missing-token")
    config.write_text(yaml.safe_dump(raw))
    run = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "run", "--config", str(config),
        env={**os.environ, **SANDBOX_ENV}, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(run.communicate(), 60)
    lines = [line for line in err.decode().splitlines() if line.startswith("bridge:")]
    assert run.returncode == 2 and lines and "missing-token" in lines[0], err.decode()[-2000:]
    assert "Traceback" not in err.decode()
    code, _, err_text = await run_cli(stack, tmp_path, "x", "--bootstrap", "127.0.0.1:1")
    assert code == 1 and err_text.startswith("bridge status: cannot reach the Kafka broker")


async def test_the_local_demo_shows_one_lookup(tmp_path: Path) -> None:
    """``make run`` (``bridge local``) looks up its first example command, sent twice."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge", "local", "--exit-after", "20", "--metrics-port", "0",
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(process.communicate(), 90)
    text = out.decode()
    assert process.returncode == 0, text[-2000:]
    story = text[text.index("\n$ bridge status --bootstrap 127.0.0.1:") :]
    assert "state: answered" in story and "duplicate absorbed" in story, story


async def test_status_needs_no_provider_secrets(stack: Stack, tmp_path: Path) -> None:
    """``bridge status --config`` reads the topics: a config whose provider secrets cannot be resolved
    here (secret files mounted only in the bridge's pod) still serves it."""
    await stack.start_bridge()
    cid = uid("no-secrets")
    await stack.send((cid.encode(), zilliant_command(cid)))
    assert by_command(await stack.collect(1))[cid]["status"] == "queued"
    raw = local_config(
        stack.broker.bootstrap,
        stack.sandbox.url,
        overrides={
            "topics": stack.settings.topics.model_dump(),
            "kafka": {"group_id": stack.settings.kafka.group_id},
        },
    )
    missing = tmp_path / "not-mounted"
    for target in raw["targets"].values():
        for name, value in list(target.items()):
            if isinstance(value, dict) and "env" in value:
                target[name] = {"file": str(missing)}
    config = tmp_path / "pod.yaml"
    config.write_text(yaml.safe_dump(raw))
    env = {k: v for k, v in os.environ.items() if k not in SANDBOX_ENV}
    cli = [sys.executable, "-m", "bridge"]
    check = await asyncio.create_subprocess_exec(
        *cli, "check-config", "--config", str(config), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(check.communicate(), 60)
    assert check.returncode == 2 and "not-mounted" in err.decode()  # the full configuration does not resolve
    await asyncio.sleep(1.0)  # the offset commit
    status = await asyncio.create_subprocess_exec(
        *cli, "status", cid, "--config", str(config), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(status.communicate(), 60)
    assert status.returncode == 0, (out.decode(), err.decode())
    assert "state: answered" in out.decode() and err.decode() == ""
    unknown = await asyncio.create_subprocess_exec(
        *cli, "status", uid("never-sent"), "--config", str(config), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(unknown.communicate(), 60)
    assert unknown.returncode == 3 and "state: unknown" in out.decode() and err.decode() == ""


async def test_the_owner_answers_from_its_ledger_and_status_asks_it(
    stack: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the owning member's ledger knows bounds the read of the command partition; an id it
    does not know is still looked for where the ledger cannot vouch (an invalid command)."""
    stack.configure(admin=ADMIN)
    bridge = await stack.start_bridge()
    key, run = b"ledger-key", stack.settings.topics.run_commands
    partition = f"{run}:{partition_of(key, 4)}"
    cid, later = uid("remembered"), [uid("later") for _ in range(3)]
    await stack.send((key, zilliant_command(cid)))
    assert by_command(await stack.collect(1))[cid]["status"] == "queued"
    ten_minutes_on = int(time.time() * 1000) + 600_000  # past the minute of cid's ledger entries
    await stack.send(*((key, zilliant_command(x)) for x in later), timestamp_ms=ten_minutes_on)
    assert len(await stack.collect(3)) == 3
    await asyncio.sleep(1.0)  # the offset commit
    status, body = await http_get(bridge, f"/v1/ledger/{cid}", partition=partition)
    assert status == 200 and len(body["partitions"]) == 1, body
    known = body["partitions"][0]
    assert known["remembered"] and abs(known["last_write_ms"] - time.time() * 1000) < 180_000
    status, body = await http_get(bridge, f"/v1/ledger/{uid('never-sent')}", partition=partition)
    assert status == 200 and body["partitions"][0]["remembered"] is False
    status, body = await http_get(bridge, f"/v1/ledger/{cid}", partition="no-number")
    assert status == 400 and "TOPIC:N" in body["error"]

    url = f"http://127.0.0.1:{bridge.admin_port}"

    def asking(command_id: str) -> Any:
        async def recall(partitions: Any) -> dict[str, Hint]:
            return await ask_member(url, None, command_id, partitions)

        return recall

    monkeypatch.setattr(lookup_module, "RECENT", 1)  # the newest record only: what is skipped shows
    story = assemble(await find(stack.settings, cid, key, recall=asking(cid)))
    assert story.phase.value == "answered" and [s.kind for s in story.steps].count("received") == 1
    assert story.notes and "the 2 records between were not read" in story.notes[0], story.notes
    never = uid("never-sent")
    story = assemble(await find(stack.settings, never, key, recall=asking(never)))
    assert story.phase.value == "unknown"
    assert any("remembers every command admitted there" in n and "not this id" in n for n in story.notes)
    assert any(n.startswith("read whole: ") for n in story.notes), story.notes
    monkeypatch.undo()

    admin = {"port": bridge.admin_port}
    bad = uid("invalid")  # refused before admission: no ledger entry names it
    invalid = {k: v for k, v in zilliant_command(bad).items() if k != "automation_id"}
    await stack.send((key, invalid))
    assert by_command(await stack.collect(1))[bad]["status"] == "rejected"
    await asyncio.sleep(1.0)
    code, out, err = await run_cli(stack, tmp_path, bad, "--key", "ledger-key", "--json", admin=admin)
    assert code == 0 and orjson.loads(out)["state"] == "answered", (out, err)
    code, out, err = await run_cli(stack, tmp_path, never, "--key", "ledger-key", "--json", admin=admin)
    body = orjson.loads(out)
    assert code == 3 and body["state"] == "unknown" and err == ""
    assert any(n.startswith("read whole: ") for n in body["notes"]), body  # it asked the member
    code, out, _ = await run_cli(
        stack, tmp_path, never, "--key", "ledger-key", "--json", "--full", admin=admin
    )
    assert code == 3 and orjson.loads(out)["notes"] == []  # --full: every record, no ledger
    code, out, err = await run_cli(
        stack, tmp_path, cid, "--key", "ledger-key", "--admin", "http://127.0.0.1:1", "--json"
    )
    assert code == 0 and orjson.loads(out)["state"] == "answered" and err == ""  # nobody to ask
    status, body = await http_get(bridge, f"/v1/commands/{never}", key="ledger-key", full="true")
    assert status == 404 and body["notes"] == []
