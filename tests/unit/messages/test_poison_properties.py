"""Property: whatever bytes arrive, the processor returns exactly one outcome or dead letter."""

from __future__ import annotations

import asyncio
import json

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.config.settings import Settings
from bridge.messages.commands import CommandFamily
from bridge.messages.parsing import DeadLetter, Invalid, Parsed
from bridge.messages.records import Incoming
from bridge.observability.metrics import Metrics
from bridge.pipeline.processor import Processor
from bridge.providers.parsing import parse_command

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
command_like = st.fixed_dictionaries(
    {"id": st.one_of(st.text(max_size=30), st.integers(), st.none())},
    optional={
        "target": st.one_of(st.text(max_size=10), st.just("zuora")),
        "operation": st.sampled_from(
            [
                "zilliant.queue_job",
                "zuora.run_workflow",
                "workfloo.execute",
                "zuora.rerun_task",
                "8x8.update_instance",
                "bogus",
            ]
        ),
        "workflow_id": st.one_of(st.integers(), st.text(max_size=5)),
        "parameters": st.dictionaries(st.text(max_size=8), json_values, max_size=3),
        "instance_id": st.text(max_size=12),
        "specversion": st.sampled_from(["1.0", "0.3"]),
        "data": json_values,
    },
)
payloads = st.one_of(
    st.binary(max_size=300),
    json_values.map(lambda v: json.dumps(v).encode()),  # stdlib: also big integers orjson cannot read
    command_like.map(lambda v: json.dumps(v).encode()),
)


@settings(max_examples=400, deadline=None)
@given(payloads, st.sampled_from(list(CommandFamily)))
def test_parser_never_raises_and_classifies_everything(value: bytes, family: CommandFamily) -> None:
    result = parse_command(value, family, max_bytes=250)
    assert isinstance(result, Parsed | Invalid | DeadLetter)
    if isinstance(result, Invalid):
        assert result.command_id and result.message


SETTINGS = Settings()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(payloads, st.sampled_from([SETTINGS.topics.run_commands, SETTINGS.topics.control_commands]))
def test_processor_returns_exactly_one_message(value: bytes, topic: str) -> None:
    # no targets configured: nothing reaches the network, every valid command is 'unknown_target'
    processor = Processor(SETTINGS, {}, executor=None, metrics=Metrics())  # type: ignore[arg-type]
    record = Incoming(topic=topic, partition=0, offset=7, key=b"k", value=value, timestamp_ms=1)
    out = asyncio.run(processor.process(record))
    assert (out.outcome is None) != (out.dead_letter is None)
    if out.outcome is not None:
        assert out.topic in (SETTINGS.topics.run_outcomes, SETTINGS.topics.control_outcomes)
        assert out.key == b"k" and out.value is not None
        assert orjson.loads(out.value)["subject"] == out.outcome.command_id
    else:
        assert out.topic == SETTINGS.topics.dead_letter and out.value == value


def test_a_dead_letter_too_big_to_publish_keeps_its_headers_but_not_its_value() -> None:
    settings = Settings.model_validate(
        {"kafka": {"max_request_size": 100_000}, "engine": {"max_message_bytes": 2048}}
    )
    processor = Processor(settings, {}, executor=None, metrics=Metrics())  # type: ignore[arg-type]
    huge = b"x" * 50_000  # over max_request_size - 64 KiB (34,464 bytes): cannot be republished whole
    out = asyncio.run(
        processor.process(
            Incoming(topic=settings.topics.run_commands, partition=0, offset=1, key=b"k", value=huge)
        )
    )
    headers = dict(out.headers)
    assert out.value is None and headers["dlq.value_omitted_bytes"] == b"50000"
    assert headers["dlq.reason"] == b"too_large"
    small = b"y" * 3000  # too large for a command, small enough to keep
    kept = asyncio.run(
        processor.process(
            Incoming(topic=settings.topics.run_commands, partition=0, offset=2, key=b"k", value=small)
        )
    )
    assert kept.value == small
