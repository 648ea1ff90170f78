from datetime import UTC, datetime

import orjson

from bridge.messages.outcomes import OutcomeData, SourceRecord, Status, encode_outcome, outcome_event_id
from bridge.observability.redact import Redactor


def test_known_secrets_and_secret_fields_are_masked():
    r = Redactor(["hunter2-secret"])
    text = (
        '{"access_token":"abc.def","client_secret": "zzz", "note":"hunter2-secret"} '
        "Authorization: Bearer abcdefghijklmnop x-api-key=k123"
    )
    scrubbed = r.scrub(text)
    for leaked in ("abc.def", "zzz", "hunter2-secret", "abcdefghijklmnop", "k123"):
        assert leaked not in scrubbed
    assert '"note":"***"' in scrubbed


def test_body_excerpt_caps_size():
    r = Redactor()
    assert r.body_excerpt(b"", 100) is None
    excerpt = r.body_excerpt(b"x" * 5000, 100)
    assert excerpt is not None and excerpt.endswith("(truncated)") and len(excerpt) < 120
    assert r.body_excerpt("ñ".encode() * 3, 100) == "ñññ"


def test_outcome_is_a_cloudevent_with_the_command_id_as_subject():
    source = SourceRecord(topic="cmds", partition=2, offset=41)
    data = OutcomeData(
        command_id="cmd-1",
        target="z",
        provider="zuora",
        operation="zuora.run_workflow",
        status=Status.QUEUED,
        provider_ref="400",
        http_status=200,
        attempts=1,
        source=source,
    )
    event = orjson.loads(encode_outcome(data, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)))
    assert event["specversion"] == "1.0"
    assert event["type"] == "workflow.outcome.queued"
    assert event["subject"] == "cmd-1"
    assert event["time"] == "2026-01-02T03:04:05Z"
    assert event["data"]["provider_ref"] == "400"
    assert event["data"]["source"] == {"topic": "cmds", "partition": 2, "offset": 41}
    # a redelivery of the same record yields the same event id; another record another id
    assert event["id"] == outcome_event_id(source)
    assert outcome_event_id(source) != outcome_event_id(SourceRecord(topic="cmds", partition=2, offset=42))


def test_the_fast_encoding_is_the_same_document_as_the_model():
    from bridge.messages.outcomes import OutcomeError, to_cloudevent

    now = datetime(2026, 1, 2, tzinfo=UTC)
    data = OutcomeData(
        command_id='q"uote\\',
        target=None,
        provider=None,
        operation=None,
        status=Status.REJECTED,
        error=OutcomeError(kind="validation", message="ñ <>&", retryable=False, provider_body="{}"),
        source=SourceRecord(topic="t", partition=0, offset=1),
    )
    assert orjson.loads(encode_outcome(data, now)) == to_cloudevent(data, now)
