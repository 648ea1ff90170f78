"""The bridge's configuration read with the provider catalog: the operator's file and ``BRIDGE__...``
overrides (:mod:`bridge.config.loading`), its provider plugins loaded, its targets validated against
the catalog's target models.

Two phases: the ``providers`` section alone, whose plugins join the catalog
(:mod:`bridge.providers.plugins`); then the whole configuration, against :func:`settings_model`.

Example::

    settings = load_settings(Path("config.yaml"))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, create_model

from bridge.config.loading import format_errors, override, read_yaml
from bridge.config.providers import ProvidersSettings
from bridge.config.settings import Settings
from bridge.errors import ConfigError
from bridge.providers.catalog import CATALOG
from bridge.providers.plugins import enable


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw = read_yaml(path) if path is not None else {}
    return parse_settings(raw, env, str(path) if path else "<defaults>")


def parse_settings(raw: Mapping[str, Any], environ: Mapping[str, str], origin: str = "<config>") -> Settings:
    """Two phases: the ``providers`` section alone, whose plugins join the catalog; then the whole
    configuration, against a settings model whose targets are the catalog's (plugins included)."""
    merged = override(raw, environ)
    try:
        providers = ProvidersSettings.model_validate(merged.raw.get("providers") or {})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, origin, merged.origins, ("providers",))) from None
    enable(providers.plugins)
    try:
        return settings_model().model_validate(merged.raw, context={"environ": environ})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, origin, merged.origins, kinds=CATALOG.kinds)) from None


_models: dict[tuple[str, ...], type[Settings]] = {}


def settings_model() -> type[Settings]:
    """:class:`Settings` whose ``targets`` validate against the catalog as it is now (the built-ins, and
    the plugins loaded): a subclass, one per set of providers, whose ``targets`` are the union of the
    catalog's target models (``Settings`` itself knows only their base, ``TargetBase``)."""
    if CATALOG.kinds not in _models:
        targets: Any = dict.__class_getitem__((str, CATALOG.target_settings))  # dict[str, <the union>]
        typed: tuple[Any, Any] = (targets, Field(default_factory=dict))
        _models[CATALOG.kinds] = create_model("Settings", __base__=Settings, targets=typed)
    return _models[CATALOG.kinds]
