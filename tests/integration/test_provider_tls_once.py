"""A target's CA bundle is loaded once: the context that verifies its API calls verifies its token
fetches too (an OAuth provider used to build a second one)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.app import build_targets
from bridge.config.loading import secret_values
from bridge.http import AiohttpTransport
from bridge.messages.outcomes import Status
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor
from bridge.providers.parsing import parse_any
from bridge.providers.settings import parse_settings
from bridge.sandbox import start_sandbox
from bridge.sandbox import zuora as zuora_sandbox
from tests.certs import issue, make_ca
from tests.integration.conftest import zuora_command

pytestmark = pytest.mark.integration


@pytest.fixture
async def https_sandbox(tmp_path: Path) -> AsyncIterator[Any]:
    make_ca(tmp_path)
    issue(tmp_path, "server", "127.0.0.1", ip_san="127.0.0.1")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "server.crt", tmp_path / "server.key")
    running = await start_sandbox("127.0.0.1", 0, ssl_context=context)
    yield running
    await running.stop()


async def test_one_ca_bundle_load_verifies_token_fetches_and_calls(
    https_sandbox: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    original = ssl.SSLContext.load_verify_locations

    def counted(self: ssl.SSLContext, cafile: Any = None, *args: Any, **kwargs: Any) -> None:
        loads.append(str(cafile))
        original(self, cafile, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    targets = zuora_sandbox.SANDBOX.local.targets(https_sandbox.url)
    target = {**targets[zuora_sandbox.LOCAL_TARGET], "ca_file": str(tmp_path / "ca.crt")}
    settings = parse_settings({"targets": {"billing": target}}, dict(zuora_sandbox.SANDBOX.local.env))
    async with aiohttp.ClientSession() as session:
        runtime = build_targets(settings, session, Metrics())["billing"]
        assert loads == [str(tmp_path / "ca.crt")]
        executor = Executor(AiohttpTransport(session), Metrics(), Redactor(secret_values(settings)), 2048)
        command = parse_any({**zuora_command("tls-once"), "target": "billing"})
        decision = await executor.execute(runtime, command)
    assert decision.status is Status.QUEUED, decision  # a token fetch, then the call: both over verified TLS
    assert loads == [str(tmp_path / "ca.crt")]
