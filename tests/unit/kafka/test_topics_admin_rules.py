"""``bridge topics apply|check|generate``: what is created, what is drift, and the exit codes.

The rules are pure functions over a topic spec; the apply/check flows run against an in-memory
admin client that answers with the response shapes of aiokafka's admin client (the real broker
is exercised in tests/integration/test_topics_admin.py).
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from bridge.contracts import TopicSpec, load_specs
from bridge.contracts.cli import add_topics_cli, run_topics_cli
from bridge.kafka import topics as topics_admin
from bridge.kafka.topics import (
    TOPIC_ALREADY_EXISTS,
    Drift,
    DriftKind,
    Report,
    TopicAdminError,
    apply_topics,
    capping_notes,
    check_topics,
    compare,
    effective_configs,
    effective_replication,
)

TOPICS = Path(__file__).resolve().parents[3] / "topics"


def spec(**changes: Any) -> TopicSpec:
    base = next(s for s in load_specs(TOPICS) if s.name == "workflow.run.commands")
    return base.model_copy(update=changes)


# -- replication on small clusters --------------------------------------------------------------


def test_replication_is_capped_to_the_brokers_there_are():
    assert effective_replication(spec(replication_factor=3), brokers=1) == 1
    assert effective_replication(spec(replication_factor=3), brokers=5) == 3
    assert effective_replication(spec(replication_factor=2), brokers=2) == 2


def test_replication_is_at_least_one_even_when_no_broker_is_reported():
    assert effective_replication(spec(replication_factor=3), brokers=0) == 1


def test_min_insync_is_capped_so_acks_all_can_succeed():
    configs = effective_configs(spec(replication_factor=3, configs={"min.insync.replicas": "2"}), brokers=1)
    assert configs["min.insync.replicas"] == "1"


def test_min_insync_is_kept_when_the_cluster_is_big_enough():
    configs = effective_configs(spec(replication_factor=3, configs={"min.insync.replicas": "2"}), brokers=3)
    assert configs["min.insync.replicas"] == "2"


def test_other_configs_pass_through_unchanged():
    wanted = {"retention.ms": "604800000", "cleanup.policy": "delete"}
    assert effective_configs(spec(configs=wanted), brokers=1) == wanted


def test_capping_is_explained_in_a_note_naming_topic_and_cluster_size():
    notes = capping_notes(spec(replication_factor=3), brokers=1)
    assert notes == [
        "workflow.run.commands: replication_factor 3 capped to 1 (the cluster has 1 broker(s)); "
        "min.insync.replicas capped to at most 1"
    ]


def test_no_note_when_nothing_is_capped():
    assert capping_notes(spec(replication_factor=3), brokers=3) == []


# -- drift of an existing topic ---------------------------------------------------------------------


def test_matching_topic_has_no_drift_and_no_notes():
    s = spec(replication_factor=1, configs={"retention.ms": "1000", "min.insync.replicas": "1"})
    assert compare(s, s.partitions, {"retention.ms": "1000", "min.insync.replicas": "1"}, 1) == ([], [])


def test_other_partition_count_is_drift_that_is_never_fixed():
    drift, _ = compare(spec(partitions=12, configs={}), 6, {}, 1)
    assert drift == [
        Drift(
            "workflow.run.commands",
            DriftKind.PARTITIONS,
            "has 6 partitions, spec says 12 (not changed: it would remap keys)",
        )
    ]


def test_differing_config_is_drift_with_both_values():
    drift, notes = compare(spec(configs={"retention.ms": "604800000"}), 12, {"retention.ms": "1000"}, 1)
    assert [str(d) for d in drift] == [
        "workflow.run.commands: retention.ms is 1000, spec says 604800000 (not changed)"
    ]
    assert drift[0].kind is DriftKind.CONFIG and notes == []


def test_min_insync_is_compared_after_capping():
    s = spec(replication_factor=3, configs={"min.insync.replicas": "2"})
    assert compare(s, s.partitions, {"min.insync.replicas": "1"}, brokers=1) == ([], [])
    drift, _ = compare(s, s.partitions, {"min.insync.replicas": "1"}, brokers=3)
    assert [d.kind for d in drift] == [DriftKind.CONFIG]


def test_a_config_the_broker_does_not_report_is_a_note_not_drift():
    s = spec(configs={"retention.ms": "1000", "cleanup.policy": "delete"})
    drift, notes = compare(s, s.partitions, {"retention.ms": "1000"}, 1)
    assert drift == []
    assert notes == ["workflow.run.commands: cleanup.policy not reported: not verifiable on this broker"]


def test_configs_that_cannot_be_described_are_a_note_and_partitions_still_count():
    drift, notes = compare(spec(partitions=12), 3, None, 1)
    assert [d.kind for d in drift] == [DriftKind.PARTITIONS]
    assert notes == [
        "workflow.run.commands: configs not verifiable on this broker (DescribeConfigs gave no answer)"
    ]


def test_report_lists_created_then_drift_then_notes():
    report = Report(
        created=["a"], drift=[Drift("b", DriftKind.MISSING, "topic does not exist")], notes=["c is odd"]
    )
    assert report.render() == (
        "created a\nDRIFT b: topic does not exist\nnote: c is odd\n1 topic(s) differ from their specs"
    )


def test_empty_report_says_everything_matches():
    assert Report().render() == "all topics match their specs"


# -- apply and check against an in-memory admin client --------------------------------------------


@dataclass
class Answer:
    body: dict[str, Any]

    def to_object(self) -> dict[str, Any]:
        return self.body


@dataclass
class FakeAdmin:
    """The calls topics_admin makes, answered like aiokafka's AIOKafkaAdminClient."""

    brokers: int = 1
    topics: dict[str, int] = field(default_factory=dict)
    configs: dict[str, dict[str, str]] = field(default_factory=dict)
    create_errors: dict[str, int] = field(default_factory=dict)
    describe_configs_fails: bool = False
    created: list[Any] = field(default_factory=list)
    started: bool = False
    closed: bool = False
    options: dict[str, Any] = field(default_factory=dict)

    def __call__(self, **options: Any) -> FakeAdmin:
        self.options = options
        return self

    async def start(self) -> None:
        self.started = True

    async def close(self) -> None:
        self.closed = True

    async def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"node_id": n} for n in range(self.brokers)]}

    async def list_topics(self) -> list[str]:
        return list(self.topics)

    async def create_topics(self, new: list[Any]) -> Answer:
        errors = []
        for topic in new:
            code = self.create_errors.get(topic.name, 0)
            if code == 0:
                self.created.append(topic)
                self.topics[topic.name] = topic.num_partitions
                self.configs[topic.name] = dict(topic.topic_configs)
            errors.append({"topic": topic.name, "error_code": code, "error_message": "refused by policy"})
        return Answer({"topic_errors": errors})

    async def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [
            {
                "topic": n,
                "error_code": 0,
                "partitions": [{"partition": p, "error_code": 0, "leader": 0} for p in range(self.topics[n])],
            }
            for n in names
        ]

    async def describe_configs(self, resources: list[Any]) -> list[Answer]:
        if self.describe_configs_fails:
            raise topics_admin.KafkaError("DescribeConfigs not supported")
        found = [
            {
                "error_code": 0 if r.name in self.configs else 3,
                "resource_name": r.name,
                "config_entries": [
                    {"config_names": k, "config_value": v} for k, v in self.configs.get(r.name, {}).items()
                ],
            }
            for r in resources
        ]
        return [Answer({"resources": found})]


