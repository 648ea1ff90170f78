import orjson
import pytest

from bridge.messages.commands import CommandFamily
from bridge.messages.outcomes import ErrorKind
from bridge.messages.parsing import DeadLetter, DeadLetterReason, Invalid, Parsed
from bridge.providers.parsing import parse_command
from bridge.providers.zuora import ZuoraRunWorkflow

RUN, CONTROL = CommandFamily.RUN, CommandFamily.CONTROL


def parse(doc, family=RUN, limit=10_000):
    value = doc if isinstance(doc, bytes) or doc is None else orjson.dumps(doc)
    return parse_command(value, family, limit)


def zuora(**extra):
    return {"id": "c1", "target": "zuora", "operation": "zuora.run_workflow", "workflow_id": 396, **extra}


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, DeadLetterReason.EMPTY_VALUE),
        (b"", DeadLetterReason.EMPTY_VALUE),
        (b"\xff\xfe{}", DeadLetterReason.NOT_UTF8),
        (b"{not json", DeadLetterReason.INVALID_JSON),
        (b"[1, 2]", DeadLetterReason.NOT_AN_OBJECT),
        (b'"text"', DeadLetterReason.NOT_AN_OBJECT),
        (b'{"target": "zuora"}', DeadLetterReason.MISSING_ID),
        (b'{"id": 42}', DeadLetterReason.MISSING_ID),
        (b'{"id": ""}', DeadLetterReason.MISSING_ID),
        (orjson.dumps({"id": "x" * 201}), DeadLetterReason.MISSING_ID),
        (b'{"specversion": "0.3", "id": "a", "data": {}}', DeadLetterReason.BAD_CLOUDEVENT),
        (b'{"specversion": "1.0", "id": "a", "data_base64": "e30="}', DeadLetterReason.BAD_CLOUDEVENT),
        (b'{"specversion": "1.0", "data": {"id": "inner"}}', DeadLetterReason.MISSING_ID),
    ],
)
def test_unreadable_values_are_dead_letters(value, reason):
    result = parse(value)
    assert isinstance(result, DeadLetter)
    assert result.reason is reason


def test_oversized_value_is_a_dead_letter():
    result = parse(zuora(parameters={"accountId": "x" * 500}), limit=200)
    assert isinstance(result, DeadLetter)
    assert result.reason is DeadLetterReason.TOO_LARGE


def test_plain_command_parses():
    result = parse(zuora(parameters={"accountId": "A-1"}, zuora={"track_id": "t-1"}))
    assert isinstance(result, Parsed)
    assert isinstance(result.command, ZuoraRunWorkflow)
    assert result.command.parameters == {"accountId": "A-1"}


def test_cloudevent_id_becomes_the_command_id():
    doc = {
        "specversion": "1.0",
        "id": "ce-7",
        "source": "urn:x",
        "type": "t",
        "data": {"target": "w", "operation": "workfloo.execute", "definition_id": "abc"},
    }
    result = parse(doc)
    assert isinstance(result, Parsed)
    assert result.command.id == "ce-7"


@pytest.mark.parametrize(
    ("doc", "kind", "fragment"),
    [
        (zuora(parameters={"format": "x", "id": 1}), ErrorKind.VALIDATION, "format, id"),
        (zuora(workflow_id="abc"), ErrorKind.VALIDATION, "workflow_id"),
        (zuora(workflow_id=0), ErrorKind.VALIDATION, "workflow_id"),
        (zuora(unexpected=True), ErrorKind.VALIDATION, "unexpected"),
        (zuora(zuora={"track_id": "a:b"}), ErrorKind.VALIDATION, "track_id"),
        (zuora(zuora={"track_id": "x" * 65}), ErrorKind.VALIDATION, "track_id"),
        (zuora(zuora={"entity_id": "a\r\nX-Evil: 1"}), ErrorKind.VALIDATION, "entity_id"),
        (zuora(target="a/b"), ErrorKind.VALIDATION, "target"),
        ({"id": "c1", "target": "t", "operation": "nope"}, ErrorKind.VALIDATION, "operation"),
        ({"id": "c1", "target": "t"}, ErrorKind.VALIDATION, "operation"),
        (
            {"id": "c1", "target": "t", "operation": "zuora.rerun_task", "task_id": "1"},
            ErrorKind.WRONG_TOPIC,
            "control command topic",
        ),
        (
            {"id": "bad id\n", "target": "t", "operation": "workfloo.execute", "definition_id": "a"},
            ErrorKind.VALIDATION,
            "id",
        ),
        (
            {
                "id": "c1",
                "target": "t",
                "operation": "zilliant.queue_job",
                "automation_id": "A",
                "parameters": {"WORKFLOW_AUTOMATION_ID": "B"},
            },
            ErrorKind.VALIDATION,
            "automation_id",
        ),
    ],
)
def test_commands_with_an_id_but_wrong_content_are_rejected(doc, kind, fragment):
    result = parse(doc)
    assert isinstance(result, Invalid)
    assert result.command_id == doc["id"]
    assert result.kind is kind
    assert fragment in result.message


@pytest.mark.parametrize("instance_id", ["..", ".", "a/b", "a%2Fb", "a b", "é"])
def test_path_segments_refuse_traversal_and_odd_characters(instance_id):
    doc = {
        "id": "c1",
        "target": "e",
        "operation": "8x8.update_instance",
        "action": "suspend",
        "definition_id": "5870442f-3ddd-4657-b74c-6e17308f5230",
        "instance_id": instance_id,
    }
    result = parse(doc, CONTROL)
    assert isinstance(result, Invalid)
    assert "instance_id" in result.message


def test_validation_messages_do_not_echo_values():
    result = parse(zuora(workflow_id="s3cr3t-looking-value"))
    assert isinstance(result, Invalid)
    assert "s3cr3t" not in result.message
