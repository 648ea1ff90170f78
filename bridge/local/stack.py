"""``bridge local``: broker, topics, sandbox and bridge in one process, plus the example commands.

:func:`run_local` starts them in that order, prints the addresses, sends the examples and shows
what arrives on the topics (:mod:`bridge.local.watch`) until SIGINT, SIGTERM or SIGHUP; then it
stops them in the reverse order and prints the summary. SIGUSR1 prints the summary at any time.
An operator mistake (a taken port) or a part that dies (the bridge, the broker) is one line on
stderr and exit code 1; the embedded broker never outlives the command (:mod:`bridge.local.broker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
import sys
import time
from argparse import Namespace
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import orjson
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from bridge.app import Bridge
from bridge.config.settings import Settings, TopicSettings
from bridge.contracts.cli import apply_shipped_specs
from bridge.errors import StartupError
from bridge.kafka.clients import started
from bridge.local import examples, guide
from bridge.local.broker import RunningBroker, port_taken, start_broker
from bridge.local.commands import command_topic
from bridge.local.otlp import OtlpReceiver, ReceivedSpan
from bridge.local.screen import fit
from bridge.local.watch import Console, Watcher
from bridge.providers.settings import parse_settings
from bridge.sandbox import start_sandbox
from bridge.sandbox.catalog import SANDBOXES
from bridge.sandbox.spec import Example
from bridge.status.lookup import find
from bridge.status.scan import LookupError_
from bridge.status.story import assemble, render

# Credentials the sandbox accepts, handed to the bridge the way production does: environment variables.
SANDBOX_ENV = {name: value for sandbox in SANDBOXES for name, value in sandbox.local.env.items()}


def sandbox_targets(sandbox_url: str) -> dict[str, Any]:
    """Target configuration for every sandbox provider (and the extra targets a sandbox declares)."""
    common = {
        "allow_http": True,
        "timeouts": {"connect_s": 2, "total_s": 10},
        "retry": {"max_attempts": 3, "base_backoff_s": 0.05, "max_backoff_s": 0.5, "budget_s": 10},
    }
    return {
        name: {**common, **target}
        for sandbox in SANDBOXES
        for name, target in sandbox.local.targets(sandbox_url).items()
    }


def local_config(
    bootstrap: str,
    sandbox_url: str,
    *,
    metrics_port: int | None = 0,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The raw (YAML-shaped) configuration of a bridge talking to the embedded broker and sandbox."""
    raw: dict[str, Any] = {
        "kafka": {
            "bootstrap_servers": bootstrap,
            "enable_idempotence": False,
            "group_id": "workflow-bridge-local",
            "session_timeout_ms": 4000,
            "heartbeat_interval_ms": 800,
            "fetch_max_wait_ms": 10,
            "linger_ms": 1,
        },
        "engine": {"commit_interval_s": 0.2, "drain_grace_s": 5},
        "observability": {"host": "127.0.0.1", "port": metrics_port},
        "targets": sandbox_targets(sandbox_url),
    }
    return deep_merge(raw, overrides or {})


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in overrides.items():
        current = merged.get(key)
        if isinstance(value, Mapping) and isinstance(current, Mapping):
            merged[key] = deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def local_settings(
    bootstrap: str,
    sandbox_url: str,
    *,
    metrics_port: int | None = 0,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    raw = local_config(bootstrap, sandbox_url, metrics_port=metrics_port, overrides=overrides)
    return parse_settings(raw, {**SANDBOX_ENV, **(environ or {})}, "<local stack>")


def topic_layout(topics: TopicSettings, partitions: int = 4) -> dict[str, int]:
    paired = [*topics.routes, *topics.routes.values()]
    # the ledger and the parking topic are co-partitioned with the command topics
    internal = dict.fromkeys((topics.ledger, topics.parked, topics.lifecycle), partitions)
    return {**dict.fromkeys(paired, partitions), topics.dead_letter: 1, **internal}


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
LOCAL_DIR = Path(".local")


class LocalError(Exception):
    """Why ``bridge local`` cannot go on, in words an operator can act on: one line, exit code 1."""


async def run_local(args: Namespace) -> int:
    with quiet_logs(verbose=getattr(args, "verbose", False)):
        return await _run_local(args)


async def _run_local(args: Namespace) -> int:
    console = Console()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    local = LocalStack(args, console, stop)
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, local.show_summary)
    try:
        await local.run()
    except LocalError as exc:
        with contextlib.suppress(OSError):  # a terminal already gone cannot show it either
            print(f"bridge local: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        for sig in (*STOP_SIGNALS, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
    return 0


@contextlib.contextmanager
def quiet_logs(verbose: bool) -> Iterator[None]:
    """Leave out what the screen shows already; the loggers are as before on the way out (it also
    runs inside tests). The level (warnings and up, ``--verbose``: info) is the command line's."""
    quieted = {name: logging.getLogger(name) for name in ("bridge.outcome", "bridge.dlq", "bridge.app")}
    levels = {name: lg.level for name, lg in quieted.items()}
    quieted["bridge.outcome"].setLevel(logging.WARNING)  # the screen shows every outcome
    if not verbose:
        quieted["bridge.dlq"].setLevel(logging.ERROR)  # and every dead letter
        quieted["bridge.app"].addFilter(_not_the_first_readiness)
    try:
        yield
    finally:
        quieted["bridge.app"].removeFilter(_not_the_first_readiness)
        for name, level in levels.items():
            quieted[name].setLevel(level)


def _not_the_first_readiness(record: logging.LogRecord) -> bool:
    """The bridge is not ready before it has connected, on every start: no news on this screen."""
    return "connecting to the Kafka broker" not in record.getMessage()


class LocalStack:
    def __init__(self, args: Namespace, console: Console, stop: asyncio.Event) -> None:
        self.args = args
        self.console = console
        self.stop = stop
        self.run_id = time.strftime("demo-%H%M%S")
        self.watcher: Watcher | None = None
        self.settings: Settings | None = None
        self.addresses: list[str] = []
        self._started = time.monotonic()

    async def run(self) -> None:
        check_ports(self.args)
        async with contextlib.AsyncExitStack() as stack:
            bridge_task, broker = await self._start(stack)
            if not self.stop.is_set():
                await self._until_stopped(bridge_task, broker)
            self.console.print("", "stopping: bridge, sandbox, broker ...")
        self.console.print(*self._summary(), *self.addresses)

    async def _start(self, stack: contextlib.AsyncExitStack) -> tuple[asyncio.Task[None], RunningBroker]:
        try:
            LOCAL_DIR.mkdir(exist_ok=True)  # noqa: ASYNC240 - one mkdir before anything runs
        except OSError as exc:
            raise LocalError(f"cannot create {LOCAL_DIR}/ in this folder: {exc.strerror}") from exc
        log_path = LOCAL_DIR / "broker.log"
        try:
            broker = await start_broker(self.args.broker_port, log_path=log_path)
        except RuntimeError as exc:
            raise LocalError(f"the broker did not start: {exc} (its log: {log_path})") from exc
        stack.push_async_callback(broker.stop)
        try:
            sandbox = await start_sandbox("127.0.0.1", self.args.sandbox_port)
        except OSError as exc:  # its port taken since the check
            raise LocalError(f"the sandbox did not start: {exc.strerror or exc}") from exc
        stack.push_async_callback(sandbox.stop)
        # the embedded broker this command starts grants no transactional producer: at-least-once, said here
        overrides: dict[str, Any] = {"kafka": {"transactions": "off"}}
        if getattr(self.args, "traces", False):
            receiver = OtlpReceiver(on_spans=self._show_traces)
            await receiver.start()
            stack.push_async_callback(receiver.stop)
            overrides["observability"] = {"tracing": {"enabled": True, "endpoint": receiver.url}}
        settings = local_settings(
            broker.bootstrap, sandbox.url, metrics_port=self.args.metrics_port, overrides=overrides
        )
        try:
            await apply_shipped_specs(broker.bootstrap)  # as `bridge topics apply`: `check` agrees
        except KafkaError as exc:
            raise LocalError(f"cannot create the topics on the broker: {exc}") from exc
        self.settings = settings
        bridge = Bridge(settings)
        bridge_task = asyncio.create_task(bridge.run(), name="bridge")
        stack.push_async_callback(_stop_bridge, bridge, bridge_task)
        await _listening(bridge, bridge_task)
        records = [] if self.args.no_examples else examples.example_records(self.run_id)
        self.watcher = Watcher(settings, self.console, prefix=f"{self.run_id}-", expected=len(records))
        watch_task = asyncio.create_task(self.watcher.run(), name="watcher")
        stack.push_async_callback(_cancel, watch_task)
        self.addresses = guide.addresses(broker.bootstrap, sandbox.url, bridge.health_port)
        self.console.print(*guide.banner(os.getpid(), self.addresses, len(records), f"{self.run_id}-"))
        self._started = time.monotonic()
        if records:
            await _send(settings, records)
        return bridge_task, broker

    async def _until_stopped(self, bridge_task: asyncio.Task[None], broker: RunningBroker) -> None:
        assert self.watcher is not None
        exit_after = self.args.exit_after
        deadline = None if exit_after is None else time.monotonic() + exit_after
        stopped = asyncio.create_task(self.stop.wait())
        broker_exit = asyncio.create_task(_exit_code(broker))
        settled = asyncio.create_task(self.watcher.settled.wait())
        shown = False
        try:
            while not stopped.done():
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                waiting = {stopped, bridge_task, broker_exit} | ({settled} if not settled.done() else set())
                await asyncio.wait(waiting, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if bridge_task.done():
                    raise LocalError(_bridge_ended(bridge_task))
                if broker_exit.done():
                    code = broker_exit.result()
                    raise LocalError(f"the broker exited (code {code}); its log: {LOCAL_DIR / 'broker.log'}")
                if settled.done() and not shown:
                    shown = True
                    self._settled_block()
                    await self._show_lookup()
                if deadline is not None and time.monotonic() >= deadline:
                    return
        finally:
            for task in (stopped, broker_exit, settled):
                await _cancel(task)

    async def _show_lookup(self) -> None:
        """One ``bridge status`` lookup, of the first example (sent twice: its duplicate was absorbed)."""
        if self.settings is None or self.args.no_examples:
            return
        key, doc = examples.example_commands(self.run_id)[0]
        command_id = str(doc["id"])
        try:
            story = assemble(await find(self.settings, command_id, key))
        except (LookupError_, KafkaError) as exc:
            self.console.print(fit(f"bridge status {command_id}: {exc}"))
            return
        where = self.settings.kafka.bootstrap_servers
        option = f" --key {key.decode()}" if key and key != command_id.encode() else ""
        lines = [f"$ bridge status --bootstrap {where}{option} {command_id}", *render(story).splitlines()]
        self.console.print("", *(fit(line) for line in lines), "")

    def _show_traces(self, spans: list[ReceivedSpan]) -> None:
        if self.watcher is not None:
            self.watcher.show_traces(spans)

    def _summary(self) -> list[str]:
        return self.watcher.tally.summary() if self.watcher is not None else ["nothing seen yet"]

    def show_summary(self) -> None:
        """SIGUSR1: the tally so far, the addresses and what to try next."""
        self.console.print(*guide.block("summary", self._summary(), self.addresses, self._next()))

    def _settled_block(self) -> None:
        took = f"examples settled in {time.monotonic() - self._started:.1f}s"
        self.console.print(*guide.block(took, self._summary(), self.addresses, self._next()))

    def _next(self) -> list[str]:
        """The commands to try next; the one to send is written to .local/command.json."""
        if not self.addresses:
            return []
        path: Path | None = LOCAL_DIR / "command.json"
        try:
            (LOCAL_DIR / "command.json").write_bytes(
                orjson.dumps(examples.your_command(self.run_id), option=orjson.OPT_INDENT_2)
            )
        except OSError:  # the folder went away: the hints stay useful without the file
            path = None
        exe = guide.bridge_executable(sys.argv[0], Path.cwd())
        return guide.next_steps(exe, self.addresses[0].split()[-1], path, os.getpid())


def check_ports(args: Namespace) -> None:
    """A port given on the command line that something else holds: say which, before starting."""
    for part, port in (
        ("broker", args.broker_port),
        ("sandbox", args.sandbox_port),
        ("metrics", args.metrics_port),
    ):
        if port and port_taken(port):
            flag = f"--{part}-port"
            raise LocalError(f"the {part} port {port} is taken by another process; free it or pass {flag} N")


async def _listening(bridge: Bridge, task: asyncio.Task[None]) -> None:
    """Until the bridge serves its health and metrics port; a LocalError if it dies first."""
    while bridge.health_port is None and not task.done():  # noqa: ASYNC110 - Bridge has no event for it
        await asyncio.sleep(0.02)
    if task.done():
        raise LocalError(_bridge_ended(task))


def _bridge_ended(task: asyncio.Task[None]) -> str:
    exc = None if task.cancelled() else task.exception()
    if exc is None:
        return "the bridge stopped on its own; run with --verbose to see why"
    if isinstance(exc, OSError) and exc.errno == errno.EADDRINUSE:
        return f"the bridge stopped: a port it needs is taken ({exc.strerror or exc})"
    if isinstance(exc, StartupError):  # an operator's mistake, told in words that say what to do
        return f"the bridge stopped: {exc}"
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return f"the bridge stopped ({type(exc).__name__}): {reason}"


async def _stop_bridge(bridge: Bridge, task: asyncio.Task[None]) -> None:
    bridge.request_stop()
    with contextlib.suppress(Exception):  # its failure was reported already
        await task


async def _cancel(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task


async def _exit_code(broker: RunningBroker) -> int:
    while (code := broker.process.poll()) is None:  # noqa: ASYNC110 - a Popen cannot be awaited
        await asyncio.sleep(0.5)
    return code


async def _send(settings: Settings, records: list[Example]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap_servers)
    async with started(producer):
        for key, doc in records:
            if isinstance(doc, bytes):
                await producer.send_and_wait(settings.topics.run_commands, doc, key=key)
            else:
                await producer.send_and_wait(command_topic(settings, doc), orjson.dumps(doc), key=key)
