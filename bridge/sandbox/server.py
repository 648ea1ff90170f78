"""Composition root: the sandbox state, the aiohttp application and a loopback server.

Middleware order, outermost first, and why:

1. ``recording_middleware``: logs what the client sent and the status it finally got.
2. each sandbox's ``outer`` middlewares (Zuora's request ids: injected faults get one too).
3. ``fault_middleware``: injected failures answer before any provider logic runs.
4. each sandbox's ``inner`` middlewares (Zuora's idempotency: marks a key in flight before the
   injected delay starts...)
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
from bridge.sandbox.catalog import SANDBOXES, follow_catalog
from bridge.sandbox.config import SandboxConfig
from bridge.sandbox.faults import FaultBook, delay_middleware, fault_middleware
from bridge.sandbox.spec import Emulation, Emulator
from bridge.sandbox.state import RequestLog


@dataclass(slots=True)
class SandboxState:
    """Everything the sandbox remembers; tests read it through ``RunningSandbox.state``."""

    config: SandboxConfig
    rng: random.Random
    faults: FaultBook
    log: RequestLog
    emulations: dict[str, Emulation]
    """Per provider kind, what its sandbox (``bridge/sandbox/<provider>.py``) serves."""

    @classmethod
    def create(cls, config: SandboxConfig) -> SandboxState:
        rng = random.Random(config.seed)
        follow_catalog()
        emulations = {sandbox.kind: sandbox.emulate(config) for sandbox in SANDBOXES}
        return cls(config, rng, FaultBook(rng), RequestLog(config.request_log_limit), emulations)

    def emulator(self, kind: str) -> Emulator:
        """The main emulator of provider ``kind`` (its API; a token endpoint may come before it)."""
        return self.emulations[kind].emulators[-1]

    def reset(self) -> None:
        """Back to the seeded state: no faults, an empty log, no tokens, no jobs or runs."""
        self.rng.seed(self.config.seed)
        self.faults.clear()
        self.log.clear()
        for emulation in self.emulations.values():
            for emulator in emulation.emulators:
                emulator.reset()

    def revoke_tokens(self) -> None:
        for emulation in self.emulations.values():
            for revoke in emulation.revoke:
                revoke()


STATE_KEY = web.AppKey("sandbox_state", SandboxState)


def build_app(config: SandboxConfig | None = None) -> web.Application:
    """The sandbox application: every provider's sandbox, its token endpoints and ``/_sandbox``."""
    state = SandboxState.create(config or SandboxConfig())
    emulations = state.emulations.values()
    app = web.Application(
        middlewares=[
            recording_middleware(state.log),
            *(m for emulation in emulations for m in emulation.outer),
            fault_middleware(state.faults),
            *(m for emulation in emulations for m in emulation.inner),
            delay_middleware,
        ]
    )
    app[STATE_KEY] = state
    for emulation in emulations:
        for emulator in emulation.emulators:
            app.add_routes(emulator.routes())
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
