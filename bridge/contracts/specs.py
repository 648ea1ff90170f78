"""Topic specs: the hand-written ``bridge/contracts/topics/<topic>.yaml`` files, loaded and checked.

The specs ship inside the package (:data:`SHIPPED_SPECS`), so an installed ``bridge topics`` finds
them without a checkout; ``topics/`` in the repository holds generated copies (``bridge topics generate``).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bridge.config.settings import LedgerSettings, TopicSettings
from bridge.contracts.schemas import build_schemas
from bridge.errors import ConfigError
from bridge.messages.commands import CommandFamily

ASYNCAPI_FILE = "asyncapi.yaml"
SHIPPED_SPECS = Path(__file__).resolve().parent / "topics"


class TopicRole(StrEnum):
    """What a topic is for; the values are the field names of :class:`TopicSettings`."""

    RUN_COMMANDS = "run_commands"
    CONTROL_COMMANDS = "control_commands"
    RUN_OUTCOMES = "run_outcomes"
    CONTROL_OUTCOMES = "control_outcomes"
    DEAD_LETTER = "dead_letter"
    LEDGER = "ledger"
    LIFECYCLE = "lifecycle"
    PARKED = "parked"

    @property
    def family(self) -> CommandFamily | None:
        return {"run": CommandFamily.RUN, "control": CommandFamily.CONTROL}.get(self.value.split("_")[0])

    @property
    def bridge_action(self) -> str:
        """AsyncAPI operation action from the bridge's side."""
        return "receive" if self.value.endswith("_commands") else "send"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class KeySpec(_Spec):
    encoding: str = "utf-8"
    required: bool
    semantics: str


class ValueSpec(_Spec):
    content_type: str
    description: str
    schemas: tuple[str, ...] = Field(description="Paths (relative to topics/) of the accepted schemas.")


class HeaderSpec(_Spec):
    name: str
    description: str


class TopicSpec(_Spec):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)

    name: str
    role: TopicRole
    purpose: str
    partitions: int = Field(ge=1)
    replication_factor: int = Field(ge=1)
    configs: dict[str, str]
    key: KeySpec
    value: ValueSpec
    headers: tuple[HeaderSpec, ...] = ()


def spec_files(root: Path) -> list[Path]:
    """The ``<topic>.yaml`` files in ``root`` (the AsyncAPI document is not a spec), sorted by name."""
    return [path for path in sorted(root.glob("*.yaml")) if path.name != ASYNCAPI_FILE]


def load_specs(root: Path = SHIPPED_SPECS) -> list[TopicSpec]:
    """Every spec in ``root``, in :class:`TopicRole` order; a missing or empty folder is a ConfigError.

    An empty answer would let ``bridge topics check`` say "all topics match" about nothing.
    """
    if not root.is_dir():
        raise ConfigError(f"topic spec folder {root} does not exist{_HINT}")
    specs = [_load_spec(path) for path in spec_files(root)]
    if not specs:
        raise ConfigError(f"topic spec folder {root} has no topic specs (<topic>.yaml){_HINT}")
    order = list(TopicRole)
    return sorted(specs, key=lambda spec: order.index(spec.role))


_HINT = (
    ": give --dir a folder of <topic>.yaml specs, or leave --dir out to use the specs shipped with the bridge"
)


def _load_spec(path: Path) -> TopicSpec:
    try:
        spec = TopicSpec.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except (OSError, yaml.YAMLError, ValidationError) as exc:
        raise ConfigError(f"topic spec {path} is invalid: {exc}") from None
    if spec.name != path.stem:
        raise ConfigError(f"topic spec {path} names topic {spec.name!r}; name the file {spec.name}.yaml")
    return spec


def spec_problems(specs: list[TopicSpec]) -> list[str]:
    """Specs that contradict each other, the settings defaults, or the generated schemas."""
    roles = [spec.role for spec in specs]
    problems = [
        f"{n} topic specs with role {r.value}, want 1" for r in TopicRole if (n := roles.count(r)) != 1
    ]
    defaults, known = TopicSettings(), build_schemas()
    for spec in specs:
        if getattr(defaults, spec.role.value) != spec.name:
            problems.append(f"{spec.name}: TopicSettings.{spec.role.value} defaults to another name")
        problems += [
            f"{spec.name}: unknown schema {ref}"
            for ref in spec.value.schemas
            if ref.removeprefix("schemas/") not in known
        ]
    return problems + ledger_spec_problems(specs)


def ledger_spec_problems(specs: list[TopicSpec]) -> list[str]:
    """The ledger topic is co-partitioned with the command topics and forgets what the index forgets."""
    by_role = {spec.role: spec for spec in specs}
    ledger = by_role.get(TopicRole.LEDGER)
    if ledger is None:
        return []
    problems = [
        f"{spec.name}: {spec.partitions} partitions, {by_role[role].name} has {by_role[role].partitions}"
        for spec in (ledger, by_role.get(TopicRole.PARKED, ledger))
        for role in (TopicRole.RUN_COMMANDS, TopicRole.CONTROL_COMMANDS)
        if role in by_role and by_role[role].partitions != spec.partitions
    ]
    retention_ms = int(LedgerSettings().retention_s * 1000)
    if ledger.configs.get("retention.ms") != str(retention_ms):
        problems.append(f"{ledger.name}: retention.ms must equal ledger.retention_s ({retention_ms} ms)")
    return problems