@pytest.fixture
def admin(monkeypatch: pytest.MonkeyPatch) -> FakeAdmin:
    fake = FakeAdmin()
    monkeypatch.setattr(topics_admin, "AIOKafkaAdminClient", fake)
    return fake


@pytest.fixture
def specs() -> list[TopicSpec]:
    return load_specs(TOPICS)


async def test_apply_creates_every_missing_topic_with_capped_replication(admin: FakeAdmin, specs):
    report = await apply_topics("kafka:9092", specs)

    assert report.created == [s.name for s in specs]
    assert report.drift == []
    assert {t.name: (t.num_partitions, t.replication_factor) for t in admin.created} == {
        s.name: (s.partitions, 1) for s in specs
    }
    assert len([n for n in report.notes if "capped to 1" in n]) == len(specs)
    assert admin.options["bootstrap_servers"] == "kafka:9092" and admin.closed


async def test_apply_dry_run_creates_nothing_and_says_what_it_would(admin: FakeAdmin, specs):
    report = await apply_topics("kafka:9092", specs, dry_run=True)

    assert admin.created == [] and report.created == []
    assert [n for n in report.notes if n.startswith("would create")] == [
        f"would create {s.name}" for s in specs
    ]


async def test_apply_leaves_existing_topics_alone_and_reports_their_drift(admin: FakeAdmin, specs):
    first = specs[0]
    admin.brokers = 3
    admin.topics[first.name] = first.partitions + 1
    admin.configs[first.name] = dict(first.configs)

    report = await apply_topics("kafka:9092", specs)

    assert first.name not in report.created
    assert [t.name for t in admin.created] == [s.name for s in specs[1:]]
    assert [(d.topic, d.kind) for d in report.drift] == [(first.name, DriftKind.PARTITIONS)]


