"""``make run`` as a new user meets it: ``bridge local`` with no flags, started from an empty folder,
in a process of its own; what it prints, how each signal ends it, and that nothing outlives it.

The default metrics port (9464) is the one the README's command uses: these tests wait for it to be
free rather than pass another (the point is to run the command exactly as documented).
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import pty
import queue
import re
import select
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path

import pytest

from bridge.local import stack
from bridge.local.broker import free_port, port_taken
from bridge.local.screen import WIDTH

# `bridge local` takes the README's default ports (9464 among them), so these run alone after the parallel
# workers; and it always starts its own embedded Tansu, so they run once, in the Tansu run.
pytestmark = [pytest.mark.integration, pytest.mark.solo, pytest.mark.only_broker("tansu")]

BRIDGE = Path(sys.executable).parent / "bridge"
METRICS_PORT = 9464
SETTLED = "-- examples settled in"
OUTCOMES = ("queued", "applied", "conflict", "rejected", "error")
SUMMARY = "16 commands: 14 outcomes, 1 dead letter, 1 duplicate absorbed"


def wait_until_free(port: int, timeout_s: float = 90.0) -> None:
    deadline = time.monotonic() + timeout_s
    while port_taken(port):
        if time.monotonic() > deadline:
            pytest.fail(f"port {port} stayed taken by another process for {timeout_s:.0f}s")
        time.sleep(0.5)


def alive(pid: int) -> bool:
    """Running: a zombie waiting for its reaper runs nothing and holds no port."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def gone_within(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


