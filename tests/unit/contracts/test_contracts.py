"""The files under topics/ are generated from the models, and every example in them is valid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import orjson
import pytest
import yaml
from jsonschema import Draft202012Validator

from bridge import contracts
from bridge.config.settings import EngineSettings, LedgerSettings, Settings, TopicSettings
from bridge.errors import ConfigError
from bridge.kafka.topics import DriftKind, capping_notes, compare, effective_configs
from bridge.local.examples import example_commands
from bridge.messages.commands import CommandFamily
from bridge.messages.outcomes import OutcomeData, Status, encode_outcome
from bridge.messages.parsing import DeadLetterReason, Parsed
from bridge.messages.records import Incoming
from bridge.observability.metrics import Metrics
from bridge.pipeline.processor import CONTENT_TYPE, Processor
from bridge.providers.catalog import CATALOG
from bridge.providers.parsing import parse_command

TOPICS = Path(__file__).resolve().parents[3] / "topics"
EXAMPLES = sorted((TOPICS / "examples").glob("*.json"))
MAX_BYTES = EngineSettings().max_message_bytes
TRACEPARENT = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def validator(schema_file: str) -> Draft202012Validator:
    schema = json.loads((TOPICS / "schemas" / schema_file).read_text())
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def errors(schema_file: str, doc: object) -> list[str]:
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(schema_file).iter_errors(doc)
    ]


def family_of(doc: dict) -> CommandFamily:
    operation = (doc.get("data") or doc)["operation"]
    family = CATALOG.family_of(operation)
    assert family is not None, operation
    return family


def schema_of_command(doc: dict) -> str:
    if "specversion" in doc:
        return contracts.COMMAND_CLOUDEVENT
    return f"{family_of(doc).value}-command.schema.json"


# -- generated files are in sync --------------------------------------------------------------------


def test_committed_files_match_the_models():
    assert contracts.check_all(TOPICS) == []


def test_generation_is_deterministic():
    specs = contracts.load_specs(TOPICS)
    assert contracts.render_files(specs) == contracts.render_files(specs)
    for rel, text in contracts.render_files(specs).items():
        assert text.endswith("\n"), rel


def test_check_all_reports_drift_and_write_all_repairs_it(tmp_path):
    root = tmp_path / "topics"
    shutil.copytree(TOPICS, root)
    (root / "schemas" / contracts.RUN_COMMAND).write_text("{}\n")
    (root / "examples" / "outcome-event.queued.json").unlink()
    (root / "examples" / "stale.json").write_text("{}\n")

    problems = contracts.check_all(root)

    assert any("run-command.schema.json is out of date" in p for p in problems)
    assert any("outcome-event.queued.json is missing" in p for p in problems)
    assert any("stale.json is not generated any more" in p for p in problems)
    changed = contracts.write_all(root)
    assert set(changed) == {
        "schemas/run-command.schema.json",
        "examples/outcome-event.queued.json",
        "examples/stale.json",
    }
    assert contracts.check_all(root) == []


def test_check_all_reports_a_bad_spec(tmp_path):
    source = tmp_path / "specs"
    shutil.copytree(contracts.SHIPPED_SPECS, source)
    spec = source / "workflow.commands.dlq.yaml"
    spec.write_text(spec.read_text().replace("partitions: 3", "partitions: many"))
    assert "workflow.commands.dlq.yaml is invalid" in contracts.check_all(TOPICS, source)[0]


def test_topics_folder_copies_the_shipped_specs_and_a_hand_edit_is_drift(tmp_path):
    root = tmp_path / "topics"
    shutil.copytree(TOPICS, root)
    shipped = sorted(p.name for p in contracts.SHIPPED_SPECS.glob("*.yaml"))
    assert shipped == sorted(p.name for p in root.glob("workflow.*.yaml"))
    copy = root / "workflow.run.commands.yaml"
    assert copy.read_text().endswith((contracts.SHIPPED_SPECS / copy.name).read_text())
    copy.write_text(copy.read_text().replace("partitions: 12", "partitions: 24"))
    (root / "workflow.extra.yaml").write_text("name: workflow.extra\n")

    problems = contracts.check_all(root)

    assert "workflow.run.commands.yaml is out of date: run `bridge topics generate`" in problems
    assert "workflow.extra.yaml is not generated any more: delete it" in problems
    assert set(contracts.write_all(root)) == {"workflow.run.commands.yaml", "workflow.extra.yaml"}
    assert contracts.check_all(root) == []


def test_write_all_refuses_to_write_over_the_specs_themselves():
    with pytest.raises(ConfigError, match="holds the specs themselves"):
        contracts.write_all(contracts.SHIPPED_SPECS)


@pytest.mark.parametrize("make", ["missing", "empty"])
def test_a_missing_or_empty_spec_folder_is_an_error_not_zero_specs(tmp_path, make):
    folder = tmp_path / "specs"
    if make == "empty":
        folder.mkdir()
        (folder / "asyncapi.yaml").write_text("asyncapi: 3.0.0\n")  # not a spec
    with pytest.raises(ConfigError, match=f"topic spec folder {folder} (does not exist|has no topic specs)"):
        contracts.load_specs(folder)


def test_the_default_specs_are_the_shipped_ones():
    assert [s.name for s in contracts.load_specs()] == [s.name for s in contracts.load_specs(TOPICS)]


# -- topic specs ------------------------------------------------------------------------------------


def test_one_spec_per_topic_named_as_in_settings():
    specs = contracts.load_specs(TOPICS)
    assert [s.name for s in specs] == list(TopicSettings().model_dump().values())
    assert contracts.spec_problems(specs) == []
    for spec in specs:
        assert spec.replication_factor == 3
        compacted = spec.role is contracts.TopicRole.LEDGER
        assert spec.configs["cleanup.policy"] == ("compact,delete" if compacted else "delete")
        assert spec.configs["min.insync.replicas"] == "2"


def test_retention_by_kind():
    days = {s.role: int(s.configs["retention.ms"]) // 86_400_000 for s in contracts.load_specs(TOPICS)}
    assert days == {
        "run_commands": 7,
        "control_commands": 7,
        "run_outcomes": 14,
        "control_outcomes": 14,
        "dead_letter": 30,
        "ledger": 7,
        "lifecycle": 14,
        "parked": 2,
    }


def test_ledger_spec_must_be_co_partitioned_and_retained_as_long_as_the_index():
    specs = contracts.load_specs(TOPICS)
    ledger = next(s for s in specs if s.role is contracts.TopicRole.LEDGER)
    assert int(ledger.configs["retention.ms"]) == LedgerSettings().retention_s * 1000
    wrong = ledger.model_copy(update={"partitions": 3, "configs": {**ledger.configs, "retention.ms": "1"}})
    problems = contracts.ledger_spec_problems([*(s for s in specs if s is not ledger), wrong])
    assert len(problems) == 3  # both command topics have another partition count, and the retention differs
    assert "retention.ms must equal ledger.retention_s" in problems[-1]


def test_parking_spec_must_be_co_partitioned_too():
    specs = contracts.load_specs(TOPICS)
    parked = next(s for s in specs if s.role is contracts.TopicRole.PARKED)
    wrong = parked.model_copy(update={"partitions": 5})
    problems = contracts.ledger_spec_problems([*(s for s in specs if s is not parked), wrong])
    assert len(problems) == 2 and all(p.startswith(f"{parked.name}: 5 partitions") for p in problems)


def test_command_topics_accept_what_the_bridge_accepts():
    for spec in contracts.load_specs(TOPICS):
        assert int(spec.configs["max.message.bytes"]) >= MAX_BYTES, spec.name


async def test_dead_letter_headers_match_the_processor(spans):
    dlq = next(s for s in contracts.load_specs(TOPICS) if s.role is contracts.TopicRole.DEAD_LETTER)
    settings = Settings.model_validate(
        {
            "topics": {"dead_letter": dlq.name},
            "kafka": {"max_request_size": 70_000},
            "engine": {"max_message_bytes": 1024},
        }
    )
    processor = Processor(settings, {}, executor=None, metrics=Metrics())  # type: ignore[arg-type]
    # fits: the original headers come first, unchanged; tracing is on, so the bridge's trace headers follow
    original = (("traceparent", TRACEPARENT), ("tracestate", b"a=b"))
    small = await processor.process(Incoming("workflow.run.commands", 4, 9000, b"k", b"n" * 100, original))
    assert small.dead_letter is not None and small.headers[:2] == list(original)
    # key, value and headers are each over 70,000 - 64 KiB (the key over 3/4 of it): all are omitted,
    # so every optional header appears; the command's trace context is still read and continued
    filler = ("filler", b"1" * 5000)
    record = Incoming("workflow.run.commands", 4, 9001, b"k" * 3400, b"n" * 5000, (*original, filler))
    out = await processor.process(record)
    assert out.topic == dlq.name and out.value is None and out.key is None
    assert out.dead_letter is not None and out.dead_letter.reason is DeadLetterReason.KEY_TOO_LARGE
    assert [h.name for h in dlq.headers] == ["*", *[name for name, _ in out.headers]]
    reasons = next(h.description for h in dlq.headers if h.name == "dlq.reason")
    assert all(reason.value in reasons for reason in DeadLetterReason)


async def test_outcome_headers_match_the_processor(spans):
    processor = Processor(Settings(), {}, executor=None, metrics=Metrics())  # type: ignore[arg-type]
    command = {"id": "c-1", "target": "nowhere", "operation": "zuora.rerun_task", "task_id": "7"}
    original = (("traceparent", TRACEPARENT), ("tracestate", b"a=b"))
    record = Incoming(Settings().topics.control_commands, 0, 1, None, orjson.dumps(command), original)
    out = await processor.process(record)
    assert out.outcome is not None and out.headers[0] == CONTENT_TYPE
    assert "traceparent" in orjson.loads(out.value or b"")
    for spec in contracts.load_specs(TOPICS):
        if spec.role.value.endswith("_outcomes"):
            assert [h.name for h in spec.headers] == [name for name, _ in out.headers]
            assert spec.headers[0].description.encode() == CONTENT_TYPE[1]


# -- examples ---------------------------------------------------------------------------------------


def test_examples_cover_every_operation_and_status():
    names = {p.name for p in EXAMPLES}
    for command in CATALOG.commands:
        assert f"{command.family.value}-command.{command.operation}.json" in names
    for status in Status:
        assert f"outcome-event.{status.value}.json" in names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_against_its_schema(path):
    schema = path.name.split(".", 1)[0] + ".schema.json"
    assert errors(schema, json.loads(path.read_text())) == []


@pytest.mark.parametrize("path", [p for p in EXAMPLES if "command" in p.name], ids=lambda p: p.name)
def test_command_example_is_parsed_by_the_bridge(path):
    doc = json.loads(path.read_text())
    result = parse_command(path.read_bytes(), family_of(doc), MAX_BYTES)
    assert isinstance(result, Parsed), result
    assert result.command.id == doc["id"]


@pytest.mark.parametrize(
    "path", [p for p in EXAMPLES if p.name.startswith("outcome-event.")], ids=lambda p: p.name
)
def test_outcome_example_is_what_the_bridge_publishes(path):
    event = json.loads(path.read_text())
    data = OutcomeData.model_validate(event["data"])
    assert orjson.loads(encode_outcome(data, now=contracts.EXAMPLE_TIME)) == event
    assert event["type"] == f"workflow.outcome.{data.status.value}"


@pytest.mark.parametrize(("key", "doc"), example_commands("run-1"), ids=lambda v: str(v)[:40])
def test_local_example_commands_validate(key, doc):
    assert errors(schema_of_command(doc), doc) == []


@pytest.mark.parametrize(
    ("schema", "doc", "fragment"),
    [
        (
            contracts.RUN_COMMAND,
            {"id": "a", "target": "t", "operation": "zuora.rerun_task", "task_id": "1"},
            "",
        ),
        (contracts.RUN_COMMAND, {"id": "a", "target": "t", "operation": "zilliant.queue_job"}, ""),
        (
            contracts.CONTROL_COMMAND,
            {"id": "a b", "target": "t", "operation": "zuora.rerun_task", "task_id": "1"},
            "",
        ),
        (contracts.COMMAND_CLOUDEVENT, {"specversion": "1.0", "source": "s", "type": "t", "data": {}}, "id"),
    ],
)
def test_schemas_reject_wrong_commands(schema, doc, fragment):
    found = errors(schema, doc)
    assert found
    assert any(fragment in e for e in found)


def test_outcome_schema_ties_type_to_status():
    event = json.loads((TOPICS / "examples" / "outcome-event.queued.json").read_text())
    event["type"] = "workflow.outcome.error"
    assert any("'error' was expected" in e for e in errors(contracts.OUTCOME_EVENT, event))


# -- AsyncAPI ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def asyncapi() -> dict:
    return yaml.safe_load((TOPICS / contracts.ASYNCAPI_FILE).read_text())


def resolve(doc: dict, ref: str) -> dict:
    node = doc
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def test_asyncapi_version_and_channels(asyncapi):
    assert asyncapi["asyncapi"] == "3.0.0"
    specs = {s.name: s for s in contracts.load_specs(TOPICS)}
    addresses = [channel["address"] for channel in asyncapi["channels"].values()]
    assert sorted(addresses) == sorted(specs)
    for channel in asyncapi["channels"].values():
        spec = specs[channel["address"]]
        assert (TOPICS / f"{spec.name}.yaml").exists()
        assert channel["bindings"]["kafka"]["partitions"] == spec.partitions


def test_asyncapi_operations(asyncapi):
    actions = {name: op["action"] for name, op in asyncapi["operations"].items()}
    assert actions == {
        "receive_run_commands": "receive",
        "receive_control_commands": "receive",
        "send_run_outcomes": "send",
        "send_control_outcomes": "send",
        "send_dead_letter": "send",
        "send_ledger": "send",
        "send_lifecycle": "send",
        "send_parked": "send",
    }
    for operation in asyncapi["operations"].values():
        channel = resolve(asyncapi, operation["channel"]["$ref"])
        for message in operation["messages"]:
            assert resolve(asyncapi, message["$ref"]) in channel["messages"].values()


def test_asyncapi_payload_refs_exist_and_examples_validate(asyncapi):
    seen = set()
    for channel in asyncapi["channels"].values():
        for message in channel["messages"].values():
            ref = message["payload"]["schema"].get("$ref")
            if ref is None:
                continue
            assert (TOPICS / ref).exists(), ref
            for example in message.get("examples", []):
                assert errors(Path(ref).name, example["payload"]) == [], example["name"]
                seen.add(example["name"])
    operations = {f"{c.family.value}-command.{c.operation}" for c in CATALOG.commands}
    assert operations | {f"outcome-event.{s.value}" for s in Status} <= seen


# -- topics_admin pure decisions --------------------------------------------------------------------


def test_replication_and_min_insync_are_capped_to_the_cluster():
    spec = contracts.load_specs(TOPICS)[0]
    assert effective_configs(spec, 1)["min.insync.replicas"] == "1"
    assert effective_configs(spec, 5)["min.insync.replicas"] == "2"
    assert "capped to 1" in capping_notes(spec, 1)[0]
    assert capping_notes(spec, 3) == []


def test_compare_reports_partitions_and_configs_and_tolerates_unreported_configs():
    spec = contracts.load_specs(TOPICS)[0]
    configs = {**effective_configs(spec, 3), "retention.ms": "1"}
    del configs["max.message.bytes"]
    drift, notes = compare(spec, 4, configs, 3)
    assert [d.kind for d in drift] == [DriftKind.PARTITIONS, DriftKind.CONFIG]
    assert "max.message.bytes not reported" in notes[0]
    drift, notes = compare(spec, spec.partitions, None, 3)
    assert drift == []
    assert "configs not verifiable on this broker" in notes[0]
