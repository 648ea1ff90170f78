"""Load the typed configuration: a YAML file plus ``BRIDGE__SECTION__FIELD`` environment overrides.

Only this module and :mod:`bridge.config.secrets` read the environment.

Example::

    settings = load_settings(Path("config.yaml"))
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bridge.config.settings import Settings
from bridge.errors import ConfigError
from bridge.providers.catalog import CATALOG

ENV_PREFIX = "BRIDGE__"


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``BRIDGE__KAFKA__BOOTSTRAP_SERVERS=host:9092`` sets ``kafka.bootstrap_servers``.

    Values are parsed as YAML scalars so that ``true``, ``5`` and ``null`` keep their types.
    """
    merged: dict[str, Any] = dict(raw)
    for key in sorted(environ):
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX) :].split("__") if part]
        if not path:
            continue
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            child = dict(child) if isinstance(child, dict) else {}
            node[part] = child
            node = child
        node[path[-1]] = yaml.safe_load(environ[key])
    return merged


def _format_errors(exc: ValidationError, origin: str) -> str:
    lines = [f"invalid configuration in {origin}:"]
    for err in exc.errors():
        loc = list(err["loc"])
        if len(loc) > 2 and loc[0] == "targets" and loc[2] in CATALOG.kinds:
            del loc[2]  # the union's tag, not a field the user wrote
        where = ".".join(str(p) for p in loc) or "<root>"
        lines.append(f"  - {where}: {err['msg']}")
    return "\n".join(lines)


def parse_settings(raw: Mapping[str, Any], environ: Mapping[str, str], origin: str = "<config>") -> Settings:
    merged = apply_env_overrides(dict(raw), environ)
    try:
        return Settings.model_validate(merged, context={"environ": environ})
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None


def load_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    raw: Any = {}
    if path is not None:
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must contain a mapping at the top level")
    return parse_settings(raw, env, str(path) if path else "<defaults>")


def secret_values(settings: Settings) -> list[str]:
    """Every configured credential, so that logs and outcome bodies can be scrubbed of them."""
    values = []
    for model in (*settings.targets.values(), settings.kafka.security):
        for name in type(model).model_fields:
            value = getattr(model, name)
            if hasattr(value, "get_secret_value"):
                values.append(value.get_secret_value())
    return values
