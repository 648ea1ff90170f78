"""The shell commands users run against a broker: ``bridge send`` and ``bridge tail``."""

from __future__ import annotations

import re
import uuid
from typing import Any

import orjson
import pytest

from bridge.local.broker import free_port
from bridge.sandbox import zuora as zuora_sandbox
from bridge.sandbox.zuora_runs import ZUORA_TASK_ERROR
from tests.integration.clirun import bridge_cli, one_line_error
from tests.integration.conftest import Stack

pytestmark = pytest.mark.integration


async def test_send_publishes_to_the_right_topic_and_tail_prints_the_outcome(stack: Stack, tmp_path) -> None:
    command_id = f"cli-{uuid.uuid4().hex[:6]}"
    config = tmp_path / "topics.yaml"
    config.write_text(
        "topics:\n" + "".join(f"  {k}: {v}\n" for k, v in stack.settings.topics.model_dump().items())
    )
    await stack.start_bridge()
    doc = (
        f'{{"id":"{command_id}","target":"{zuora_sandbox.LOCAL_TARGET}","operation":"zuora.rerun_task",'
        f'"task_id":"{ZUORA_TASK_ERROR}"}}'
    )
    code, out, err = await bridge_cli(
        "send", "--config", str(config), "--bootstrap", stack.broker.bootstrap, doc
    )
    assert code == 0, err
    assert stack.settings.topics.control_commands in out  # a control command goes to the control topic
    code, out, err = await bridge_cli(
        "tail",
        "--config",
        str(config),
        "--bootstrap",
        stack.broker.bootstrap,
        "--from-beginning",
        "--count",
        "1",
        "--timeout",
        "30",
    )
    assert code == 0, err
    assert "applied" in out and command_id in out


async def test_send_refuses_an_invalid_command_without_publishing(stack: Stack) -> None:
    code, _, err = await bridge_cli(
        "send",
        "--bootstrap",
        stack.broker.bootstrap,
        '{"id":"x","target":"t","operation":"zuora.run_workflow","workflow_id":"nope"}',
    )
    assert code == 2 and "workflow_id" in err


# -- bridge tail against the real broker --------------------------------------------------------------


def event(command_id: str, status: str, target: str = "zuora-eu") -> dict[str, Any]:
    kind = "lifecycle" if status in ("running", "completed") else "outcome"
    return {
        "type": f"workflow.{kind}.{status}",
        "data": {"command_id": command_id, "status": status, "target": target},
    }


async def fill(stack: Stack) -> list[str]:
    """Records on three topics whose timestamps interleave; returns the command ids in time order."""
    t = stack.settings.topics
    base = 1_700_000_000_000
    plan = [  # (ms after base, topic, record)
        (50, t.lifecycle, event("c-4", "completed")),
        (10, t.run_outcomes, event("c-1", "queued")),
        (40, t.dead_letter, b'{"id": "c-3", "target": "zilliant"}'),
        (20, t.control_outcomes, event("c-2", "conflict", "zilliant")),
        (30, t.run_outcomes, event("c-5", "rejected")),
    ]
    for offset_ms, topic, doc in plan:
        headers = [("dlq.reason", b"invalid_command")] if topic == t.dead_letter else None
        await stack.send((b"k", doc), topic=topic, timestamp_ms=base + offset_ms, headers=headers)
    return ["c-1", "c-2", "c-5", "c-3", "c-4"]


def tail_argv(stack: Stack, config: str, *extra: str) -> list[str]:
    return ["tail", "--config", config, "--bootstrap", stack.broker.bootstrap, "--from-beginning", *extra]


def topics_config(stack: Stack, tmp_path) -> str:
    config = tmp_path / "topics.yaml"
    config.write_text(
        "topics:\n" + "".join(f"  {k}: {v}\n" for k, v in stack.settings.topics.model_dump().items())
    )
    return str(config)


def command_id(doc: dict[str, Any]) -> str:
    if doc["type"] == "bridge.dead_letter":
        return str(orjson.loads(doc["value"])["id"])
    return str(doc["data"]["command_id"])


async def test_tail_json_prints_every_record_as_json_in_time_order_across_topics(
    stack: Stack, tmp_path
) -> None:
    in_time_order = await fill(stack)
    argv = tail_argv(stack, topics_config(stack, tmp_path), "--json", "--count", "5", "--timeout", "20")

    code, out, err = await bridge_cli(*argv)

    assert code == 0, err
    docs = [orjson.loads(line) for line in out.splitlines()]  # every line is JSON, the dead letter too
    assert [command_id(d) for d in docs] == in_time_order
    assert docs[3]["type"] == "bridge.dead_letter" and docs[3]["reason"] == "invalid_command"