async def test_a_topic_created_meanwhile_by_someone_else_is_a_note(admin: FakeAdmin, specs):
    admin.create_errors[specs[1].name] = TOPIC_ALREADY_EXISTS

    report = await apply_topics("kafka:9092", specs)

    assert specs[1].name not in report.created
    assert f"{specs[1].name}: created by someone else meanwhile; not checked this run" in report.notes


async def test_a_refused_creation_names_the_topic_and_the_broker_reason(admin: FakeAdmin, specs):
    admin.create_errors[specs[0].name] = 41

    with pytest.raises(
        TopicAdminError, match=rf"cannot create topic {specs[0].name}: refused by policy \(error 41\)"
    ):
        await apply_topics("kafka:9092", specs)
    assert admin.closed


async def test_check_reports_every_missing_topic(admin: FakeAdmin, specs):
    report = await check_topics("kafka:9092", specs)

    assert [(d.topic, d.kind, d.detail) for d in report.drift] == [
        (s.name, DriftKind.MISSING, "topic does not exist") for s in specs
    ]


async def test_check_after_apply_is_clean(admin: FakeAdmin, specs):
    await apply_topics("kafka:9092", specs)

    assert (await check_topics("kafka:9092", specs)).render() == "all topics match their specs"


async def test_check_when_the_broker_cannot_describe_configs(admin: FakeAdmin, specs):
    await apply_topics("kafka:9092", specs)
    admin.describe_configs_fails = True

    report = await check_topics("kafka:9092", specs)

    assert report.drift == []
    assert len([n for n in report.notes if "configs not verifiable" in n]) == len(specs)


async def test_security_options_reach_the_admin_client_but_not_the_bootstrap(admin: FakeAdmin, specs):
    options = {"security_protocol": "SSL", "bootstrap_servers": "ignored:1"}

    await check_topics("kafka:9092", specs, options=options)

    assert admin.options["security_protocol"] == "SSL"
    assert admin.options["bootstrap_servers"] == "kafka:9092"


# -- the command line ---------------------------------------------------------------------------------


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bridge")
    add_topics_cli(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["topics", *argv])


@pytest.fixture
def topics_dir(tmp_path: Path) -> Path:
    copy = tmp_path / "topics"
    shutil.copytree(TOPICS, copy)
    return copy


