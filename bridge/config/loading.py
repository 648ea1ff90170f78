"""Read the configuration: a YAML file plus ``BRIDGE__SECTION__FIELD`` environment overrides. Its
targets are validated against the provider catalog by :func:`bridge.providers.settings.load_settings`
(which uses this module); a command that reads only the topics uses :func:`load_reader_settings`.

Only this module and :mod:`bridge.config.secrets` read the environment.

How a variable finds its place: the name after ``BRIDGE__`` is split at ``__``; each part names a
key of the mapping reached so far. A part matches an existing key when both fold to the same
text: lower case, with ``-`` and ``.`` read as ``_``. So ``BRIDGE__TARGETS__ZUORA_EU__RETRY__MAX_ATTEMPTS``
reaches the target ``zuora-eu`` (environment variable names cannot hold ``-``). A part that
folds to two existing keys (targets ``zuora-eu`` and ``zuora_eu``) is refused, naming both; a part
that matches nothing adds a key, in lower case. Values are parsed as YAML scalars, so ``true``, ``5``
and ``null`` keep their types.

Errors name their source: the file (and line, for YAML syntax) or the environment variable.

Example::

    settings = load_reader_settings(Path("config.yaml"))  # without providers and targets
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bridge.config.settings import Settings
from bridge.errors import ConfigError

ENV_PREFIX = "BRIDGE__"
KeyPath = tuple[str, ...]


def fold(name: str) -> str:
    """How an environment variable's part is compared with a key: ``Zuora-EU`` -> ``zuora_eu``."""
    return name.lower().replace("-", "_").replace(".", "_")


@dataclass
class Overridden:
    """The configuration after overrides, and which variable set which place."""

    raw: dict[str, Any]
    origins: dict[KeyPath, str] = field(default_factory=dict)  # resolved key path -> variable name


def _resolve(node: Mapping[str, Any], part: str, variable: str) -> str:
    if part in node:
        return part
    matches = sorted(key for key in node if isinstance(key, str) and fold(key) == fold(part))
    if len(matches) > 1:
        raise ConfigError(
            f"environment variable {variable}: {part.lower()} matches {' and '.join(matches)}: "
            "rename one so that their names differ in more than case, '-' and '.'"
        )
    return matches[0] if matches else part.lower()


def override(raw: Mapping[str, Any], environ: Mapping[str, str]) -> Overridden:
    """Apply every ``BRIDGE__...`` variable to a copy of ``raw`` (see the module docstring)."""
    result = Overridden(dict(raw))
    for variable in sorted(v for v in environ if v.startswith(ENV_PREFIX)):
        parts = [p for p in variable[len(ENV_PREFIX) :].split("__") if p]
        if not parts:
            continue
        try:
            value = yaml.safe_load(environ[variable])
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment variable {variable} is not a valid YAML value: {exc}") from None
        node: dict[str, Any] = result.raw
        where: KeyPath = ()
        for part in parts[:-1]:
            key = _resolve(node, part, variable)
            child = node.get(key)
            if not isinstance(child, dict):  # the variable creates this place: its errors are the variable's
                result.origins.setdefault((*where, key), variable)
            node[key] = node = dict(child) if isinstance(child, dict) else {}
            where = (*where, key)
        key = _resolve(node, parts[-1], variable)
        node[key] = value
        result.origins[(*where, key)] = variable
    return result


def apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """``BRIDGE__KAFKA__BOOTSTRAP_SERVERS=host:9092`` sets ``kafka.bootstrap_servers``."""
    return override(raw, environ).raw


def _blame(loc: KeyPath, origins: Mapping[KeyPath, str]) -> tuple[str | None, list[str]]:
    """The variable that set ``loc`` (or a place above it), and those that set a place below it."""
    above = [(len(path), v) for path, v in origins.items() if loc[: len(path)] == path]
    below = sorted({v for path, v in origins.items() if len(path) > len(loc) and path[: len(loc)] == loc})
    return (max(above)[1] if above else None), below


def format_errors(
    exc: ValidationError,
    origin: str,
    origins: Mapping[KeyPath, str],
    prefix: KeyPath = (),
    *,
    kinds: Collection[str] = (),
) -> str:
    """One line per error, naming where it was set (the file, or the variable); ``kinds``: the target
    union's tags (the provider kinds), left out of a target's field path: the user wrote none."""
    lines, from_file, variables = [], False, set()
    for err in exc.errors():
        loc = [*prefix, *(str(p) for p in err["loc"])]
        if len(loc) > 2 and loc[0] == "targets" and loc[2] in kinds:
            del loc[2]  # the union's tag, not a field the user wrote
        where = ".".join(loc) or "<root>"
        setter, inside = _blame(tuple(loc), origins)
        if setter:
            note = f" (set by {setter})"
        elif inside:
            note = f" (in {origin}, with {', '.join(inside)} overriding a field in it)"
        else:
            note = ""
        from_file |= setter is None
        variables |= {setter} if setter else set(inside)
        lines.append(f"  - {where}: {err['msg']}{note}")
    named = ", ".join(sorted(variables))
    if not from_file:
        head = f"invalid configuration from environment variable {named}:"
    elif variables:
        head = f"invalid configuration in {origin} and environment variable {named}:"
    else:
        head = f"invalid configuration in {origin}:"
    return "\n".join([head, *lines])


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's top-level mapping ({} for an empty file); errors name the file, and the line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML{_where(exc)}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must contain a mapping at the top level")
    return raw


def _where(exc: yaml.MarkedYAMLError) -> str:
    """`` at line 4, column 1: expected ',' or ']' (while parsing a flow sequence at line 3, column 9)``."""

    def at(mark: yaml.Mark | None) -> str:
        return f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""

    context = f" ({exc.context}{at(exc.context_mark)})" if exc.context else ""
    return f"{at(exc.problem_mark)}: {exc.problem or 'cannot parse'}{context}"


# what a reader of the topics does not need: the providers' plugins and the targets' credentials
READER_SKIPS = ("providers", "targets")


def load_reader_settings(path: Path | None, environ: Mapping[str, str] | None = None) -> Settings:
    """The configuration of a command that only reads the bridge's topics (``bridge status``): the
    file without its ``providers`` and ``targets`` sections, so that a provider's secret that cannot
    be resolved here (a file mounted only in the bridge's pod) does not stop it. Kafka's own
    credentials are still resolved: it connects with them."""
    env = os.environ if environ is None else environ
    raw = read_yaml(path) if path is not None else {}
    merged = override(raw, env)
    kept = {k: v for k, v in merged.raw.items() if k not in READER_SKIPS}
    origin = str(path) if path else "<defaults>"
    try:
        return Settings.model_validate(kept, context={"environ": env})
    except ValidationError as exc:
        raise ConfigError(format_errors(exc, origin, merged.origins)) from None


def secret_values(settings: Settings) -> list[str]:
    """Every configured credential, so that logs and outcome bodies can be scrubbed of them."""
    values = []
    for model in (*settings.targets.values(), settings.kafka.security):
        for name in type(model).model_fields:
            value = getattr(model, name)
            if hasattr(value, "get_secret_value"):
                values.append(value.get_secret_value())
    return values
