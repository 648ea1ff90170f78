"""Every provider the bridge knows, and everything derived from them. Pure.

The providers are the modules of this package that declare a ``SPEC``
(:class:`bridge.providers.spec.ProviderSpec`); adding ``bridge/providers/<provider>.py`` is all it
takes. From the specs come the command unions the parser validates against, the operation ->
family / provider tables, the provider kinds, the target-settings union ``Settings.targets``
validates against, the adapter for a configured target, its status read and its examples.

Example::

    CATALOG.family_of("zuora.run_workflow")  # CommandFamily.RUN
    command = CATALOG.adapters[CommandFamily.RUN].validate_python(doc)
    provider = CATALOG.build("billing-eu", settings.targets["billing-eu"], session)
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Annotated, Any, Union

from pydantic import Field, TypeAdapter

import bridge.providers as package
from bridge.config.targets import TargetBase
from bridge.messages.commands import Command, CommandFamily
from bridge.providers.base import Provider
from bridge.providers.spec import CommandSpec, EffectCheck, ProviderSpec, StatusRead

if TYPE_CHECKING:
    import ssl

    import aiohttp

AnySpec = ProviderSpec[Any]  # each spec is typed by its own target model; the catalog holds them all
_FAMILIES = tuple(CommandFamily)


def discriminated(members: Sequence[type], tag: str) -> Any:
    """``A | B | ...`` discriminated by the field ``tag``: a type built at run time, for pydantic."""
    if len(members) == 1:
        return members[0]
    return Annotated[Union[tuple(members)], Field(discriminator=tag)]  # noqa: UP007 - built from a tuple


def _unique(kind: str, names: Iterable[object]) -> None:
    seen: set[object] = set()
    for name in names:
        if name in seen:
            raise ValueError(f"two providers declare the same {kind} {name!r}")
        seen.add(name)


class Catalog:
    """The providers in ``specs``, in their declared order."""

    def __init__(self, specs: Iterable[AnySpec]) -> None:
        self._derive(specs)

    def use(self, specs: Iterable[AnySpec]) -> None:
        """Become the catalog of ``specs`` (the built-ins plus the plugins the configuration allows,
        :mod:`bridge.providers.plugins`): everything derived is derived again, in place, so that the
        modules holding :data:`CATALOG` see it. Raises ValueError on a clash and then changes nothing."""
        specs = tuple(specs)
        Catalog(specs)  # checks them before anything changes
        self._derive(specs)

    def _derive(self, specs: Iterable[AnySpec]) -> None:
        self.specs: tuple[AnySpec, ...] = tuple(sorted(specs, key=lambda spec: spec.order))
        self.kinds = tuple(spec.kind for spec in self.specs)
        self.commands = self._ordered_commands()
        for what, names in (
            ("kind", self.kinds),
            ("order", [s.order for s in self.specs]),
            ("operation", [c.operation for c in self.commands]),
            ("example number", [c.example.number for c in self.commands]),
        ):
            _unique(what, names)
        self._by_kind = {spec.kind: spec for spec in self.specs}
        self._owner = {c.operation: spec for spec in self.specs for c in spec.commands}
        self._family = {c.operation: c.family for c in self.commands}
        self.operations = frozenset(self._family)
        self.adapters: dict[CommandFamily, TypeAdapter[Command]] = {
            family: TypeAdapter(self.union(family)) for family in _FAMILIES
        }
        self.any_adapter: TypeAdapter[Command] = TypeAdapter(self.union())
        self.target_settings: Any = discriminated([spec.target for spec in self.specs], "provider")

    def _ordered_commands(self) -> tuple[CommandSpec, ...]:
        """Run commands first, then control; within a family by provider, then as declared."""
        return tuple(
            command
            for family in _FAMILIES
            for spec in self.specs
            for command in spec.commands
            if command.family is family
        )

    def union(self, family: CommandFamily | None = None) -> Any:
        """The command models of ``family`` (every family: None) as one discriminated union."""
        models = [c.model for c in self.commands if family is None or c.family is family]
        return discriminated(models, "operation")

    def family_of(self, operation: str | None) -> CommandFamily | None:
        return self._family.get(operation) if operation is not None else None

    def provider_of(self, operation: str) -> str:
        """The kind of provider that runs ``operation`` (one of :attr:`operations`)."""
        return self._owner[operation].kind

    def operations_of(self, kind: str) -> frozenset[str]:
        return frozenset(c.operation for c in self._by_kind[kind].commands)

    def spec(self, kind: str) -> AnySpec:
        return self._by_kind[kind]

    def build(
        self,
        name: str,
        target: TargetBase,
        session: aiohttp.ClientSession,
        *,
        on_token_refresh: Callable[[bool], None] | None = None,
        ssl_context: ssl.SSLContext | bool = True,
    ) -> Provider:
        """The adapter for ``target`` (by its ``provider``); it shares ``session`` and ``ssl_context``
        (the target's CA bundle, loaded once for its calls and its token fetches)."""
        spec = self.spec(target.provider)
        return spec.adapter(
            name, spec.narrow(target), session, on_token_refresh=on_token_refresh, ssl_context=ssl_context
        )

    def status_read(self, target: TargetBase) -> StatusRead:
        return self.spec(target.provider).read(target)

    def effect_check(self, target: TargetBase) -> EffectCheck | None:
        return self.spec(target.provider).check(target)


def discover() -> list[AnySpec]:
    """The ``SPEC`` of every module of this package that declares one."""
    found: list[AnySpec] = []
    for module in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if module.name not in _NOT_PROVIDERS:
            spec = getattr(importlib.import_module(module.name), "SPEC", None)
            if isinstance(spec, ProviderSpec):
                found.append(spec)
    return found


# the modules that import the catalog (the plugin loader, the command parser, the settings reader)
_NOT_PROVIDERS = frozenset(
    {__name__, *(f"{package.__name__}.{m}" for m in ("plugins", "parsing", "settings"))}
)
BUILTINS: tuple[AnySpec, ...] = tuple(sorted(discover(), key=lambda spec: spec.order))
"""The providers shipped in this package; plugins come on top (:mod:`bridge.providers.plugins`)."""
CATALOG = Catalog(BUILTINS)