def test_generate_check_passes_on_the_shipped_contracts(topics_dir: Path, capsys):
    assert run_topics_cli(parse("generate", "--check", "--dir", str(topics_dir))) == 0
    assert capsys.readouterr().out.strip() == "topic contracts are up to date"


def test_generate_check_fails_on_a_stale_file_and_generate_rewrites_it(topics_dir: Path, capsys):
    stale = next((topics_dir / "schemas").glob("*.json"))
    stale.write_text("{}\n")

    assert run_topics_cli(parse("generate", "--check", "--dir", str(topics_dir))) == 1
    assert stale.name in capsys.readouterr().out

    assert run_topics_cli(parse("generate", "--dir", str(topics_dir))) == 0
    assert f"wrote {stale}" in capsys.readouterr().out.splitlines()
    assert run_topics_cli(parse("generate", "--check", "--dir", str(topics_dir))) == 0


def test_a_broken_spec_exits_2_naming_the_file(topics_dir: Path, capsys):
    (topics_dir / "workflow.run.commands.yaml").write_text("name: workflow.run.commands\npartitions: 0\n")

    assert run_topics_cli(parse("check", "--dir", str(topics_dir))) == 2
    err = capsys.readouterr().err
    assert err.startswith("bridge topics: topic spec ") and "workflow.run.commands.yaml is invalid" in err


def test_an_unreadable_config_exits_2(topics_dir: Path, tmp_path: Path, capsys):
    missing = tmp_path / "nope.yaml"

    assert run_topics_cli(parse("check", "--dir", str(topics_dir), "--config", str(missing))) == 2
    assert f"cannot read config file {missing}" in capsys.readouterr().err


def test_check_exits_1_on_drift_and_0_when_in_sync(admin: FakeAdmin, topics_dir: Path, capsys):
    assert run_topics_cli(parse("check", "--dir", str(topics_dir), "--bootstrap", "k:1")) == 1
    assert "DRIFT workflow.run.commands: topic does not exist" in capsys.readouterr().out

    assert run_topics_cli(parse("apply", "--dir", str(topics_dir), "--bootstrap", "k:1")) == 0
    assert run_topics_cli(parse("check", "--dir", str(topics_dir), "--bootstrap", "k:1")) == 0
    assert admin.options["bootstrap_servers"] == "k:1"


def test_apply_dry_run_exits_0_and_creates_nothing(admin: FakeAdmin, topics_dir: Path, capsys):
    assert run_topics_cli(parse("apply", "--dry-run", "--dir", str(topics_dir))) == 0
    assert admin.created == []
    assert "note: would create workflow.run.commands" in capsys.readouterr().out


def test_bootstrap_comes_from_the_config_file_when_not_given(
    admin: FakeAdmin, topics_dir: Path, tmp_path: Path
):
    config = tmp_path / "config.yaml"
    config.write_text("kafka:\n  bootstrap_servers: from-config:9092\n")

    run_topics_cli(parse("check", "--dir", str(topics_dir), "--config", str(config)))

    assert admin.options["bootstrap_servers"] == "from-config:9092"


def test_a_refused_creation_exits_2(admin: FakeAdmin, topics_dir: Path, capsys):
    admin.create_errors["workflow.commands.dlq"] = 41

    assert run_topics_cli(parse("apply", "--dir", str(topics_dir))) == 2
    assert "bridge topics: cannot create topic workflow.commands.dlq" in capsys.readouterr().err


def test_with_a_config_each_spec_goes_by_the_name_the_config_gives_its_role(
    admin: FakeAdmin, topics_dir: Path, tmp_path: Path, capsys
):
    config = tmp_path / "config.yaml"
    config.write_text("topics:\n  run_commands: team-a.run.commands\n")

    assert run_topics_cli(parse("apply", "--dir", str(topics_dir), "--config", str(config))) == 0

    created = [topic.name for topic in admin.created]
    assert "team-a.run.commands" in created and "workflow.run.commands" not in created
    assert "workflow.run.outcomes" in created  # roles the config does not rename keep the spec's name
