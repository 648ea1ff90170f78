"""The processor without a broker or a network: one record in, exactly one message out."""

from __future__ import annotations

import base64
import random
import time
from typing import Any

import orjson

from bridge.app import build_targets
from bridge.config.settings import Settings
from bridge.http import Call, Response
from bridge.messages.outcomes import ErrorKind, Status
from bridge.messages.parsing import DeadLetterReason
from bridge.messages.records import Incoming, Outgoing
from bridge.observability.metrics import Metrics
from bridge.observability.redact import Redactor
from bridge.pipeline.executor import Executor
from bridge.pipeline.processor import Processor, max_key_bytes
from bridge.providers.settings import parse_settings
from bridge.testing import FakeTransport, json_response

ENV = {"WF_KEY": "wf-key-123456", "EX_KEY": "ex-key-123456"}
TARGETS = {
    "wf": {"provider": "workfloo", "base_url": "https://wf.example", "api_key": {"env": "WF_KEY"}},
    "old": {
        "provider": "workfloo",
        "base_url": "https://wf.example",
        "api_key": {"env": "WF_KEY"},
        "max_age_s": 5,
    },
    "ex": {
        "provider": "8x8",
        "base_url": "https://ex.example",
        "account_id": "acc",
        "api_key": {"env": "EX_KEY"},
    },
}
SETTINGS: Settings = parse_settings({"targets": TARGETS}, ENV)


def processor(transport: FakeTransport, metrics: Metrics | None = None) -> Processor:
    metrics = metrics or Metrics()
    targets = build_targets(SETTINGS, None, metrics)  # type: ignore[arg-type]  # static-key targets only
    run = Executor(transport, metrics, Redactor(), 256, rng=random.Random(1), sleep=_no_sleep)
    return Processor(SETTINGS, targets, run, metrics)


async def _no_sleep(_: float) -> None:
    return None


def record(command: dict[str, Any], *, topic: str | None = None, age_s: float = 0.0) -> Incoming:
    return Incoming(
        topic=topic or SETTINGS.topics.run_commands,
        partition=2,
        offset=40,
        key=b"key-1",
        value=orjson.dumps(command),
        timestamp_ms=int((time.time() - age_s) * 1000),
    )


def workfloo(**fields: Any) -> dict[str, Any]:
    return {"id": "c-1", "target": "wf", "operation": "workfloo.execute", "definition_id": "d1", **fields}


def error_kind(out: Outgoing) -> ErrorKind | None:
    assert out.outcome is not None
    return out.outcome.error.kind if out.outcome.error else None


async def test_a_run_command_becomes_one_outcome_on_the_run_outcomes_topic() -> None:
    transport = FakeTransport.scripted([json_response(200, b'{"id": "exec-9"}')])
    out = await processor(transport).process(record(workfloo()))
    assert out.topic == SETTINGS.topics.run_outcomes and out.key == b"key-1"
    assert out.outcome is not None and out.outcome.status is Status.QUEUED
    assert out.outcome.provider_ref == "exec-9" and out.outcome.source.offset == 40
    event = orjson.loads(out.value or b"")
    assert (event["subject"], event["type"]) == ("c-1", "workflow.outcome.queued")
    assert out.labels == ("wf", "workfloo", "workfloo.execute", "queued")
    assert len(transport.calls) == 1


async def test_a_control_command_answers_on_the_control_outcomes_topic() -> None:
    transport = FakeTransport.scripted([json_response(200)])
    command = {
        "id": "s-1",
        "target": "ex",
        "operation": "8x8.update_instance",
        "action": "suspend",
        "definition_id": "def",
        "instance_id": "inst",
    }
    out = await processor(transport).process(record(command, topic=SETTINGS.topics.control_commands))
    assert out.topic == SETTINGS.topics.control_outcomes
    assert out.outcome is not None and out.outcome.status is Status.APPLIED
    assert (
        str(transport.calls[0].url) == "https://ex.example/api/v1/accounts/acc/definitions/def/workflows/inst"
    )


async def test_unknown_target_is_rejected_without_a_call_and_with_a_bounded_label() -> None:
    transport = FakeTransport.scripted([])
    out = await processor(transport).process(record(workfloo(target="nobody")))
    assert error_kind(out) is ErrorKind.UNKNOWN_TARGET
    assert out.labels[0] == "unknown" and transport.calls == []