async def test_tail_text_has_a_time_column_and_count_is_exact(stack: Stack, tmp_path) -> None:
    await stack.send(
        *[(b"k", event(f"n-{i}", "queued")) for i in range(24)], topic=stack.settings.topics.run_outcomes
    )
    code, out, err = await bridge_cli(
        *tail_argv(stack, topics_config(stack, tmp_path), "--count", "3", "--timeout", "20")
    )
    assert code == 0, err
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(re.fullmatch(r"\d\d:\d\d:\d\d\.\d{3}  queued .*", line) for line in lines), lines


async def test_tail_filters_by_id_target_and_status(stack: Stack, tmp_path) -> None:
    await fill(stack)
    config = topics_config(stack, tmp_path)

    async def ids(*filters: str) -> list[str]:
        code, out, err = await bridge_cli(*tail_argv(stack, config, "--json", "--timeout", "3", *filters))
        assert code == 0, err
        return [command_id(orjson.loads(line)) for line in out.splitlines()]

    assert await ids("--id", "c-2", "--id", "c-4") == ["c-2", "c-4"]
    assert await ids("--target", "zilliant") == ["c-2", "c-3"]  # the dead letter's command names it
    assert await ids("--status", "dead_letter,rejected") == ["c-5", "c-3"]


async def test_tail_exits_1_when_the_timeout_comes_before_the_count(stack: Stack, tmp_path) -> None:
    await fill(stack)
    code, out, err = await bridge_cli(
        *tail_argv(stack, topics_config(stack, tmp_path), "--count", "9", "--timeout", "2")
    )
    assert code == 1
    assert len(out.splitlines()) == 5
    assert err == "bridge tail: 5 of 9 event(s) before the timeout\n"


# -- bridge send --raw: the dead-letter path, tried from the shell ------------------------------------


async def test_send_raw_from_an_argument_a_file_and_stdin_reaches_the_dead_letter_topic(
    stack: Stack, tmp_path
) -> None:
    await stack.start_bridge()
    config = topics_config(stack, tmp_path)
    common = ("send", "--raw", "--config", config, "--bootstrap", stack.broker.bootstrap)
    binary = tmp_path / "junk.bin"
    binary.write_bytes(b"\x00\xffbinary")
    topic = stack.settings.topics.run_commands

    sends = [
        await bridge_cli(*common, "--key", "raw-1", "not json"),
        await bridge_cli(*common, f"@{binary}"),
        await bridge_cli(*common, "-", stdin=b'{"id": "raw-3", "operation":'),
    ]

    for (code, out, err), size in zip(sends, (8, 8, 28), strict=True):
        assert code == 0, err
        assert out.startswith(f"sent {size} raw byte(s) to {topic} (partition ")
    code, out, err = await bridge_cli(
        *tail_argv(stack, config, "--json", "--status", "dead_letter", "--count", "3", "--timeout", "30")
    )
    assert code == 0, err
    letters = {d.get("value") or d.get("value_base64"): d for d in map(orjson.loads, out.splitlines())}
    assert set(letters) == {"not json", "AP9iaW5hcnk=", '{"id": "raw-3", "operation":'}
    assert letters["not json"]["key"] == "raw-1"
    assert all(d["reason"] for d in letters.values())


async def test_send_raw_with_an_unreadable_file_exits_2(tmp_path) -> None:
    code, out, err = await bridge_cli(
        "send", "--raw", "--bootstrap", "127.0.0.1:1", f"@{tmp_path / 'absent'}"
    )
    assert (code, out) == (2, "")
    assert err == f"bridge send: cannot read {tmp_path / 'absent'}: No such file or directory\n"


async def test_topic_without_raw_is_refused(tmp_path) -> None:
    code, _, err = await bridge_cli("send", "--topic", "x", "--bootstrap", "127.0.0.1:1", "{}")
    assert code == 2
    assert err == "bridge send: --topic goes with --raw; a command's operation picks its topic\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["tail", "--timeout", "1"],
        ["send", '{"id":"x","target":"t","operation":"zuora.rerun_task","task_id":"1"}'],
        ["send", "--raw", "junk"],
    ],
    ids=["tail", "send", "send-raw"],
)
async def test_an_unreachable_broker_is_one_line_and_exit_1(argv: list[str]) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"
    code, out, err = await bridge_cli(*argv, "--bootstrap", bootstrap)
    assert (code, out) == (1, "")
    expected = f"bridge {argv[0]}: cannot reach the Kafka broker at {bootstrap} (KafkaConnectionError)"
    assert one_line_error(err) == expected
