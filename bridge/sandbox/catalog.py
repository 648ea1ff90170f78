"""Every sandbox: ``bridge/sandbox/<p>.py`` for each provider module ``bridge/providers/<p>.py`` that
has one, declaring a ``SANDBOX`` (:class:`bridge.sandbox.spec.SandboxSpec`), in the catalog's order;
then the sandboxes of the plugin providers loaded into the catalog (entry points of
``workflow_bridge.sandboxes`` named after the provider kind, :func:`follow_catalog`).

Example::

    for sandbox in SANDBOXES:
        emulation = sandbox.emulate(config)
"""

from __future__ import annotations

import importlib
import importlib.util

from bridge.providers.catalog import CATALOG
from bridge.providers.plugins import SANDBOX_GROUP, PluginError, installed, load_entry_point, plugin_kinds
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


BUILTIN = discover()
SANDBOXES: list[SandboxSpec] = list(BUILTIN)
"""The sandboxes served: the built-ins', then those of the plugins in the catalog (:func:`follow_catalog`)."""


def follow_catalog() -> None:
    """Serve the sandboxes of the plugin providers the catalog holds now (a plugin may have none)."""
    offered = {p.name for p in installed(SANDBOX_GROUP)}
    found = list(BUILTIN)
    for kind in plugin_kinds(CATALOG.kinds):
        if kind in offered:
            found_point, sandbox = load_entry_point(SANDBOX_GROUP, kind)
            if not isinstance(sandbox, SandboxSpec) or sandbox.kind != kind:
                raise PluginError(
                    f"sandbox plugin {kind!r} ({found_point.source}) is not a SandboxSpec of {kind!r}"
                )
            found.append(sandbox)
    SANDBOXES[:] = found


def fault_keys() -> tuple[str, ...]:
    """What faults can be set for: every sandbox's API, then their token endpoints."""
    return (*(s.fault_keys[0] for s in SANDBOXES), *(k for s in SANDBOXES for k in s.fault_keys[1:]))


def provider_of(path: str) -> str | None:
    """Which sandbox part a request path belongs to; None for admin and unknown paths."""
    relative = path.lstrip("/")
    return next((key for s in SANDBOXES if (key := s.fault_key(relative)) is not None), None)
