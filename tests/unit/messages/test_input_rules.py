"""The input rules of docs/commands.md, one class at a time: strict types, dot-segments, depth and size,
CloudEvents in both modes, Schema Registry framing and hostile headers."""

import orjson
import pytest
from yarl import URL

from bridge.config.settings import Settings
from bridge.http import wire_url
from bridge.messages.commands import CommandFamily
from bridge.messages.outcomes import ErrorKind
from bridge.messages.parsing import MAX_DEPTH, MAX_VALUES, DeadLetter, DeadLetterReason, Invalid, Parsed
from bridge.messages.records import Incoming
from bridge.messages.wire import copyable_headers, schema_id_of, split_frame
from bridge.observability.metrics import Metrics
from bridge.pipeline.processor import Processor
from bridge.providers.parsing import parse_command

RUN, CONTROL = CommandFamily.RUN, CommandFamily.CONTROL


def parse(doc, family=RUN, headers=(), limit=1_000_000):
    value = doc if isinstance(doc, bytes) else orjson.dumps(doc)
    return parse_command(value, family, limit, headers)


def zuora(**extra):
    return {"id": "c1", "target": "zuora", "operation": "zuora.run_workflow", "workflow_id": 396, **extra}


def eight(**extra):
    base = {
        "id": "c2",
        "target": "cx",
        "operation": "8x8.update_instance",
        "action": "suspend",
        "definition_id": "d-1",
        "instance_id": "i-1",
    }
    return {**base, **extra}


def workfloo(**extra):
    return {"id": "c3", "target": "w", "operation": "workfloo.execute", "definition_id": "abc", **extra}


def rerun(**extra):
    return {"id": "c4", "target": "zuora", "operation": "zuora.rerun_task", "task_id": "2770", **extra}


def rejected(result, field, expected):
    assert isinstance(result, Invalid), result
    assert result.kind is ErrorKind.VALIDATION
    assert field in result.message and expected in result.message, result.message


@pytest.mark.parametrize(
    ("doc", "family", "field", "expected"),
    [
        (zuora(workflow_id=True), RUN, "workflow_id", "valid integer"),
        (zuora(workflow_id="909"), RUN, "workflow_id", "valid integer"),
        (zuora(workflow_id=909.0), RUN, "workflow_id", "valid integer"),
        (zuora(ttl_s="60"), RUN, "ttl_s", "valid number"),
        (zuora(ttl_s=True), RUN, "ttl_s", "valid number"),
        (zuora(ttl_s=1e300), RUN, "ttl_s", "less than or equal"),
        (zuora(expires_at=1_900_000_000), RUN, "expires_at", "RFC 3339"),
        (zuora(expires_at="1900000000"), RUN, "expires_at", "RFC 3339"),
        (zuora(expires_at="2026-11-23T10:00:00"), RUN, "expires_at", "RFC 3339"),
        (zuora(expires_at="2026-11-23"), RUN, "expires_at", "RFC 3339"),
        (zuora(parameters=[1]), RUN, "parameters", "valid dictionary"),
        (zuora(zuora={"track_id": 7}), RUN, "zuora.track_id", "valid string"),
        (zuora(zuora={"org_ids": "o-1"}), RUN, "zuora.org_ids", "valid list"),
        (zuora(zuora=[]), RUN, "zuora", "valid dictionary"),
        (zuora(target=5), RUN, "target", "valid string"),
        (workfloo(definition_id=123), RUN, "definition_id", "valid string"),
        (workfloo(form="x"), RUN, "form", "valid dictionary"),
        (eight(action="SUSPEND"), CONTROL, "action", "'suspend', 'resume' or 'terminate'"),
        (eight(action=1), CONTROL, "action", "'suspend', 'resume' or 'terminate'"),
        (eight(account_id=False), CONTROL, "account_id", "valid string"),
        (rerun(task_id=2770), CONTROL, "task_id", "valid string"),
    ],
)
def test_a_type_error_is_rejected_naming_field_and_type(doc, family, field, expected):
    rejected(parse(doc, family), field, expected)


def test_well_typed_values_still_parse():
    result = parse(zuora(ttl_s=60, expires_at="2126-11-23T10:00:00.5+01:00", zuora={"org_ids": ["o-1"]}))
    assert isinstance(result, Parsed), result
    assert result.command.ttl_s == 60.0
    assert result.command.expires_at is not None and result.command.expires_at.utcoffset() is not None


@pytest.mark.parametrize("bad", [".", "..", "...", "..;", ".;x", "..;v=1", ";v=1", ";"])
@pytest.mark.parametrize("field", ["definition_id", "instance_id", "account_id"])
def test_no_id_can_be_a_dot_segment(field, bad):
    rejected(parse(eight(**{field: bad}), CONTROL), field, "must not be")


