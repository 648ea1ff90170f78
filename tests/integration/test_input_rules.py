"""Issue 11 through the real broker and the sandbox: what the provider receives is what the command
meant (strict types, exact wire paths, depth limits, sandbox scenarios), CloudEvents binary mode,
Schema Registry framing and hostile headers."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from bridge.kafka.topics import wait_until_served
from bridge.pipeline.processor import max_key_bytes
from bridge.sandbox import workfloo as workfloo_sandbox
from bridge.sandbox import zuora as zuora_sandbox
from bridge.sandbox.eightbyeight import EIGHTBYEIGHT_DEFINITION
from bridge.sandbox.workfloo import WORKFLOO_SCENARIO
from bridge.sandbox.zuora_runs import ZUORA_DEFINITION_NO_PARAMS
from tests.integration.conftest import Stack, by_command, eight_command, workfloo_command, zuora_command

pytestmark = pytest.mark.integration
Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes | None]]]


def uid(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:6]}"


async def produce(stack: Stack, topic: str, *records: Record) -> None:
    """Raw records with headers (the shared ``Stack.send`` sends none)."""
    producer = AIOKafkaProducer(bootstrap_servers=stack.broker.bootstrap, max_request_size=2_000_000)
    await producer.start()
    try:
        for key, value, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()


def rerun_command(command_id: str, task_id: str) -> dict[str, Any]:
    return {
        "id": command_id,
        "target": zuora_sandbox.LOCAL_TARGET,
        "operation": "zuora.rerun_task",
        "task_id": task_id,
    }


def provider_calls(requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in requests if not r["path"].endswith("/oauth/token")]


async def test_type_errors_are_rejected_and_never_reach_the_provider(stack: Stack) -> None:
    await stack.start_bridge()
    bad = {
        uid("bool-workflow"): zuora_command("", workflow_id=True),
        uid("string-workflow"): zuora_command("", workflow_id=str(ZUORA_DEFINITION_NO_PARAMS)),
        uid("string-ttl"): zuora_command("", ttl_s="60"),
        uid("epoch-expiry"): zuora_command("", expires_at=4_102_444_800),
        uid("bool-form"): {**workfloo_command(""), "form": True},
        uid("upper-action"): eight_command("", action="SUSPEND"),
    }
    docs = [(b"k", {**doc, "id": command_id}) for command_id, doc in bad.items()]
    good = zuora_command(uid("good"))
    await stack.send(*docs, (b"k", good))

    outcomes = by_command(await stack.collect(len(docs) + 1))
    for command_id, field in zip(
        bad, ["workflow_id", "workflow_id", "ttl_s", "expires_at", "form", "action"], strict=True
    ):
        data = outcomes[command_id]
        assert (data["status"], data["error"]["kind"], data["attempts"]) == ("rejected", "validation", 0)
        assert data["error"]["message"].startswith(field), data["error"]["message"]
    assert outcomes[good["id"]]["status"] == "queued"
    # only the good command reached Zuora: `true` no longer runs workflow 1, "398" no longer runs 398
    runs = [r["path"] for r in provider_calls(await stack.requests("zuora"))]
    assert runs == [f"/zuora/workflows/{ZUORA_DEFINITION_NO_PARAMS}/run"]
    assert provider_calls(await stack.requests("workfloo")) == []
    assert provider_calls(await stack.requests("8x8")) == []


async def test_the_provider_receives_the_path_the_builder_encoded(stack: Stack) -> None:
    await stack.start_bridge()
    instance = eight_command(uid("semicolon-instance"), instance_id="inst;v=1")
    account = eight_command(uid("odd-account"), account_id="acme!$&'()*+,=:@~")
    task = rerun_command(uid("semicolon-task"), "2770;x=y")
    await stack.send((b"i", instance), (b"a", account), (b"t", task))
    outcomes = by_command(await stack.collect(3))
    assert all(outcomes[c["id"]]["attempts"] == 1 for c in (instance, account, task)), outcomes

    paths = sorted(r["raw_path"] for r in provider_calls(await stack.requests("8x8")))
    base = f"/8x8/api/v1/accounts/{{}}/definitions/{EIGHTBYEIGHT_DEFINITION}/workflows/{{}}"
    assert paths == sorted(
        [
            base.format("acme", "inst%3Bv%3D1"),
            base.format("acme%21%24%26%27%28%29%2A%2B%2C%3D%3A%40~", "60dbe307fe55d99fc083db61"),
        ]
    )
    # and the server decodes the segments back to exactly the ids the commands named
    decoded = sorted(r["path"] for r in provider_calls(await stack.requests("8x8")))
    assert decoded == sorted(
        [
            base.format("acme", "inst;v=1"),
            base.format("acme!$&'()*+,=:@~", "60dbe307fe55d99fc083db61"),
        ]
    )
    reruns = [r["raw_path"] for r in provider_calls(await stack.requests("zuora"))]
    assert reruns == ["/zuora/workflows/tasks/2770%3Bx%3Dy/rerun"]


async def test_dot_segment_ids_are_refused_before_any_call(stack: Stack) -> None:
    await stack.start_bridge()
    commands = [
        eight_command(uid("dots-definition"), definition_id="..;"),
        eight_command(uid("dots-instance"), instance_id=".."),
        eight_command(uid("dots-account"), account_id=".;v=1"),
        rerun_command(uid("dots-task"), "..;"),
        rerun_command(uid("pct-task"), "%2e%2e"),
    ]
    await stack.send(*[(b"d", c) for c in commands])
    outcomes = by_command(await stack.collect(len(commands)))
    assert {(d["status"], d["error"]["kind"], d["attempts"]) for d in outcomes.values()} == {
        ("rejected", "validation", 0)
    }
    assert len(outcomes) == len(commands)
    assert provider_calls(await stack.requests("8x8")) == []
    assert provider_calls(await stack.requests("zuora")) == []


async def test_deep_parameters_are_rejected_not_an_internal_error(stack: Stack) -> None:
    await stack.start_bridge()
    deep_id, ok_id = uid("deep"), uid("shallow")
    depth = 300  # deeper than orjson can write (254), shallower than it can read (1024)
    nested = b'{"k":' * depth + b"1" + b"}" * depth
    deep = orjson.dumps(zuora_command(deep_id, parameters={}))[:-3] + nested + b"}"
    assert json.loads(deep)["id"] == deep_id  # a well-formed command
    await produce(stack, stack.settings.topics.run_commands, (b"k", deep, []))
    await stack.send((b"k", zuora_command(ok_id, parameters={"a": {"b": {"c": [1, {"d": None}]}}})))
    events = await stack.collect(2)
    outcomes = by_command(events)
    assert len(outcomes) == 2, events  # no dead letter
    assert outcomes[deep_id]["status"] == "rejected" and outcomes[deep_id]["attempts"] == 0
    assert outcomes[deep_id]["error"]["message"].startswith("parameters: nests deeper than 32 levels")
    assert outcomes[ok_id]["status"] == "queued"
    bodies = [r["body"] for r in provider_calls(await stack.requests("zuora"))]
    assert bodies == [{"a": {"b": {"c": [1, {"d": None}]}}}]


async def test_sandbox_mode_targets_require_a_scenario(stack: Stack) -> None:
    stack.configure(targets={workfloo_sandbox.LOCAL_TARGET: {"sandbox": True}})
    await stack.start_bridge()
    without = {k: v for k, v in workfloo_command(uid("no-scenario")).items() if k != "scenario_id"}
    with_scenario = workfloo_command(uid("scenario"))
    await stack.send((b"w", without), (b"w", with_scenario))
    outcomes = by_command(await stack.collect(2))
    refused = outcomes[without["id"]]
    assert (refused["status"], refused["error"]["kind"], refused["attempts"]) == ("rejected", "validation", 0)
    assert "scenario_id" in refused["error"]["message"]
    assert outcomes[with_scenario["id"]]["status"] == "queued"
    calls = provider_calls(await stack.requests("workfloo"))
    assert [(r["body"].get("scenarioId"), r["query"]) for r in calls] == [
        (WORKFLOO_SCENARIO, {"sandbox": "true"})
    ]


def binary(event_id: bytes | None, **extra: bytes | None) -> list[tuple[str, bytes | None]]:
    headers: dict[str, bytes | None] = {
        "ce_specversion": b"1.0",
        "ce_source": b"urn:billing-service",
        "ce_type": b"workflow.command.run",
        "content-type": b"application/json",
        **extra,
    }
    if event_id is not None:
        headers["ce_id"] = event_id
    return list(headers.items())


async def test_cloudevents_binary_mode(stack: Stack) -> None:
    await stack.start_bridge()
    only_header, same, other = uid("bin-only"), uid("bin-same"), uid("bin-other")
    topic = stack.settings.topics.run_commands
    value = {k: v for k, v in zuora_command("x").items() if k != "id"}
    await produce(
        stack,
        topic,
        (b"b", orjson.dumps(value), binary(only_header.encode())),
        (b"b", orjson.dumps({**value, "id": same}), binary(same.encode())),
        (b"b", orjson.dumps({**value, "id": "value-id"}), binary(other.encode())),
        (b"b", orjson.dumps(value), binary(None)),
    )
    events = await stack.collect(4)
    outcomes = by_command(events)
    assert outcomes[only_header]["status"] == "queued"
    assert outcomes[same]["status"] == "queued"
    assert outcomes[other]["status"] == "rejected" and outcomes[other]["attempts"] == 0
    assert "differs from the CloudEvent id" in outcomes[other]["error"]["message"]
    [dead] = [e for e in events if not isinstance(e, dict)]
    assert dict(dead.headers)["dlq.reason"] == b"missing_id"
    assert len(provider_calls(await stack.requests("zuora"))) == 2


async def test_schema_registry_framed_json_from_confluent_serializer(
    stack: Stack, caplog: pytest.LogCaptureFixture
) -> None:
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.json_schema import JSONSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    caplog.set_level(logging.INFO, logger="bridge.outcome")
    await stack.start_bridge()
    topic = stack.settings.topics.run_commands
    registry = SchemaRegistryClient.new_client({"url": "mock://"})
    schema = Path(__file__).parents[2] / "topics" / "schemas" / "run-command.schema.json"
    serialize = JSONSerializer(schema.read_text(), registry)
    command = zuora_command(uid("registry"), parameters={"accountId": "A-1"})
    value = serialize(command, SerializationContext(topic, MessageField.VALUE))
    schema_id = registry.get_latest_version(f"{topic}-value").schema_id
    assert value[:1] == b"\x00" and int.from_bytes(value[1:5], "big") == schema_id

    def send_with_librdkafka() -> None:
        producer = Producer({"bootstrap.servers": stack.broker.bootstrap, "enable.idempotence": False})
        producer.produce(topic, value=value, key=b"r")
        assert producer.flush(10) == 0

    await asyncio.to_thread(send_with_librdkafka)
    [event] = await stack.collect(1)
    assert event["data"]["command_id"] == command["id"] and event["data"]["status"] == "queued"
    assert event["data"]["schema_id"] == schema_id
    [body] = [r["body"] for r in provider_calls(await stack.requests("zuora"))]
    assert body == {"accountId": "A-1"}
    lines = [r for r in caplog.records if getattr(r, "command_id", None) == command["id"]]
    assert [getattr(r, "schema_id", None) for r in lines] == [schema_id]


async def test_hostile_headers_break_nothing_and_are_not_copied_unbounded(stack: Stack) -> None:
    # a command topic that takes records over 1 MiB (the spec's limit; a broker that enforces it,
    # as Kafka does, would refuse the oversized record below before the bridge ever saw it)
    topic = f"{stack.settings.topics.run_commands}.big"
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.broker.bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 4, 1, topic_configs={"max.message.bytes": "2097152"})])
        await wait_until_served(admin, [topic])
    finally:
        await admin.close()
    stack.configure(topics={"run_commands": topic})
    await stack.start_bridge()
    hostile: list[tuple[str, bytes | None]] = [
        ("not-utf8", b"\xff\xfe\xfd"),
        ("empty", b""),
        ("null", None),
        ("repeated", b"1"),
        ("repeated", b"2"),
        ("content-type", b"\xc3\x28"),
        ("big", b"h" * 200_000),
    ]
    good = zuora_command(uid("hostile-headers"))
    # a value under engine.max_message_bytes whose headers take the record over the bridge's own
    # kafka.max_request_size (1 MiB): copied whole, the dead letter could never be published
    oversized = [("huge", b"x" * 150_000)]
    big_value = b"\xff" + b"v" * 900_000
    await produce(
        stack,
        topic,
        (b"h", orjson.dumps(good), hostile),
        (b"h", b"\xff not utf8", hostile),
        (b"h", big_value, oversized),
    )
    events = await stack.collect(3)
    assert by_command(events)[good["id"]]["status"] == "queued"
    dead = [e for e in events if not isinstance(e, dict)]
    assert len(dead) == 2
    copied = next(d for d in dead if d.value == b"\xff not utf8")
    assert [tuple(h) for h in copied.headers[: len(hostile)]] == hostile  # copied as they came
    trimmed = next(d for d in dead if d.value == big_value)
    headers = dict(trimmed.headers)
    assert "huge" not in headers and headers["dlq.headers_omitted_bytes"] == b"150004"
    assert headers["dlq.reason"] == b"not_utf8"
    sent = provider_calls(await stack.requests("zuora"))
    assert len(sent) == 1 and not any(k in sent[0]["headers"] for k in ("big", "not-utf8", "repeated"))


async def test_a_key_no_outcome_could_carry_is_a_dead_letter_and_the_partition_moves_on(stack: Stack) -> None:
    # near the producer's max_request_size (1 MiB): the outcome copying it could never be published
    limit = max_key_bytes(stack.settings.kafka.max_request_size)
    stack.configure(
        targets={zuora_sandbox.LOCAL_TARGET: {"tracking": {"first_poll_s": 0.3, "max_interval_s": 1.0}}}
    )
    await stack.start_bridge()
    huge, at_limit, after = uid("huge-key"), uid("key-at-limit"), uid("after-huge-key")
    topic = stack.settings.topics.run_commands
    await produce(
        stack,
        topic,
        (b"k" * 1_000_000, orjson.dumps(zuora_command(huge)), []),
        (b"l" * limit, orjson.dumps(zuora_command(at_limit)), []),
        (b"k", orjson.dumps(zuora_command(after)), []),
    )
    events = await stack.collect(3)
    outcomes = by_command(events)
    assert {i: outcomes[i]["status"] for i in (at_limit, after)} == {at_limit: "queued", after: "queued"}
    [letter] = [e for e in events if not isinstance(e, dict)]
    headers = dict(letter.headers)
    assert headers["dlq.reason"] == b"key_too_large" and headers["dlq.key_omitted_bytes"] == b"1000000"
    assert letter.key is None and orjson.loads(letter.value)["id"] == huge
    runs = [r for r in await stack.requests("zuora") if r["method"] == "POST" and r["path"].endswith("/run")]
    assert len(runs) == 2  # the huge-key command never ran
    # the longest key also fits its tracked entry (in base64) and its lifecycle events
    consumer = AIOKafkaConsumer(
        stack.settings.topics.lifecycle,
        bootstrap_servers=stack.broker.bootstrap,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    try:
        ended: dict[str, bytes | None] = {}
        async with asyncio.timeout(30):
            while at_limit not in ended:
                record = await consumer.getone()
                if orjson.loads(record.value)["data"]["status"] == "completed":
                    ended[orjson.loads(record.value)["subject"]] = record.key
    finally:
        await consumer.stop()
    assert ended[at_limit] == b"l" * limit
