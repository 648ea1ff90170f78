"""Child processes of the benchmark (sandbox, bridge) and their resource usage read from /proc.

Every child is started by :class:`Child`; ``stop()`` sends SIGTERM, waits, then SIGKILLs, so the
benchmark never leaves a process behind, even on failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from bridge.local.broker import die_with_parent_hook

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class ProcSample:
    at: float
    """time.time() of the sample"""
    cpu_s: float
    """user + system CPU seconds since the process started"""
    rss_mb: float
    peak_rss_mb: float
    """VmHWM: the resident set's high-water mark"""


def read_proc(pid: int) -> ProcSample | None:
    """CPU and memory of a live process from /proc; None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    mem = {}
    for line in status.splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            mem[name] = int(value.split()[0]) / 1024
    return ProcSample(time.time(), cpu_s, mem.get("VmRSS", 0.0), mem.get("VmHWM", 0.0))


@dataclass
class Child:
    """A child process with its log file; always stopped through ``stop()``."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    samples: list[ProcSample] = field(default_factory=list)

    @classmethod
    def spawn(cls, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> Child:
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=die_with_parent_hook(),  # an interrupted benchmark leaves no bridge running
            )
        return cls(name, process, log_path)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def sample(self) -> ProcSample | None:
        found = read_proc(self.pid)
        if found is not None:
            self.samples.append(found)
        return found

    def stop(self, grace_s: float = 30.0) -> int | None:
        """SIGTERM, wait ``grace_s``, then SIGKILL. Returns the exit code."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                self.process.wait(10)
        return self.process.returncode

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


async def sample_until(child: Child, stop: asyncio.Event, every_s: float = 0.1) -> None:
    """Record CPU/RSS samples of ``child`` until ``stop`` is set (or the child exits)."""
    while not stop.is_set() and child.sample() is not None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


def cpu_between(samples: list[ProcSample], start: float, end: float) -> float | None:
    """CPU seconds spent between two instants, from the samples around them."""
    before = [s for s in samples if s.at <= start]
    after = [s for s in samples if s.at >= end] or samples[-1:]
    if not after:
        return None
    first = before[-1] if before else samples[0]
    return max(0.0, after[0].cpu_s - first.cpu_s)


def machine_busy_s() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat), to spot other load."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def python_module(*args: str) -> list[str]:
    return [sys.executable, "-m", *args]


async def wait_http(child: Child, url: str, timeout_s: float = 20.0) -> None:
    """Poll ``url`` until it answers 200; fail early when the child has exited."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if not child.alive():
                raise RuntimeError(f"{child.name} exited early:\n{child.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError):
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout_s}s:\n{child.log_tail()}")
