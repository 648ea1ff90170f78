"""Composition root: the sandbox state, the aiohttp application and a loopback server.

Middleware order, outermost first, and why:

1. ``recording_middleware``: logs what the client sent and the status it finally got.
2. Zuora ``header_middleware``: every Zuora answer, injected faults included, has a request id.
3. ``fault_middleware``: injected failures answer before any provider logic runs.
4. Zuora ``idempotency_middleware``: marks a key in flight before the injected delay starts...
5. ``delay_middleware``: ...so a duplicate sent during the delay sees the 409.

Example::

    sandbox = await start_sandbox()
    base_url = sandbox.url + "/zuora"
    ...
    await sandbox.stop()
"""

from __future__ import annotations

import random
import ssl
from dataclasses import dataclass
from types import TracebackType

from aiohttp import web

from bridge.sandbox.admin import AdminApi, recording_middleware
from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.eightbyeight import EightByEightSandbox
from bridge.sandbox.faults import FaultBook, delay_middleware, fault_middleware
from bridge.sandbox.state import RequestLog
from bridge.sandbox.workfloo import WorkflooSandbox
from bridge.sandbox.zilliant import SalesforceSandbox, ZilliantSandbox
from bridge.sandbox.zuora import ZuoraSandbox


@dataclass(slots=True)
class SandboxState:
    """Everything the sandbox remembers; tests read it through ``RunningSandbox.state``."""

    config: SandboxConfig
    rng: random.Random
    faults: FaultBook
    log: RequestLog
    salesforce: SalesforceSandbox
    zilliant: ZilliantSandbox
    zuora: ZuoraSandbox
    workfloo: WorkflooSandbox
    eightbyeight: EightByEightSandbox

    @classmethod
    def create(cls, config: SandboxConfig) -> SandboxState:
        rng = random.Random(config.seed)
        salesforce = SalesforceSandbox(config)
        return cls(
            config=config,
            rng=rng,
            faults=FaultBook(rng),
            log=RequestLog(config.request_log_limit),
            salesforce=salesforce,
            zilliant=ZilliantSandbox(config, salesforce.tokens),
            zuora=ZuoraSandbox(config),
            workfloo=WorkflooSandbox(config),
            eightbyeight=EightByEightSandbox(config),
        )

    def reset(self) -> None:
        """Back to the seeded state: no faults, an empty log, no tokens, no jobs or runs."""
        self.rng.seed(self.config.seed)
        self.faults.clear()
        self.log.clear()
        for provider in (self.salesforce, self.zilliant, self.zuora, self.workfloo, self.eightbyeight):
            provider.reset()

    def revoke_tokens(self) -> None:
        self.salesforce.tokens.revoke_all()
        self.zuora.tokens.revoke_all()


STATE_KEY = web.AppKey("sandbox_state", SandboxState)


def build_app(config: SandboxConfig | None = None) -> web.Application:
    """The sandbox application: all four providers, their token endpoints and ``/_sandbox``."""
    state = SandboxState.create(config or SandboxConfig())
    app = web.Application(
        middlewares=[
            recording_middleware(state.log),
            state.zuora.header_middleware,
            fault_middleware(state.faults),
            state.zuora.idempotency_middleware,
            delay_middleware,
        ]
    )
    app[STATE_KEY] = state
    app.add_routes(state.salesforce.routes())
    app.add_routes(state.zilliant.routes())
    app.add_routes(state.zuora.routes())
    app.add_routes(state.workfloo.routes())
    app.add_routes(state.eightbyeight.routes())
    app.add_routes(AdminApi(state.faults, state.log, state.reset, state.revoke_tokens).routes())
    return app


class RunningSandbox:
    """A sandbox serving on loopback; ``stop()`` is idempotent."""

    def __init__(
        self, runner: web.AppRunner, host: str, port: int, state: SandboxState, scheme: str = "http"
    ) -> None:
        self._runner = runner
        self.port = port
        self.url = f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"
        self.state = state
        self._stopped = False

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        await self._runner.cleanup()

    async def __aenter__(self) -> RunningSandbox:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()


async def start_sandbox(
    host: str = "127.0.0.1",
    port: int = 0,
    config: SandboxConfig | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> RunningSandbox:
    """Serve the sandbox on ``host:port``; port 0 picks a free port (read back from the socket).

    With ``ssl_context`` it serves HTTPS (for tests of certificate verification)."""
    config = config or SandboxConfig()
    app = build_app(config)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=config.shutdown_timeout_s)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        bound_port = int(runner.addresses[0][1])
    except BaseException:
        await runner.cleanup()
        raise
    scheme = "https" if ssl_context else "http"
    return RunningSandbox(runner, host, bound_port, app[STATE_KEY], scheme)
