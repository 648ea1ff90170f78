"""What a sandbox module (``bridge/sandbox/<provider>.py``) declares in its ``SANDBOX``.

The server, the admin API, fault injection and the local stack (``make run``) iterate over the
sandboxes :mod:`bridge.sandbox.catalog` finds; none of them names a provider.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web
from aiohttp.typedefs import Middleware

from bridge.sandbox.config import SandboxConfig

Example = tuple[bytes | None, Any]
"""A ``make run`` example: the Kafka key and the command document."""


class Emulator(Protocol):
    def routes(self) -> list[web.RouteDef]: ...

    def reset(self) -> None:
        """Back to the seeded state."""


@dataclass(frozen=True, slots=True)
class Emulation:
    """What one sandbox serves: its emulators (their routes in this order) and its hooks."""

    emulators: tuple[Emulator, ...]
    outer: tuple[Middleware, ...] = ()
    """Middlewares in front of fault injection (so injected faults pass through them too)."""
    inner: tuple[Middleware, ...] = ()
    """Middlewares behind fault injection and in front of the injected delay."""
    revoke: tuple[Callable[[], None], ...] = ()
    """Revoke every token it issued (``DELETE /_sandbox/tokens``)."""


@dataclass(frozen=True, slots=True)
class LocalTargets:
    """What ``make run`` configures for this sandbox and sends to it."""

    targets: Callable[[str], dict[str, dict[str, Any]]]
    """Sandbox URL -> target name -> its provider-specific settings (YAML-shaped)."""
    env: Mapping[str, str]
    """The environment variables those settings read credentials from, with the values it accepts."""
    examples: Callable[[Callable[[str], str]], list[Example]]
    """The example commands, given the function that makes a command id unique to the run."""


@dataclass(frozen=True, slots=True)
class SandboxSpec:
    kind: str
    """The provider kind it emulates (``bridge.providers.catalog``)."""
    fault_keys: tuple[str, ...]
    """The names faults can be set for (``PUT /_sandbox/faults/{name}``): its API first."""
    fault_key: Callable[[str], str | None]
    """Which of ``fault_keys`` a request path (without its leading '/') belongs to; None: not its own."""
    emulate: Callable[[SandboxConfig], Emulation]
    local: LocalTargets
