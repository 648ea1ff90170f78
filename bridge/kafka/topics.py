"""Create and check Kafka topics as their specs describe them (:class:`TopicShape`: the topic specs of
:mod:`bridge.contracts`, which the ``bridge topics`` command, :mod:`bridge.contracts.cli`, loads).

``apply`` creates missing topics and never changes existing ones: a partition count or config
that differs is reported as drift for a human to fix, because adding partitions remaps keys (and
so breaks per-key order) and changing retention is an operational decision. ``check`` only reports.

Example::

    specs = load_specs()  # bridge.contracts: the specs shipped with the bridge
    report = await apply_topics("kafka:9092", specs, dry_run=True)
    print(report.render())
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError

from bridge.errors import BridgeError

TOPIC_ALREADY_EXISTS = 36  # Kafka error code: another admin created it between our list and create
MIN_INSYNC = "min.insync.replicas"
SERVED_WITHIN_S = 15.0


class TopicShape(Protocol):
    """What the admin reads of a topic spec (:class:`bridge.contracts.TopicSpec` has it)."""

    @property
    def name(self) -> str: ...
    @property
    def partitions(self) -> int: ...
    @property
    def replication_factor(self) -> int: ...
    @property
    def configs(self) -> Mapping[str, str]: ...


class TopicAdminError(BridgeError):
    """The broker refused to create a topic; the message names it and gives the broker's reason."""


class DriftKind(StrEnum):
    MISSING = "missing"  # the topic does not exist
    PARTITIONS = "partitions"  # the partition count differs from the spec
    CONFIG = "config"  # a topic config the broker reports differs from the spec


@dataclass(frozen=True, slots=True)
class Drift:
    topic: str
    kind: DriftKind
    detail: str

    def __str__(self) -> str:
        return f"{self.topic}: {self.detail}"


@dataclass
class Report:
    """What apply or check found. ``drift`` is what makes the CLI exit non-zero; notes are information."""

    created: list[str] = field(default_factory=list)
    drift: list[Drift] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    would_create: list[str] = field(default_factory=list)  # a dry run's missing topics

    def render(self, specs: int | None = None) -> str:
        """One line per finding, then a verdict; ``specs`` is how many specs were compared."""
        lines = [f"created {name}" for name in self.created]
        lines += [f"DRIFT {d}" for d in self.drift]
        lines += [f"note: {note}" for note in self.notes]
        if self.drift:
            verdict = f"{len({d.topic for d in self.drift})} topic(s) differ from their specs"
        elif self.would_create:
            verdict = f"dry run: {len(self.would_create)} topic(s) would be created; nothing was changed"
        else:
            verdict = f"all {specs} topics match their specs" if specs else "all topics match their specs"
        return "\n".join([*lines, verdict])


# -- pure decisions ---------------------------------------------------------------------------------


def effective_replication(spec: TopicShape, brokers: int) -> int:
    return max(1, min(spec.replication_factor, brokers))


def effective_configs(spec: TopicShape, brokers: int) -> dict[str, str]:
    """The spec's configs, with min.insync.replicas capped so acks=all can succeed on a small cluster."""
    configs = dict(spec.configs)
    if MIN_INSYNC in configs:
        configs[MIN_INSYNC] = str(min(int(configs[MIN_INSYNC]), effective_replication(spec, brokers)))
    return configs


def capping_notes(spec: TopicShape, brokers: int) -> list[str]:
    replicas = effective_replication(spec, brokers)
    if replicas == spec.replication_factor:
        return []
    return [
        f"{spec.name}: replication_factor {spec.replication_factor} capped to {replicas} "
        f"(the cluster has {brokers} broker(s)); {MIN_INSYNC} capped to at most {replicas}"
    ]


def compare(
    spec: TopicShape, partitions: int, configs: dict[str, str] | None, brokers: int
) -> tuple[list[Drift], list[str]]:
    """Drift and notes for one existing topic; ``configs`` is None when the broker cannot describe them."""
    drift = []
    if partitions != spec.partitions:
        detail = (
            f"has {partitions} partitions, spec says {spec.partitions} (not changed: it would remap keys)"
        )
        drift.append(Drift(spec.name, DriftKind.PARTITIONS, detail))
    if configs is None:
        return drift, [f"{spec.name}: configs not verifiable on this broker (DescribeConfigs gave no answer)"]
    unreported = []
    for key, want in effective_configs(spec, brokers).items():
        got = configs.get(key)
        if got is None:
            unreported.append(key)
        elif got != want:
            drift.append(
                Drift(spec.name, DriftKind.CONFIG, f"{key} is {got}, spec says {want} (not changed)")
            )
    notes = [f"{spec.name}: {', '.join(unreported)} not reported: not verifiable on this broker"]
    return drift, notes if unreported else []


# -- broker I/O -------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _admin(
    bootstrap: str, options: Mapping[str, Any] | None = None
) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(
        **{**(options or {}), "bootstrap_servers": bootstrap, "client_id": "workflow-bridge-topics"}
    )
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