class Session:
    """``bridge local`` in a subprocess; its stdout read line by line on a thread."""

    def __init__(self, cwd: Path, *flags: str) -> None:
        self.process = subprocess.Popen(
            [str(BRIDGE), "local", *flags],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.seconds: list[float] = []  # when each line arrived, since the start
        self._queue: queue.Queue[tuple[str, float] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for text in self.process.stdout:
            self._queue.put((text.rstrip("\n"), time.monotonic() - self.started))
        self._queue.put(None)

    def wait_for(self, prefix: str, timeout_s: float = 90.0) -> list[str]:
        """Every line up to the first that starts with ``prefix`` (it included)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(
                    f"no line starting {prefix!r} within {timeout_s}s; seen:\n" + "\n".join(self.lines)
                )
            if item is None:
                pytest.fail(
                    f"bridge local ended before {prefix!r}:\n" + "\n".join(self.lines) + self.stderr()
                )
            text, seconds = item
            self.lines.append(text)
            self.seconds.append(seconds)
            if text.startswith(prefix):
                return self.lines

    def finish(self, timeout_s: float = 60.0) -> int:
        code = self.process.wait(timeout_s)
        self._reader.join(10)
        while (item := self._queue.get_nowait() if not self._queue.empty() else None) is not None:
            self.lines.append(item[0])
            self.seconds.append(item[1])
        return code

    def stderr(self) -> str:
        return self.process.stderr.read() if self.process.stderr and self.process.poll() is not None else ""

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def session_in(tmp_path: Path) -> Iterator[list[Session]]:
    started: list[Session] = []
    yield started
    for s in started:
        leftovers = children(s.process.pid) if s.process.poll() is None else []
        s.close()
        for pid in leftovers:
            if alive(pid):
                subprocess.run(["kill", "-9", str(pid)], check=False)


def start(tmp_path: Path, started: list[Session], *flags: str) -> Session:
    session = Session(tmp_path, *flags)
    started.append(session)
    return session


def broker_pid(session: Session) -> int:
    kids = children(session.process.pid)
    brokers = [p for p in kids if "tansu" in Path(f"/proc/{p}/cmdline").read_bytes().decode(errors="replace")]
    assert len(brokers) == 1, f"expected one broker child, found {kids}"
    return brokers[0]


def run_printed(lines: list[str], verb: str, cwd: Path, *more: str) -> subprocess.CompletedProcess[str]:
    """Run the command line bridge local printed for ``verb``, as a user pastes it."""
    printed = next(text for text in lines if verb in text and text.startswith("  "))
    return subprocess.run([*printed.split(), *more], cwd=cwd, capture_output=True, text=True, timeout=60)


def first_words(lines: list[str]) -> set[str]:
    return {text.split()[0] for text in lines if text.strip()}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_bridge_local_as_the_readme_gives_it(tmp_path: Path, session_in: list[Session], sig: signal.Signals):
    wait_until_free(METRICS_PORT)
    session = start(tmp_path, session_in)  # no flags: exactly `make run`
    lines = session.wait_for(SETTLED)
    broker = broker_pid(session)

    first = next(i for i, text in enumerate(lines) if text.split()[:1] and text.split()[0] in OUTCOMES)
    assert session.seconds[first] < 30, (
        f"the first outcome came {session.seconds[first]:.1f}s after the start"
    )
    words = first_words(lines)
    assert set(OUTCOMES) <= words, lines
    assert "dlq" in words and "again" in words  # the dead letter, and the duplicate as it was sent
    assert {"completed", "failed"} <= words  # runs followed to their end
    assert re.match(r"broker +127\.0\.0\.1:\d+$", lines[1].strip()), lines[:4]
    after = session.wait_for("  kill -USR1")
    assert SUMMARY in after and "runs: 3 completed, 1 failed, 1 waiting" in after
    bootstrap = lines[1].split()[-1]
    assert f"send --bootstrap {bootstrap} @.local/command.json" in "\n".join(after)
    assert (tmp_path / ".local" / "command.json").is_file() and (tmp_path / ".local" / "broker.log").is_file()
    shown = [text.replace(str(BRIDGE), ".venv/bin/bridge") for text in after]
    assert all(len(text) <= WIDTH for text in shown), [t for t in shown if len(t) > WIDTH]

    if sig is signal.SIGTERM:  # the next steps it prints, run as printed: send twice, then tail
        for _ in range(2):
            sent = run_printed(after, " send ", tmp_path)
            assert sent.returncode == 0 and "yours-1" in sent.stdout, sent
        session.wait_for("again     yours-1 ")
        session.wait_for("completed yours-1 ")
        tailed = run_printed(after, " tail ", tmp_path, "--timeout", "3")
        assert tailed.returncode == 0 and tailed.stdout.count("yours-1") >= 2, tailed  # queued, completed

    if sig is signal.SIGINT:  # the summary on demand, once
        session.process.send_signal(signal.SIGUSR1)
        block = session.wait_for("  kill -USR1")
        assert SUMMARY in block[block.index("-- summary " + "-" * 69) :]

    session.process.send_signal(sig)
    assert session.finish() == 0
    final = (
        SUMMARY
        if sig is not signal.SIGTERM
        else "18 commands: 15 outcomes, 1 dead letter, 2 duplicates absorbed"
    )
    assert final in session.lines[session.lines.index("stopping: bridge, sandbox, broker ...") :]
    assert session.lines[-3:][0].startswith("broker ")  # the addresses again, last
    assert gone_within([broker], 5) == [], "the embedded broker outlived bridge local"
    assert children(session.process.pid) == []
    assert session.stderr() == ""  # quiet: a normal run logs no warning


def test_a_kill_9_of_bridge_local_takes_the_broker_with_it(tmp_path: Path, session_in: list[Session]):
    session = start(tmp_path, session_in, "--no-examples", "--metrics-port", str(free_port()))
    session.wait_for("STATUS")
    broker = broker_pid(session)
    session.process.kill()
    session.process.wait(10)
    assert gone_within([broker], 5) == [], "the embedded broker outlived a kill -9 of bridge local"


@pytest.mark.parametrize("part", ["metrics", "broker", "sandbox"])
def test_a_taken_port_is_one_line_and_exit_1(tmp_path: Path, session_in: list[Session], part: str):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", METRICS_PORT if part == "metrics" else 0))
        holder.listen()
        port = holder.getsockname()[1]
        flags = [] if part == "metrics" else [f"--{part}-port", str(port)]  # metrics: the default port
        session = start(tmp_path, session_in, *flags)
        code = session.finish()
    err = session.stderr()
    assert code == 1
    taken = f"the {part} port {port} is taken by another process; free it or pass --{part}-port N"
    assert err == f"bridge local: {taken}\n"
    assert session.lines == []  # no banner for a stack that is not there


async def test_a_bridge_that_dies_after_the_checks_is_one_line_and_exit_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    """The port is taken between the check and the bridge binding it: no banner, no dead bridge."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(stack, "check_ports", lambda args: None)
    args = Namespace(
        no_examples=True,
        broker_port=0,
        sandbox_port=0,
        metrics_port=0,
        exit_after=None,
        traces=False,
        verbose=False,
    )
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        args.metrics_port = holder.getsockname()[1]
        code = await asyncio.wait_for(stack.run_local(args), 60)
    out, err = capsys.readouterr()
    assert code == 1
    pattern = r"bridge local: the bridge stopped: cannot serve health and metrics on 127\.0\.0\.1:\d+ .*use\n"
    assert re.fullmatch(pattern, err), err
    assert "broker " not in out and "STATUS" not in out


def test_closing_the_terminal_stops_everything(tmp_path: Path):
    """A real hang-up: bridge local on a pseudo-terminal of its own, whose window then closes (the
    kernel sends SIGHUP, and every later write to the terminal fails)."""
    wait_until_free(METRICS_PORT)
    master, terminal = pty.openpty()
    process = subprocess.Popen(
        [str(BRIDGE), "local"],
        cwd=tmp_path,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        start_new_session=True,
        preexec_fn=lambda: fcntl.ioctl(0, termios.TIOCSCTTY, 0),  # its controlling terminal
    )
    os.close(terminal)
    try:
        seen = b""
        deadline = time.monotonic() + 90
        while SETTLED.encode() not in seen:
            assert time.monotonic() < deadline, seen.decode(errors="replace")
            ready, _, _ = select.select([master], [], [], 1.0)
            if ready:
                seen += os.read(master, 65536)
        broker = [p for p in children(process.pid) if b"tansu" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(broker) == 1
        os.close(master)  # the window closes
        master = -1
        assert process.wait(60) == 0
        assert gone_within(broker, 5) == [], "the embedded broker outlived the terminal"
    finally:
        if master >= 0:
            os.close(master)
        if process.poll() is None:
            process.kill()
            process.wait(10)


def test_traces_and_verbose_logs_on_request(tmp_path: Path, session_in: list[Session]):
    metrics = str(free_port())
    session = start(tmp_path, session_in, "--traces", "--verbose", "--metrics-port", metrics)
    session.wait_for(SETTLED)
    deadline = time.monotonic() + 30
    while len([t for t in session.lines if t.startswith("trace ")]) < 16 and time.monotonic() < deadline:
        session.wait_for("trace ", max(0.1, deadline - time.monotonic()))
    session.process.send_signal(signal.SIGINT)
    assert session.finish() == 0
    traces = [text.split() for text in session.lines if text.startswith("trace ")]
    assert len(traces) == 16  # one per command record (the duplicate's too), each printed once
    assert len({words[2] for words in traces}) == 16
    assert sum(words[1:4] == ["(not", "a", "command)"] for words in traces) == 1  # the junk record
    assert any(words[1] == "zuora-queued" and "POST" in words for words in traces)
    assert f"metrics  http://127.0.0.1:{metrics}/metrics" in session.lines
    assert "INFO    bridge.app: bridge running" in session.stderr()  # --verbose: info logs too
