"""What a provider module declares in its ``SPEC``; :mod:`bridge.providers.catalog` derives the rest.

A provider module (``bridge/providers/<provider>.py``) holds its target settings model, its command
models, its request builders and classifiers, its status read and its examples, and ends with::

    SPEC = ProviderSpec(kind="zuora", title="Zuora", order=2, target=ZuoraTarget, adapter=ZuoraProvider,
                        commands=(CommandSpec(ZuoraRunWorkflow, CommandFamily.RUN, example), ...), ...)

Nothing here names a provider: this module is what every provider module imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, get_args

from bridge.config.targets import TargetBase
from bridge.messages.commands import Command, CommandFamily
from bridge.messages.outcomes import Status
from bridge.providers.base import HttpRequest, Provider
from bridge.providers.readings import Reading

if TYPE_CHECKING:
    import ssl

    import aiohttp

T = TypeVar("T", bound=TargetBase)
T_contra = TypeVar("T_contra", bound=TargetBase, contravariant=True)
Ref = Mapping[str, str]


class AdapterFactory(Protocol[T_contra]):
    """The provider's adapter class (or any callable that builds one for a configured target)."""

    def __call__(
        self,
        name: str,
        target: T_contra,
        session: aiohttp.ClientSession,
        *,
        on_token_refresh: Callable[[bool], None] | None = None,
        ssl_context: ssl.SSLContext | bool = True,
    ) -> Provider: ...


@dataclass(frozen=True, slots=True)
class StatusRead:
    """How tracking follows what a command started: the ref to keep, the read, its classification."""

    ref: Callable[[Command, str | None], dict[str, str] | None]
    request: Callable[[Ref], HttpRequest]
    classify: Callable[[int, Mapping[str, str], bytes, Ref], Reading]


def plain_read(
    ref: Callable[[Command, str | None], dict[str, str] | None],
    request: Callable[[Ref], HttpRequest],
    classify: Callable[[int, Mapping[str, str], bytes], Reading],
) -> StatusRead:
    """A status read whose classification does not need the ref."""

    def without_ref(status: int, headers: Mapping[str, str], body: bytes, ref: Ref) -> Reading:
        return classify(status, headers, body)

    return StatusRead(ref, request, without_ref)


@dataclass(frozen=True, slots=True)
class EffectCheck:
    """``on_unknown: read_before_write``: the read that shows whether a command in doubt took effect.

    ``request`` is None for a command it cannot check; ``applied`` gives the outcome's reference when
    the read's 200 body shows the command's effect, else None (the command is sent again)."""

    request: Callable[[Command], HttpRequest | None]
    applied: Callable[[Command, bytes], str | None]


@dataclass(frozen=True, slots=True)
class CloudEventExample:
    number: int
    source: str

    @property
    def id(self) -> str:
        return example_id(self.number)


@dataclass(frozen=True, slots=True)
class CommandExample:
    """The command the contracts show (``topics/examples/``); its id is ``cmd-7f3a-<number>`` and
    the contracts list examples by number (a new provider takes the next free numbers)."""

    number: int
    key: str
    fields: Mapping[str, Any]
    cloudevent: CloudEventExample | None = None
    """Also shown as a CloudEvent, from this source (one example in the catalog has it)."""
    tracked: Mapping[str, str] | None = None
    """The status-read ref of this example's run: the lifecycle examples follow it (one has it)."""

    @property
    def id(self) -> str:
        return example_id(self.number)


def example_id(number: int) -> str:
    return f"cmd-7f3a-{number:04d}"


@dataclass(frozen=True, slots=True)
class OutcomeExample:
    """An outcome of the command example; the contracts show one per status."""

    status: Status
    offset: int
    fields: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CommandSpec:
    model: type[Command]
    family: CommandFamily
    example: CommandExample
    outcomes: tuple[OutcomeExample, ...] = ()

    @property
    def operation(self) -> str:
        """The model's ``operation`` literal, e.g. ``zuora.run_workflow``."""
        (value,) = get_args(self.model.model_fields["operation"].annotation)
        return str(value)


@dataclass(frozen=True, slots=True)
class ProviderSpec(Generic[T]):
    """One provider. ``order`` places it in every derived enum and union (the generated contracts
    keep their order): a new provider takes the next free number."""

    kind: str
    title: str
    order: int
    target: type[T]
    adapter: AdapterFactory[T]
    commands: tuple[CommandSpec, ...]
    status_read: Callable[[T], StatusRead]
    what_to_check: str
    """What to look for in the provider after a crash left a command in doubt (on_unknown: report)."""
    followed: str
    """The status-read ref field naming what tracking follows (the lifecycle events' provider_ref)."""
    effect_check: Callable[[T], EffectCheck] | None = None
    uses_tokens: bool = False
    """Its adapter fetches tokens (its targets get a token-refresh metric series)."""
    api_version: str | None = None
    """The provider API version (:data:`bridge.providers.api.API_VERSION`) the module was written
    against; a plugin must declare it (the loader refuses an incompatible one)."""

    def read(self, target: TargetBase) -> StatusRead:
        return self.status_read(self.narrow(target))

    def check(self, target: TargetBase) -> EffectCheck | None:
        return self.effect_check(self.narrow(target)) if self.effect_check else None

    def narrow(self, target: TargetBase) -> T:
        if not isinstance(target, self.target):
            raise TypeError(f"a {target.provider} target is not a {self.kind} target")
        return target
