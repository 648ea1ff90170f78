"""Provider TLS: certificates are verified by default, and a per-target CA bundle is honoured."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bridge.http import AiohttpTransport
from bridge.local.stack import SANDBOX_ENV
from bridge.messages.outcomes import Status
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor, TargetRuntime
from bridge.pipeline.guards import CircuitBreaker, TokenBucket
from bridge.providers.catalog import CATALOG
from bridge.providers.oauth import ssl_context_for
from bridge.providers.parsing import parse_any
from bridge.providers.settings import parse_settings
from bridge.sandbox import start_sandbox
from bridge.sandbox.workfloo import WORKFLOO_DEFINITION_WITH_LINKS, WORKFLOO_SCENARIO
from tests.certs import issue, make_ca


@pytest.fixture
def certificates(tmp_path: Path) -> Path:
    make_ca(tmp_path)
    issue(tmp_path, "server", "127.0.0.1", ip_san="127.0.0.1")
    return tmp_path


@pytest.fixture
async def https_sandbox(certificates: Path) -> AsyncIterator[Any]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificates / "server.crt", certificates / "server.key")
    running = await start_sandbox("127.0.0.1", 0, ssl_context=context)
    yield running
    await running.stop()


async def execute(url: str, ca_file: Path | None) -> Any:
    target: dict[str, Any] = {
        "provider": "workfloo",
        "base_url": f"{url}/workfloo-sandbox",
        "api_key": {"env": "SANDBOX_WORKFLOO_API_KEY"},
        "retry": {"max_attempts": 1},
    }
    if ca_file is not None:
        target["ca_file"] = str(ca_file)
    settings = parse_settings({"targets": {"w": target}}, SANDBOX_ENV).targets["w"]
    command = parse_any(
        {
            "id": "tls-1",
            "target": "w",
            "operation": "workfloo.execute",
            "definition_id": WORKFLOO_DEFINITION_WITH_LINKS,
            "scenario_id": WORKFLOO_SCENARIO,
        }
    )
    async with aiohttp.ClientSession() as session:
        runtime = TargetRuntime(
            "w",
            settings,
            CATALOG.build("w", settings, session),
            CircuitBreaker(settings.circuit),
            TokenBucket(settings.rate_limit),
            ssl_context_for(settings.ca_file),
        )
        return await Executor(AiohttpTransport(session), Metrics(), Redactor(), 2048).execute(
            runtime, command
        )


async def test_an_unknown_certificate_authority_is_refused(https_sandbox: Any) -> None:
    assert https_sandbox.url.startswith("https://")
    result = await execute(https_sandbox.url, ca_file=None)
    assert result.status is Status.ERROR
    assert result.error is not None and result.error.kind.value == "unreachable"
    assert "Certificate" in result.error.message


async def test_the_targets_ca_file_is_trusted(https_sandbox: Any, certificates: Path) -> None:
    result = await execute(https_sandbox.url, ca_file=certificates / "ca.crt")
    assert result.status is Status.QUEUED and result.reference
