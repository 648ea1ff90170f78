"""Provider plugins: installed packages that declare providers under an entry-point group.

A plugin package declares its provider spec, and optionally its sandbox emulation, in its
``pyproject.toml``; the entry point's name is the provider kind::

    [project.entry-points."workflow_bridge.providers"]
    airflow = "workflow_bridge_airflow.provider:SPEC"
    [project.entry-points."workflow_bridge.sandboxes"]
    airflow = "workflow_bridge_airflow.sandbox:SANDBOX"

Nothing installed is loaded unless the configuration names it (``providers: {plugins: [airflow]}``):
an installed package cannot change what a bridge does by being installed. The load is the first of
two phases of reading a configuration (:func:`bridge.providers.settings.parse_settings`): the
``providers`` section is read alone, the plugins it names are loaded, checked and added to
:data:`bridge.providers.catalog.CATALOG`, and only then are the targets validated, against the
catalog's target union, which now has the plugins' target models.

A plugin is refused, with one line naming it, its package and the reason, when it is not installed,
fails to import, is not a :class:`~bridge.providers.spec.ProviderSpec`, declares no or an incompatible
API version, names another kind than its entry point, or clashes with a provider already loaded
(the same kind, operation, order or example number).

``bridge providers list`` (:func:`render`) shows every provider: built-in, loaded, or installed and
available (not loaded because the configuration does not name it), with its package and version::

    KIND          STATE      SOURCE
    zilliant      built-in   workflow-bridge 0.1.0
    airflow       loaded     workflow-bridge-airflow 0.1.0
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from bridge.errors import ConfigError
from bridge.providers.api import API_VERSION, ProviderSpec
from bridge.providers.catalog import BUILTINS, CATALOG, AnySpec, Catalog

GROUP = "workflow_bridge.providers"
SANDBOX_GROUP = "workflow_bridge.sandboxes"


class PluginError(ConfigError):
    """A plugin the configuration allows cannot be loaded; the message is one line."""


@dataclass(frozen=True, slots=True)
class Installed:
    """An entry point of an installed package: a plugin that may be loaded."""

    name: str
    package: str
    version: str
    value: str

    @property
    def source(self) -> str:
        return f"{self.package} {self.version}"


@dataclass(frozen=True, slots=True)
class Loaded:
    name: str
    source: str
    spec: AnySpec


_loaded: list[Loaded] = []


def installed(group: str = GROUP) -> list[Installed]:
    """Every entry point of ``group`` that installed packages declare, by name."""
    found = []
    for point in metadata.entry_points(group=group):
        dist = point.dist
        package = dist.metadata["Name"] if dist is not None else "?"
        version = dist.version if dist is not None else "?"
        found.append(Installed(point.name, package, version, point.value))
    return sorted(found, key=lambda p: (p.name, p.package))


def loaded() -> tuple[Loaded, ...]:
    """The plugins the last :func:`enable` added to the catalog."""
    return tuple(_loaded)


def incompatibility(declared: object) -> str | None:
    """Why a plugin written against API version ``declared`` cannot load here; None: it can."""
    if not isinstance(declared, str):
        return f"declares no api_version (this bridge has provider API {API_VERSION})"
    ours = API_VERSION.split(".")
    theirs = declared.split(".")
    if len(theirs) != 2 or not all(part.isdigit() for part in theirs):
        return f"declares api_version {declared!r}, not MAJOR.MINOR"
    if theirs[0] != ours[0] or int(theirs[1]) > int(ours[1]):
        return f"needs provider API {declared}; this bridge has {API_VERSION}"
    return None


def load_entry_point(group: str, name: str) -> tuple[Installed, Any]:
    """The object entry point ``name`` of ``group`` points at; PluginError when there is none, there
    are two, or it fails to import."""
    matches = [p for p in installed(group) if p.name == name]
    if not matches:
        raise PluginError(f"provider plugin {name!r} is not installed (no entry point {name!r} in {group})")
    if len(matches) > 1:
        packages = ", ".join(p.source for p in matches)
        raise PluginError(f"provider plugin {name!r} is declared twice in {group}: by {packages}")
    found = matches[0]
    (point,) = (p for p in metadata.entry_points(group=group) if p.name == name)
    try:
        return found, point.load()
    except Exception as exc:  # noqa: BLE001 - any import failure of foreign code is reported, in one line
        reason = " ".join(f"{type(exc).__name__}: {exc}".split())
        raise PluginError(f"provider plugin {name!r} ({found.source}) failed to load: {reason}") from None


def _checked(name: str, found: Installed, spec: object) -> AnySpec:
    where = f"provider plugin {name!r} ({found.source})"
    if not isinstance(spec, ProviderSpec):
        raise PluginError(f"{where}: {found.value} is a {type(spec).__name__}, not a ProviderSpec")
    reason = incompatibility(spec.api_version)
    if reason:
        raise PluginError(f"{where} {reason}")
    if spec.kind != name:
        raise PluginError(f"{where} declares kind {spec.kind!r}; its entry point must be named after it")
    foreign = [c.operation for c in spec.commands if not c.operation.startswith(f"{name}.")]
    if foreign:
        raise PluginError(f"{where}: operation {foreign[0]!r} must start with {name + '.'!r}")
    return spec


def enable(names: Sequence[str]) -> tuple[Loaded, ...]:
    """Make the catalog the built-ins plus the plugins ``names``, in that order; PluginError (and the
    catalog unchanged) when one of them cannot be loaded or clashes with one before it."""
    specs: list[AnySpec] = list(BUILTINS)
    chosen: list[Loaded] = []
    for name in dict.fromkeys(names):
        found, value = load_entry_point(GROUP, name)
        spec = _checked(name, found, value)
        try:
            Catalog([*specs, spec])
        except ValueError as exc:
            raise PluginError(f"provider plugin {name!r} ({found.source}) clashes: {exc}") from None
        specs.append(spec)
        chosen.append(Loaded(name, found.source, spec))
    CATALOG.use(specs)
    _loaded[:] = chosen
    return tuple(chosen)


def builtin_kinds() -> tuple[str, ...]:
    return tuple(spec.kind for spec in BUILTINS)


def plugin_kinds(kinds: Iterable[str]) -> list[str]:
    """Which of ``kinds`` (the catalog's) are plugins."""
    own = set(builtin_kinds())
    return [kind for kind in kinds if kind not in own]


# -- bridge providers list ---------------------------------------------------------------------------


def _own_version() -> str:
    try:
        return metadata.version("workflow-bridge")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def rows() -> list[tuple[str, str, str]]:
    """(kind, state, source) for every provider: built-in, loaded plugin, or installed and not allowed."""
    own = f"workflow-bridge {_own_version()}"
    table = [(kind, "built-in", own) for kind in builtin_kinds()]
    active = {plugin.name: plugin for plugin in loaded() if plugin.name in CATALOG.kinds}
    table += [(name, "loaded", plugin.source) for name, plugin in active.items()]
    for plugin in installed():
        if plugin.name not in active:
            table.append((plugin.name, "available", f"{plugin.source}  (not in providers.plugins)"))
    return table


def render() -> str:
    table = [("KIND", "STATE", "SOURCE"), *rows()]
    width = max(len(kind) for kind, _, _ in table) + 2
    return "\n".join(f"{kind:<{width}}{state:<11}{source}".rstrip() for kind, state, source in table)
