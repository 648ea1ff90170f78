"""apply/check against a real broker (Tansu or Kafka: --broker), on topic names unique to each test."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.contracts import TopicSpec, load_specs
from bridge.kafka.topics import DriftKind, apply_topics, check_topics, wait_until_served
from bridge.local.broker import RunningBroker

pytestmark = pytest.mark.integration

TOPICS = Path(__file__).resolve().parents[2] / "topics"


@pytest.fixture
def specs() -> list[TopicSpec]:
    """The real specs, renamed with a unique prefix so tests never see each other's topics."""
    prefix = f"t{uuid.uuid4().hex[:8]}"
    return [spec.model_copy(update={"name": f"{prefix}.{spec.name}"}) for spec in load_specs(TOPICS)]


async def describe(bootstrap: str, names: list[str]) -> dict[str, int]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return {t["topic"]: len(t["partitions"]) for t in await admin.describe_topics(names)}
    finally:
        await admin.close()


async def create_by_hand(bootstrap: str, name: str, partitions: int, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs)])
        await wait_until_served(admin, [name])  # Kafka's brokers learn of a new topic a moment later
    finally:
        await admin.close()


async def test_apply_creates_topics_with_the_spec_partitions(broker: RunningBroker, specs):
    report = await apply_topics(broker.bootstrap, specs)

    assert report.created == [spec.name for spec in specs]
    assert report.drift == []
    # The test broker is a single one: replication 3 is capped to 1, and the report says so.
    assert sum("replication_factor 3 capped to 1" in note for note in report.notes) == len(specs)
    found = await describe(broker.bootstrap, [spec.name for spec in specs])
    assert found == {spec.name: spec.partitions for spec in specs}


async def test_check_after_apply_finds_no_drift_and_verifies_configs(broker: RunningBroker, specs):
    await apply_topics(broker.bootstrap, specs)

    report = await check_topics(broker.bootstrap, specs)

    assert report.drift == []
    # DescribeConfigs returns the configs given at creation (Tansu: only those; Kafka: all), so every
    # one was verified.
    assert report.notes == []
    assert report.render() == "all topics match their specs"


async def test_dry_run_creates_nothing_and_check_reports_missing(broker: RunningBroker, specs):
    report = await apply_topics(broker.bootstrap, specs, dry_run=True)
    assert report.created == []
    assert f"would create {specs[0].name}" in report.notes

    check = await check_topics(broker.bootstrap, specs)

    assert {(d.topic, d.kind) for d in check.drift} == {(s.name, DriftKind.MISSING) for s in specs}


async def test_hand_made_topic_with_other_partitions_is_reported_not_changed(broker: RunningBroker, specs):
    odd = specs[0]
    await create_by_hand(broker.bootstrap, odd.name, 2, {**odd.configs, "retention.ms": "1000"})

    applied = await apply_topics(broker.bootstrap, specs)
    checked = await check_topics(broker.bootstrap, specs)

    assert odd.name not in applied.created
    assert len(applied.created) == len(specs) - 1
    for report in (applied, checked):
        kinds = {(d.topic, d.kind) for d in report.drift}
        assert kinds == {(odd.name, DriftKind.PARTITIONS), (odd.name, DriftKind.CONFIG)}
    assert (await describe(broker.bootstrap, [odd.name]))[odd.name] == 2


# Tansu reports only the configs a topic was created with; Apache Kafka reports every one (defaults too).
@pytest.mark.only_broker("tansu")
async def test_configs_the_broker_does_not_report_are_notes_not_drift(broker: RunningBroker, specs):
    bare = specs[-1]
    await create_by_hand(broker.bootstrap, bare.name, bare.partitions, {})

    report = await check_topics(broker.bootstrap, [bare])

    assert report.drift == []
    assert "not verifiable on this broker" in report.notes[0]


@pytest.mark.only_broker("kafka")
async def test_a_topic_created_without_the_spec_configs_is_config_drift(broker: RunningBroker, specs):
    bare = specs[-1]
    await create_by_hand(broker.bootstrap, bare.name, bare.partitions, {})

    report = await check_topics(broker.bootstrap, [bare])

    # the broker reports its defaults (retention.ms 7 days here), and check compares them to the spec
    drifted = {d.detail.split(" ", 1)[0] for d in report.drift if d.kind is DriftKind.CONFIG}
    assert "retention.ms" in drifted, report.render()
    assert all(d.topic == bare.name for d in report.drift)
