"""The provider conformance kit: a test class a provider's author subclasses in their own CI.

It runs the provider as the bridge runs it (the catalog, the real executor, aiohttp) against the
provider's sandbox emulation over real HTTP, and checks what every provider owes the bridge: its
commands parse strictly, its requests arrive on the wire as built, every documented status is
classified as documented, its status reads reach each terminal state, no credential appears in an
outcome or a log line, and ids in a path are encoded. Example (a plugin's ``tests/test_conformance.py``)::

    from bridge.conformance import ProviderConformance
    from bridge.providers.api import RunState, Status

    class TestAirflow(ProviderConformance):
        kind = "airflow"
        plugins = ("airflow",)
        documented = {"airflow.trigger_dag_run": {200: Status.QUEUED, 404: Status.REJECTED, ...}}
        terminal_runs = {RunState.COMPLETED: {"operation": "airflow.trigger_dag_run", "dag_id": "etl"}}

It needs pytest and pytest-asyncio (its async tests carry the asyncio mark). The sandbox's
``LocalTargets`` supply the targets (the first is the one commands go to) and the
example commands sent over the wire; ``sandbox_settings`` makes its runs short.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any, ClassVar
from urllib.parse import unquote

import aiohttp
import orjson
import pytest
import pytest_asyncio
from pydantic import ValidationError

from bridge.config.loading import secret_values
from bridge.config.settings import Settings
from bridge.errors import CommandRejected
from bridge.http import AiohttpTransport
from bridge.messages.commands import Command
from bridge.messages.outcomes import Status
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor, TargetRuntime
from bridge.pipeline.guards import CircuitBreaker, TokenBucket
from bridge.providers.api import RunReading, RunState, segment
from bridge.providers.catalog import CATALOG, AnySpec
from bridge.providers.parsing import parse_any
from bridge.providers.plugins import enable, incompatibility
from bridge.providers.settings import parse_settings
from bridge.sandbox.catalog import SANDBOXES
from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.server import RunningSandbox, start_sandbox
from bridge.sandbox.spec import SandboxSpec

ODD_ID = "a/b c?d#e%f:g+h"
"""A path id that only arrives intact when the request builder encodes it."""
TERMINAL_WITHIN_S = 15.0


class ProviderConformance:
    kind: ClassVar[str]
    plugins: ClassVar[tuple[str, ...]] = ()
    """The plugins to load (a plugin's own kind); empty for a built-in."""
    sandbox_settings: ClassVar[object | None] = None
    """The provider's sandbox settings for these tests (short runs); None: its defaults."""
    documented: ClassVar[Mapping[str, Mapping[int, Status]]] = {}
    """Per operation, every HTTP status its API documents and the outcome status it must give."""
    error_bodies: ClassVar[Mapping[int, bytes]] = {}
    """An error body the API sends with a status (problem+json, ...), classified with it."""
    terminal_runs: ClassVar[Mapping[RunState, Mapping[str, Any]]] = {}
    """Per terminal state, a run command (without id and target) whose run the sandbox ends in it."""

    # -- fixtures ---------------------------------------------------------------------------------

    @pytest.fixture
    def catalog(self) -> Iterator[None]:
        enable(self.plugins)
        try:
            yield
        finally:
            enable(())

    @pytest.fixture
    def spec(self, catalog: None) -> AnySpec:
        return CATALOG.spec(self.kind)

    @pytest_asyncio.fixture
    async def sandbox(self, catalog: None) -> AsyncIterator[RunningSandbox]:
        providers = {self.kind: self.sandbox_settings} if self.sandbox_settings is not None else {}
        async with await start_sandbox(config=SandboxConfig(providers=providers)) as running:
            yield running

    @pytest.fixture
    def emulation(self, sandbox: RunningSandbox) -> SandboxSpec:
        return next(s for s in SANDBOXES if s.kind == self.kind)

    @pytest.fixture
    def settings(self, sandbox: RunningSandbox, emulation: SandboxSpec) -> Settings:
        targets = {n: {**t, "allow_http": True} for n, t in emulation.local.targets(sandbox.url).items()}
        raw = {"providers": {"plugins": list(self.plugins)}, "targets": targets}
        return parse_settings(raw, dict(emulation.local.env))

    @pytest_asyncio.fixture
    async def session(self) -> AsyncIterator[aiohttp.ClientSession]:
        async with aiohttp.ClientSession() as session:
            yield session

    @pytest.fixture
    def runtimes(self, settings: Settings, session: aiohttp.ClientSession) -> dict[str, TargetRuntime]:
        return {
            name: TargetRuntime(
                name,
                target,
                CATALOG.build(name, target, session),
                CircuitBreaker(target.circuit),
                TokenBucket(target.rate_limit),
                ssl=True,
            )
            for name, target in settings.targets.items()
        }

    @pytest.fixture
    def executor(self, settings: Settings, session: aiohttp.ClientSession) -> Executor:
        return Executor(AiohttpTransport(session), Metrics(), Redactor(secret_values(settings)), 2048)

    # -- helpers ----------------------------------------------------------------------------------

    def example_doc(self, spec: AnySpec, index: int) -> dict[str, Any]:
        command = spec.commands[index]
        return {"id": f"conf-{index}", "operation": command.operation, **command.example.fields}

    def local_commands(self, sandbox: RunningSandbox, emulation: SandboxSpec) -> list[Command]:
        """The sandbox's example commands that parse (some show the dead-letter path on purpose)."""
        commands = []
        for _, doc in emulation.local.examples(lambda name: f"conformance-{name}"):
            try:
                commands.append(parse_any(doc.get("data", doc) if "specversion" in doc else doc))
            except ValidationError:
                continue
        return commands

    # -- the checks -------------------------------------------------------------------------------

    def test_declares_a_compatible_api_version(self, spec: AnySpec) -> None:
        assert incompatibility(spec.api_version) is None, incompatibility(spec.api_version)

    def test_every_command_parses_strictly(self, spec: AnySpec) -> None:
        for index in range(len(spec.commands)):
            doc = self.example_doc(spec, index)
            assert parse_any(doc).operation == doc["operation"]
            with pytest.raises(ValidationError):
                parse_any({**doc, "unexpected_field": 1})
            for name, value in doc.items():
                if name in ("id", "operation", "target"):
                    continue
                wrong: Any = str(value) if isinstance(value, int) and not isinstance(value, bool) else None
                wrong = 12345 if isinstance(value, str) else wrong
                if wrong is not None:
                    with pytest.raises(ValidationError):
                        parse_any({**doc, name: wrong})

    def test_every_documented_status_is_classified_as_documented(
        self, spec: AnySpec, runtimes: dict[str, TargetRuntime]
    ) -> None:
        provider = next(iter(runtimes.values())).provider
        operations = {c.operation: i for i, c in enumerate(spec.commands)}
        assert set(self.documented) <= set(operations), "documented names an operation the spec lacks"
        for operation, statuses in self.documented.items():
            command = parse_any(self.example_doc(spec, operations[operation]))
            for status, expected in statuses.items():
                body = self.error_bodies.get(status, b"")
                verdict = provider.classify(command, status, {}, body)
                assert verdict.status is expected, f"{operation} {status}: {verdict.status} != {expected}"
            for status, retryable in ((429, True), (500, True), (503, True)):
                assert provider.classify(command, status, {}, b"").retryable is retryable
            assert provider.classify(command, 401, {}, b"").refresh_auth

    @pytest.mark.asyncio
    async def test_requests_arrive_on_the_wire_as_built(
        self,
        sandbox: RunningSandbox,
        emulation: SandboxSpec,
        runtimes: dict[str, TargetRuntime],
        executor: Executor,
    ) -> None:
        commands = self.local_commands(sandbox, emulation)
        assert commands, "the sandbox declares no example commands to send"
        for command in commands:
            runtime = runtimes[command.target]
            request = runtime.provider.build_request(command)
            sandbox.state.log.clear()
            decision = await executor.execute(runtime, command)
            assert decision.status in Status
            wanted = (request.path, unquote(request.path))
            sent = [r for r in sandbox.state.log.entries() if r.path.endswith(wanted)]
            assert sent, (
                f"{command.operation}: no {request.method} {request.path} reached the sandbox ({decision})"
            )
            assert sent[-1].method == request.method

    @pytest.mark.asyncio
    async def test_status_reads_reach_each_terminal_state(
        self, spec: AnySpec, runtimes: dict[str, TargetRuntime], executor: Executor
    ) -> None:
        if not self.terminal_runs:
            pytest.skip("terminal_runs declares no run to follow")
        name, runtime = next(iter(runtimes.items()))
        read = CATALOG.status_read(runtime.settings)
        for number, (state, fields) in enumerate(self.terminal_runs.items()):
            command = parse_any({"id": f"conf-run-{number}", "target": name, **fields})
            decision = await executor.execute(runtime, command)
            assert decision.status is Status.QUEUED, decision
            ref = read.ref(command, decision.reference)
            assert ref is not None
            reading = None
            until = time.monotonic() + TERMINAL_WITHIN_S
            while time.monotonic() < until:
                response = await executor.status_read(runtime, read.request(ref))
                assert response is not None
                reading = read.classify(response.status, response.headers, response.body, ref)
                if isinstance(reading, RunReading) and reading.state.terminal:
                    break
                await asyncio.sleep(0.1)
            assert isinstance(reading, RunReading) and reading.state is state, f"{state}: {reading}"

    @pytest.mark.asyncio
    async def test_no_secret_in_outcomes_or_logs(
        self,
        sandbox: RunningSandbox,
        emulation: SandboxSpec,
        settings: Settings,
        runtimes: dict[str, TargetRuntime],
        executor: Executor,
        caplog: pytest.LogCaptureFixture,
    ) -> None:
        secrets = [s for s in secret_values(settings) if len(s) >= 4]
        assert secrets, "the sandbox's targets carry no credential"
        caplog.set_level(logging.DEBUG)
        for command in self.local_commands(sandbox, emulation):
            decision = await executor.execute(runtime := runtimes[command.target], command)
            shown = orjson.dumps(decision, default=repr).decode() + repr(decision)
            await runtime.provider.auth_headers()
            for secret in secrets:
                assert secret not in shown, f"{command.operation}: a credential is in the outcome"
                assert secret not in caplog.text, f"{command.operation}: a credential is in a log line"

    def test_ids_in_paths_are_encoded(self, spec: AnySpec, runtimes: dict[str, TargetRuntime]) -> None:
        provider = next(iter(runtimes.values())).provider
        for index in range(len(spec.commands)):
            doc = self.example_doc(spec, index)
            request = provider.build_request(parse_any(doc))
            for name, value in doc.items():
                if not isinstance(value, str) or segment(value) not in request.path.split("/"):
                    continue
                try:
                    odd = parse_any({**doc, name: ODD_ID})
                except ValidationError:
                    continue  # the model refuses such an id: it cannot reach a path
                try:
                    path = provider.build_request(odd).path
                except CommandRejected:
                    continue
                assert segment(ODD_ID) in path.split("/"), f"{doc['operation']}.{name} is not encoded: {path}"