@pytest.mark.parametrize("bad", ["..", "..;", "%2e%2e", "%2E.", ".%2e;"])
def test_no_task_id_can_be_a_dot_segment(bad):
    assert isinstance(parse(rerun(task_id=bad), CONTROL), Invalid)


@pytest.mark.parametrize("ok", ["inst;v=1", "a.b", "v1.2;x", "60dbe307fe55d99fc083db61", "a..b"])
def test_ids_with_dots_and_sub_delims_inside_are_allowed(ok):
    assert isinstance(parse(eight(instance_id=ok), CONTROL), Parsed)


def nested(depth):
    value: object = "leaf"
    for _ in range(depth):
        value = {"k": value}
    return value


def test_nesting_up_to_the_limit_parses_and_beyond_is_rejected():
    # the command object is level 1, so parameters may be MAX_DEPTH - 1 objects deep
    assert isinstance(parse(zuora(parameters=nested(MAX_DEPTH - 1))), Parsed)
    result = parse(zuora(parameters=nested(MAX_DEPTH)))
    rejected(result, "parameters", f"deeper than {MAX_DEPTH}")


@pytest.mark.parametrize("depth", [300, 900])
def test_deep_nesting_that_the_json_encoder_cannot_write_is_rejected_not_an_error(depth):
    # written by hand: orjson itself refuses to write this (its limit is 254 levels)
    form = b'{"k":' * depth + b"1" + b"}" * depth
    value = orjson.dumps(workfloo(form={}))[:-3] + form + b"}"
    rejected(parse(value), "form", "deeper than")


def test_too_many_values_is_rejected():
    rejected(parse(zuora(parameters={"xs": [0] * MAX_VALUES})), "parameters", f"more than {MAX_VALUES}")


def cloudevent(**extra):
    data = {"target": "w", "operation": "workfloo.execute", "definition_id": "abc"}
    return {"specversion": "1.0", "id": "ce-1", "source": "urn:x", "type": "t", "data": data, **extra}


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"source": None}, "cloudevent.source"),
        ({"source": 7}, "cloudevent.source"),
        ({"type": ""}, "cloudevent.type"),
        ({"time": 1_900_000_000}, "cloudevent.time"),
        ({"subject": ["x"]}, "cloudevent.subject"),
        ({"datacontenttype": "text/plain"}, "cloudevent.datacontenttype"),
    ],
)
def test_structured_envelope_attributes_are_strict(changes, field):
    doc = cloudevent()
    doc.update(changes)
    doc = {k: v for k, v in doc.items() if v is not None}
    result = parse(doc)
    assert isinstance(result, Invalid) and result.command_id == "ce-1", result
    assert field in result.message


@pytest.mark.parametrize("version", [1.0, 1, "1", "1.0 "])
def test_specversion_must_be_exactly_the_string_1_0(version):
    result = parse(cloudevent(specversion=version))
    assert isinstance(result, DeadLetter) and result.reason is DeadLetterReason.BAD_CLOUDEVENT


def test_structured_data_with_another_id_is_rejected():
    doc = cloudevent()
    doc["data"]["id"] = "other"
    result = parse(doc)
    assert isinstance(result, Invalid) and result.command_id == "ce-1"
    assert "differs from the CloudEvent id" in result.message


def binary_headers(**overrides):
    headers = {"ce_specversion": b"1.0", "ce_id": b"bin-1", "ce_source": b"urn:x", "ce_type": b"t"}
    headers.update(overrides)
    return [(k, v) for k, v in headers.items() if v is not None]


def test_binary_mode_takes_the_id_from_ce_id():
    result = parse(workfloo(id=None) | {}, headers=binary_headers(), family=RUN)
    assert isinstance(result, Invalid)  # "id": null in the value is an id that disagrees
    doc = {k: v for k, v in workfloo().items() if k != "id"}
    result = parse(doc, headers=[*binary_headers(), ("content-type", b"application/json")])
    assert isinstance(result, Parsed), result
    assert result.command.id == "bin-1"


def test_binary_mode_value_with_the_same_id_parses_and_another_id_is_rejected():
    assert isinstance(parse(workfloo(id="bin-1"), headers=binary_headers()), Parsed)
    result = parse(workfloo(id="other"), headers=binary_headers())
    assert isinstance(result, Invalid) and result.command_id == "bin-1"
    assert "differs from the CloudEvent id" in result.message


@pytest.mark.parametrize(
    ("headers", "reason"),
    [
        (binary_headers(ce_specversion=None), DeadLetterReason.BAD_CLOUDEVENT),
        (binary_headers(ce_specversion=b"0.3"), DeadLetterReason.BAD_CLOUDEVENT),
        (binary_headers(ce_id=None), DeadLetterReason.MISSING_ID),
        (binary_headers(ce_id=b""), DeadLetterReason.MISSING_ID),
        (binary_headers(ce_id=b"\xff\xfe"), DeadLetterReason.MISSING_ID),
        (binary_headers(ce_id=b"x" * 201), DeadLetterReason.MISSING_ID),
        ([*binary_headers(), ("ce_id", b"bin-2")], DeadLetterReason.BAD_CLOUDEVENT),
    ],
)
def test_unusable_binary_attributes_are_dead_letters(headers, reason):
    doc = {k: v for k, v in workfloo().items() if k != "id"}
    result = parse(doc, headers=headers)
    assert isinstance(result, DeadLetter) and result.reason is reason, result


