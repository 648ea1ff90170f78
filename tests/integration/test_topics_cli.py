"""``bridge topics`` as a user runs it: from a folder without ``topics/``, against a real broker."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bridge.contracts import load_specs
from bridge.local.broker import RunningBroker, free_port, start_broker
from tests.integration.clirun import BRIDGE, bridge_cli, one_line_error

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def own_broker() -> AsyncIterator[RunningBroker]:
    """A broker of its own: these tests use the real (unprefixed) topic names."""
    running = await start_broker()
    yield running
    await running.stop()


@pytest.mark.parametrize("verb", [["check"], ["apply"], ["apply", "--dry-run"]])
@pytest.mark.parametrize("folder", ["missing", "empty"])
async def test_a_missing_or_empty_spec_folder_exits_2_with_one_line(tmp_path: Path, verb, folder) -> None:
    specs = tmp_path / "specs"
    if folder == "empty":
        specs.mkdir()
    code, out, err = await bridge_cli(
        "topics", *verb, "--dir", str(specs), "--bootstrap", "127.0.0.1:1", cwd=tmp_path
    )
    assert code == 2
    assert out == ""
    line = one_line_error(err)
    assert line.startswith(f"bridge topics: topic spec folder {specs} ")
    assert "leave --dir out to use the specs shipped with the bridge" in line


async def test_without_a_checkout_apply_creates_the_shipped_specs_and_check_agrees(
    own_broker: RunningBroker, tmp_path: Path
) -> None:
    names = [spec.name for spec in load_specs()]
    bootstrap = ("--bootstrap", own_broker.bootstrap)

    code, out, _ = await bridge_cli("topics", "check", *bootstrap, cwd=tmp_path)
    assert code == 1
    assert [f"DRIFT {name}: topic does not exist" for name in names] == out.splitlines()[:-1]

    code, out, _ = await bridge_cli("topics", "apply", "--dry-run", *bootstrap, cwd=tmp_path)
    assert code == 0
    assert out.splitlines()[-1] == f"dry run: {len(names)} topic(s) would be created; nothing was changed"

    code, out, err = await bridge_cli("topics", "apply", *bootstrap, cwd=tmp_path)
    assert code == 0, err
    assert [line for line in out.splitlines() if line.startswith("created ")] == [
        f"created {name}" for name in names
    ]
    code, out, err = await bridge_cli("topics", "check", *bootstrap, cwd=tmp_path)
    assert (code, out.splitlines()[-1]) == (0, f"all {len(names)} topics match their specs"), out + err


async def test_an_unreachable_broker_is_one_line_and_exit_2(tmp_path: Path) -> None:
    port = free_port()
    code, out, err = await bridge_cli("topics", "check", "--bootstrap", f"127.0.0.1:{port}", cwd=tmp_path)
    assert (code, out) == (2, "")
    assert one_line_error(err) == f"bridge topics: cannot reach the Kafka broker at 127.0.0.1:{port}"


async def test_check_against_the_local_stacks_broker_finds_no_drift(tmp_path: Path) -> None:
    """`make run`'s broker: the local stack creates its topics from the same shipped specs."""
    broker_port = free_port()
    local = await asyncio.create_subprocess_exec(
        *BRIDGE,
        "local",
        "--no-examples",
        "--broker-port",
        str(broker_port),
        "--metrics-port",
        str(free_port()),
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        assert local.stdout is not None
        address = f"127.0.0.1:{broker_port}"
        seen = ""
        while address not in seen:  # the banner names the broker once the topics exist
            line = await asyncio.wait_for(local.stdout.readline(), 60)
            assert line, f"bridge local ended before its banner:\n{seen}"
            seen += line.decode()
        code, out, err = await bridge_cli("topics", "check", "--bootstrap", address, cwd=tmp_path)
        assert code == 0, out + err
        assert out.splitlines()[-1] == f"all {len(load_specs())} topics match their specs"
    finally:
        with contextlib.suppress(ProcessLookupError):
            local.send_signal(signal.SIGINT)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(local.communicate(), 30)
        if local.returncode is None:
            local.kill()
            await local.wait()


async def test_generate_writes_copies_of_the_shipped_specs_and_check_sees_drift(tmp_path: Path) -> None:
    out_dir = tmp_path / "topics"
    code, out, err = await bridge_cli("topics", "generate", "--dir", str(out_dir), cwd=tmp_path)
    assert code == 0, err
    names = [f"{spec.name}.yaml" for spec in load_specs()]
    assert {f"wrote {out_dir / name}" for name in names} <= set(out.splitlines())

    code, out, _ = await bridge_cli("topics", "generate", "--check", "--dir", str(out_dir), cwd=tmp_path)
    assert (code, out) == (0, "topic contracts are up to date\n")

    copy = out_dir / names[0]
    copy.write_text(copy.read_text().replace("partitions:", "partitions: 99 #"))
    code, out, _ = await bridge_cli("topics", "generate", "--check", "--dir", str(out_dir), cwd=tmp_path)
    assert (code, out) == (1, f"{names[0]} is out of date: run `bridge topics generate`\n")


async def test_the_repositorys_topics_folder_matches_the_shipped_specs() -> None:
    code, out, err = await bridge_cli("topics", "generate", "--check", cwd=ROOT)
    assert (code, out, err) == (0, "topic contracts are up to date\n", "")