async def test_operation_for_another_provider_is_a_target_mismatch() -> None:
    transport = FakeTransport.scripted([])
    command = {"id": "r-1", "target": "wf", "operation": "zuora.rerun_task", "task_id": "7"}
    out = await processor(transport).process(record(command, topic=SETTINGS.topics.control_commands))
    assert error_kind(out) is ErrorKind.TARGET_MISMATCH
    assert out.outcome is not None and "workfloo target" in out.outcome.error.message  # type: ignore[union-attr]


async def test_expired_commands_are_never_sent() -> None:
    transport = FakeTransport.scripted([])
    run = processor(transport)
    by_ttl = await run.process(record(workfloo(ttl_s=1), age_s=10))
    by_time = await run.process(record(workfloo(expires_at="2020-01-01T00:00:00Z")))
    by_target = await run.process(record(workfloo(target="old"), age_s=10))
    assert [error_kind(o) for o in (by_ttl, by_time, by_target)] == [ErrorKind.EXPIRED] * 3
    assert transport.calls == []


async def test_invalid_command_with_an_id_is_rejected_and_keeps_the_id() -> None:
    out = await processor(FakeTransport.scripted([])).process(record(workfloo(surprise=1)))
    assert error_kind(out) is ErrorKind.VALIDATION
    assert out.outcome is not None and out.outcome.command_id == "c-1"


async def test_unreadable_record_is_a_dead_letter_with_its_source() -> None:
    broken = Incoming(SETTINGS.topics.run_commands, 1, 3, b"k", b"{not json", (("h", b"v"),))
    out = await processor(FakeTransport.scripted([])).process(broken)
    assert out.topic == SETTINGS.topics.dead_letter and out.value == b"{not json"
    headers = dict(out.headers)
    assert headers["dlq.reason"] == DeadLetterReason.INVALID_JSON.value.encode()
    assert (headers["dlq.source.partition"], headers["dlq.source.offset"], headers["h"]) == (b"1", b"3", b"v")


async def test_a_bug_while_executing_is_a_dead_letter_not_a_crash() -> None:
    def explode(call: Call) -> Response:
        raise RuntimeError("bug")

    out = await processor(FakeTransport(explode)).process(record(workfloo()))
    assert out.dead_letter is not None and out.dead_letter.reason is DeadLetterReason.INTERNAL_ERROR
    assert out.dead_letter.detail == "RuntimeError"


async def test_commands_consumed_are_counted_per_topic() -> None:
    metrics = Metrics()
    await processor(FakeTransport.scripted([json_response(200)]), metrics).process(record(workfloo()))
    value = metrics.registry.get_sample_value(
        "bridge_commands_consumed_total", {"topic": SETTINGS.topics.run_commands}
    )
    assert value == 1


def test_the_longest_key_leaves_room_for_the_tracked_entry_in_base64() -> None:
    limit = max_key_bytes(1_048_576)
    assert limit == (1_048_576 - 65_536) * 3 // 4 == 737_280
    assert len(base64.b64encode(b"k" * limit)) + 65_536 <= 1_048_576


async def test_a_key_no_outcome_could_carry_is_a_dead_letter_without_it_and_no_call() -> None:
    limit = max_key_bytes(SETTINGS.kafka.max_request_size)
    transport = FakeTransport.scripted([json_response(200, b'{"id": "exec-9"}')])
    big = Incoming(SETTINGS.topics.run_commands, 2, 41, b"k" * (limit + 1), orjson.dumps(workfloo()))
    out = await processor(transport).process(big)
    assert transport.calls == []  # not executed: its outcome could not be published
    assert out.topic == SETTINGS.topics.dead_letter and out.key is None and out.value == big.value
    headers = dict(out.headers)
    assert headers["dlq.reason"] == b"key_too_large"
    assert headers["dlq.key_omitted_bytes"] == str(limit + 1).encode()
    assert f"{limit + 1} bytes, limit is {limit}" in headers["dlq.detail"].decode()


async def test_a_key_at_the_limit_is_executed_and_its_outcome_carries_it() -> None:
    limit = max_key_bytes(SETTINGS.kafka.max_request_size)
    transport = FakeTransport.scripted([json_response(200, b'{"id": "exec-9"}')])
    at_limit = Incoming(SETTINGS.topics.run_commands, 2, 42, b"k" * limit, orjson.dumps(workfloo()))
    out = await processor(transport).process(at_limit)
    assert out.outcome is not None and out.outcome.status is Status.QUEUED and out.key == at_limit.key