@pytest.mark.parametrize(
    ("headers", "field"),
    [
        (binary_headers(ce_source=None), "cloudevent.source"),
        (binary_headers(ce_type=b"\xff"), "cloudevent.type"),
        (binary_headers(ce_time=b"yesterday"), "cloudevent.time"),
        ([*binary_headers(), ("content-type", b"text/plain")], "cloudevent.datacontenttype"),
        (binary_headers(ce_source=b"s" * 100_000), "cloudevent.source"),
    ],
)
def test_bad_binary_attributes_are_rejected_without_echoing_them(headers, field):
    doc = {k: v for k, v in workfloo().items() if k != "id"}
    result = parse(doc, headers=headers)
    assert isinstance(result, Invalid) and result.command_id == "bin-1", result
    assert field in result.message and len(result.message) < 500


def test_binary_headers_with_a_structured_value_is_a_dead_letter():
    result = parse(cloudevent(), headers=binary_headers())
    assert isinstance(result, DeadLetter) and result.reason is DeadLetterReason.BAD_CLOUDEVENT


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", b"\xff\xfe"), ("x", None), ("x", b""), ("x", b"1"), ("big", b"z" * 2_000_000)],
        [("content-type", b"\xff")],
    ],
)
def test_unrelated_hostile_headers_do_not_change_a_plain_command(headers):
    assert isinstance(parse(zuora(), headers=headers), Parsed)


def test_schema_registry_frame_is_stripped_and_its_id_kept():
    framed = b"\x00\x00\x00\x01\x2c" + orjson.dumps(zuora())
    assert split_frame(framed) == (300, orjson.dumps(zuora()))
    assert schema_id_of(framed) == 300
    assert schema_id_of(orjson.dumps(zuora())) is None
    assert isinstance(parse(framed), Parsed)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\x00\x00\x01", DeadLetterReason.INVALID_JSON),
        (b"\x00\x00\x00\x00\x01", DeadLetterReason.EMPTY_VALUE),
        (b"\x00\x00\x00\x00\x01\xff{}", DeadLetterReason.NOT_UTF8),
        (b"\x00\x00\x00\x00\x01[1]", DeadLetterReason.NOT_AN_OBJECT),
    ],
)
def test_a_broken_frame_is_a_dead_letter(value, reason):
    result = parse(value)
    assert isinstance(result, DeadLetter) and result.reason is reason


def test_headers_are_copied_whole_within_the_budget_and_dropped_beyond():
    headers = [("a", b"1"), ("b", None), ("c", b"xyz")]
    assert copyable_headers(headers, 100) == (headers, 0)
    assert copyable_headers(headers, 6) == ([], 7)


def test_wire_url_keeps_the_builders_encoding():
    path = "/api/v1/accounts/acme/definitions/d/workflows/inst%3Bv%3D1"
    assert wire_url("http://127.0.0.1:8080/8x8", path).raw_path == "/8x8" + path
    assert URL("http://127.0.0.1:8080/8x8" + path).raw_path != "/8x8" + path  # what a plain str would send


def dead_letter_of(headers, value=b"\xff", max_request_size=70_000):
    settings = Settings.model_validate(
        {"kafka": {"max_request_size": max_request_size}, "engine": {"max_message_bytes": 1024}}
    )
    processor = Processor(settings, {}, executor=None, metrics=Metrics())  # type: ignore[arg-type]
    record = Incoming("workflow.run.commands", 0, 1, b"k", value, tuple(headers))
    return processor.dead_letter(record, DeadLetter(DeadLetterReason.NOT_UTF8, "x"))


def test_dead_letters_copy_hostile_headers_first_while_they_fit():
    hostile = [("a", None), ("a", b""), ("b", b"\xff\xfe"), ("c", b"z" * 1000)]
    out = dead_letter_of(hostile)
    assert out.headers[: len(hostile)] == hostile
    assert "dlq.headers_omitted_bytes" not in dict(out.headers)


def test_dead_letters_drop_headers_that_would_not_fit_a_produce_request():
    # 70,000 - 64 KiB = 4,464 bytes for key, value and headers together
    out = dead_letter_of([("trace", b"1"), ("big", b"z" * 4000)], value=b"\xff" * 500)
    headers = dict(out.headers)
    assert out.value == b"\xff" * 500 and "big" not in headers and "trace" not in headers
    assert headers["dlq.headers_omitted_bytes"] == b"4009"