async def apply_topics(
    bootstrap: str,
    specs: Sequence[TopicShape],
    *,
    dry_run: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Report:
    """Create the missing topics; report (never change) existing ones that differ from their spec."""
    report = Report()
    async with _admin(bootstrap, options) as admin:
        brokers, existing = await _cluster(admin)
        missing = [spec for spec in specs if spec.name not in existing]
        for spec in missing:
            report.notes += capping_notes(spec, brokers)
        if dry_run:
            report.would_create = [spec.name for spec in missing]
            report.notes += [f"would create {name}" for name in report.would_create]
        else:
            await _create(admin, missing, brokers, report)
            await wait_until_served(admin, report.created)
        await _inspect(admin, [spec for spec in specs if spec.name in existing], brokers, report)
    return report


async def wait_until_served(admin: AIOKafkaAdminClient, names: Sequence[str]) -> None:
    """Until every named topic is in the broker's metadata with a leader for each partition.

    Apache Kafka answers CreateTopics once its controller has recorded the topic; the brokers learn of
    it a moment later, and a client that asks in between is told the topic does not exist (Tansu
    serves a topic as soon as it answers). Raises TopicAdminError after SERVED_WITHIN_S.
    """
    if not names:
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SERVED_WITHIN_S
    waiting = set(names)
    while waiting:
        served = {
            topic["topic"]
            for topic in await admin.describe_topics(sorted(waiting))
            if topic["error_code"] == 0
            and topic["partitions"]
            and all(p["error_code"] == 0 and p["leader"] >= 0 for p in topic["partitions"])
        }
        waiting -= served
        if waiting and loop.time() > deadline:
            raise TopicAdminError(f"created but not served within {SERVED_WITHIN_S:.0f}s: {sorted(waiting)}")
        if waiting:
            await asyncio.sleep(0.05)


async def check_topics(
    bootstrap: str, specs: Sequence[TopicShape], *, options: Mapping[str, Any] | None = None
) -> Report:
    """Drift between the broker and the specs: missing topics, partition counts, configs."""
    report = Report()
    async with _admin(bootstrap, options) as admin:
        brokers, existing = await _cluster(admin)
        for spec in specs:
            if spec.name not in existing:
                report.drift.append(Drift(spec.name, DriftKind.MISSING, "topic does not exist"))
        await _inspect(admin, [spec for spec in specs if spec.name in existing], brokers, report)
    return report


async def partition_counts(
    bootstrap: str, names: Sequence[str], options: Mapping[str, Any] | None = None
) -> dict[str, int]:
    """Topic -> partition count, for the named topics that exist (none is created by asking)."""
    async with _admin(bootstrap, options) as admin:
        _, existing = await _cluster(admin)
        present = [name for name in names if name in existing]
        described = await admin.describe_topics(present) if present else []
    return {topic["topic"]: len(topic["partitions"]) for topic in described}


async def missing_topics(
    bootstrap: str, names: Sequence[str], options: Mapping[str, Any] | None = None
) -> list[str]:
    """The named topics the broker does not have (asking creates none)."""
    async with _admin(bootstrap, options) as admin:
        _, existing = await _cluster(admin)
    return [name for name in names if name not in existing]


async def _cluster(admin: AIOKafkaAdminClient) -> tuple[int, set[str]]:
    # list_topics first: asking for metadata of a named topic auto-creates it on some brokers (Tansu).
    cluster = await admin.describe_cluster()
    return len(cluster["brokers"]), set(await admin.list_topics())


async def _create(admin: AIOKafkaAdminClient, specs: list[TopicShape], brokers: int, report: Report) -> None:
    if not specs:
        return
    new = [
        NewTopic(
            s.name,
            s.partitions,
            effective_replication(s, brokers),
            topic_configs=effective_configs(s, brokers),
        )
        for s in specs
    ]
    response = await admin.create_topics(new)
    for result in response.to_object()["topic_errors"]:
        code, name = result["error_code"], result["topic"]
        if code == 0:
            report.created.append(name)
        elif code == TOPIC_ALREADY_EXISTS:
            report.notes.append(f"{name}: created by someone else meanwhile; not checked this run")
        else:
            raise TopicAdminError(f"cannot create topic {name}: {result.get('error_message')} (error {code})")


async def _inspect(admin: AIOKafkaAdminClient, specs: list[TopicShape], brokers: int, report: Report) -> None:
    if not specs:
        return
    described = await admin.describe_topics([spec.name for spec in specs])
    partitions = {topic["topic"]: len(topic["partitions"]) for topic in described}
    configs = await _describe_configs(admin, [spec.name for spec in specs])
    for spec in specs:
        drift, notes = compare(spec, partitions.get(spec.name, 0), configs.get(spec.name), brokers)
        report.drift += drift
        report.notes += notes


async def _describe_configs(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, dict[str, str]]:
    """Topic -> config values the broker reports; a topic is absent when the broker cannot say."""
    # No key filter: Tansu closes the connection when DescribeConfigs names specific keys.
    resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
    try:
        responses = await admin.describe_configs(resources)
    except KafkaError:
        return {}
    found: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            if resource["error_code"] == 0:
                found[resource["resource_name"]] = _entries(resource["config_entries"])
    return found


def _entries(entries: list[dict[str, Any]]) -> dict[str, str]:
    return {
        entry["config_names"]: entry["config_value"] for entry in entries if entry["config_value"] is not None
    }
