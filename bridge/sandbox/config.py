"""Sandbox configuration: what every emulated provider shares, and each provider's own settings.

Each ``bridge/sandbox/<provider>.py`` holds its credentials, seed data and timing knobs as module
constants (the defaults ``make run``, the local stack and the tests share: public test credentials,
not secrets) and a settings class :meth:`SandboxConfig.of` returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

Clock = Callable[[], float]
"""Wall-clock seconds since the epoch; injectable so tests can jump past token or key expiry."""

DAY_S = 24 * 3600.0
S = TypeVar("S")


@dataclass(frozen=True, kw_only=True, slots=True)
class SandboxConfig:
    """Everything the sandbox needs. Each provider's sandbox (``bridge/sandbox/<provider>.py``) has
    its own settings class, whose defaults are the module constants there; ``providers`` overrides
    them by provider kind, e.g. ``SandboxConfig(providers={"zuora": ZuoraSandboxSettings(...)})``."""

    providers: Mapping[str, object] = field(default_factory=dict)
    seed: int = 0
    """Seeds the random generator behind fault injection, so a benchmark run is reproducible."""
    request_log_limit: int = 10_000
    shutdown_timeout_s: float = 1.0
    """How long ``stop()`` waits for in-flight (possibly deliberately slow) handlers."""
    clock: Clock = field(default=time.time, repr=False, compare=False)

    def of(self, kind: str, settings: type[S]) -> S:
        """The settings of the sandbox of provider ``kind``: the override given, else the defaults."""
        given = self.providers.get(kind)
        return given if isinstance(given, settings) else settings()
