"""Every sandbox: ``bridge/sandbox/<p>.py`` for each provider module ``bridge/providers/<p>.py`` that
has one, declaring a ``SANDBOX`` (:class:`bridge.sandbox.spec.SandboxSpec`), in the catalog's order.

Example::

    for sandbox in SANDBOXES:
        emulation = sandbox.emulate(config)
"""

from __future__ import annotations

import importlib
import importlib.util

from bridge.providers.catalog import CATALOG
from bridge.sandbox.spec import SandboxSpec


def discover() -> tuple[SandboxSpec, ...]:
    found: list[SandboxSpec] = []
    for spec in CATALOG.specs:
        name = f"{__package__}.{spec.target.__module__.rsplit('.', 1)[1]}"
        if importlib.util.find_spec(name) is not None:
            sandbox = getattr(importlib.import_module(name), "SANDBOX", None)
            if isinstance(sandbox, SandboxSpec) and sandbox.kind == spec.kind:
                found.append(sandbox)
    return tuple(found)


SANDBOXES = discover()


def fault_keys() -> tuple[str, ...]:
    """What faults can be set for: every sandbox's API, then their token endpoints."""
    return (*(s.fault_keys[0] for s in SANDBOXES), *(k for s in SANDBOXES for k in s.fault_keys[1:]))


def provider_of(path: str) -> str | None:
    """Which sandbox part a request path belongs to; None for admin and unknown paths."""
    relative = path.lstrip("/")
    return next((key for s in SANDBOXES if (key := s.fault_key(relative)) is not None), None)
