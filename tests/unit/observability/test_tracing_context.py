"""Reading W3C Trace Context from a command record: headers, CloudEvents binary and structured mode."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.messages.trace_context import (
    extract,
    format_traceparent,
    format_tracestate,
    parse_traceparent,
    parse_tracestate,
)

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"
VALID = f"00-{TRACE}-{SPAN}-01"
OTHER = "00-11111111111111111111111111111111-2222222222222222-00"
BIG = 1_000_000


def test_a_valid_traceparent_gives_its_ids_and_flags() -> None:
    assert parse_traceparent(VALID) == (int(TRACE, 16), int(SPAN, 16), 1)
    assert parse_traceparent(f" {VALID}\t") == (int(TRACE, 16), int(SPAN, 16), 1)  # optional whitespace
    assert format_traceparent(int(TRACE, 16), int(SPAN, 16), 1) == VALID


def test_a_later_version_may_carry_more_fields() -> None:
    assert parse_traceparent(f"01-{TRACE}-{SPAN}-01-future") == (int(TRACE, 16), int(SPAN, 16), 1)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        f"00-{TRACE}-{SPAN}-01-extra",  # version 00 has exactly four fields
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero trace id
        f"00-{TRACE}-{'0' * 16}-01",  # all-zero span id
        f"00-{TRACE.upper()}-{SPAN}-01",  # upper case hex
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}-{SPAN}-1",
        f"00_{TRACE}_{SPAN}_01",
    ],
)
def test_malformed_traceparents_are_refused(text: str) -> None:
    assert parse_traceparent(text) is None


def test_tracestate_members_are_kept_in_order() -> None:
    state = parse_tracestate("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7,,tenant@sys=x")
    assert state == (("congo", "t61rcWkgMzE"), ("rojo", "00f067aa0ba902b7"), ("tenant@sys", "x"))
    assert format_tracestate(state) == "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7,tenant@sys=x"


@pytest.mark.parametrize(
    "text",
    [
        "Upper=1",  # keys are lower case
        "a=1,a=2",  # duplicate keys
        "novalue",
        "a=has,comma=1=2",
        ",".join(f"k{i}=v" for i in range(33)),  # more than 32 members
        "a=" + "x" * 600,  # longer than 512 characters
    ],
)
def test_an_invalid_tracestate_is_dropped_whole(text: str) -> None:
    assert parse_tracestate(text) == ()


def test_the_kafka_header_wins_over_the_cloudevent_extension() -> None:
    envelope = orjson.dumps({"specversion": "1.0", "id": "c", "traceparent": OTHER, "data": {}})
    found = extract([("ce_traceparent", OTHER.encode()), ("traceparent", VALID.encode())], envelope, BIG)
    assert found.parent is not None and found.parent.source == "kafka"
    assert (found.parent.trace_id, found.parent.sampled) == (int(TRACE, 16), True)


def test_binary_mode_headers_are_read_with_their_tracestate() -> None:
    headers = [("ce_traceparent", VALID.encode()), ("ce_tracestate", b"rojo=1")]
    found = extract(headers, b'{"id": "c"}', BIG)
    assert found.parent is not None and found.parent.source == "ce_binary"
    assert found.parent.state == (("rojo", "1"),)


def test_the_structured_envelope_is_read_when_no_header_has_a_context() -> None:
    doc = {"specversion": "1.0", "id": "c", "traceparent": VALID, "tracestate": "a=b", "data": {}}
    found = extract([("other", b"x")], orjson.dumps(doc), BIG)
    assert found.parent is not None and found.parent.source == "ce_structured"
    assert (found.parent.span_id, found.parent.state) == (int(SPAN, 16), (("a", "b"),))


def test_a_plain_command_with_a_traceparent_field_is_not_a_cloudevent() -> None:
    assert extract([], orjson.dumps({"id": "c", "traceparent": VALID}), BIG).parent is None


def test_a_value_over_the_size_limit_is_not_parsed() -> None:
    doc = orjson.dumps({"specversion": "1.0", "id": "c", "traceparent": VALID, "data": {}})
    assert extract([], doc, len(doc) - 1).parent is None


def test_the_last_of_repeated_headers_counts() -> None:
    found = extract([("traceparent", OTHER.encode()), ("traceparent", VALID.encode())], None, BIG)
    assert found.parent is not None and found.parent.trace_id == int(TRACE, 16)


def test_a_non_utf8_header_falls_through_to_the_next_source_and_is_reported() -> None:
    headers = [("traceparent", b"\xff\xfe" + VALID.encode()), ("ce_traceparent", VALID.encode())]
    found = extract(headers, None, BIG)
    assert found.parent is not None and found.parent.source == "ce_binary"
    assert found.ignored == ("kafka",)


def test_nothing_valid_anywhere_starts_a_new_trace() -> None:
    envelope = orjson.dumps({"specversion": "1.0", "id": "c", "traceparent": 42, "data": {}})
    found = extract([("traceparent", b"00-zz"), ("ce_traceparent", None)], envelope, BIG)
    assert found.parent is None and found.ignored == ("kafka", "ce_structured")


def test_an_invalid_tracestate_keeps_the_parent() -> None:
    found = extract([("traceparent", VALID.encode()), ("tracestate", b"\xff=1")], None, BIG)
    assert found.parent is not None and found.parent.state == ()


names = st.sampled_from(["traceparent", "tracestate", "ce_traceparent", "ce_tracestate", "x"])
values = st.one_of(st.none(), st.binary(max_size=80), st.just(VALID.encode()))


@given(st.lists(st.tuples(names, values), max_size=6), st.one_of(st.none(), st.binary(max_size=200)))
def test_no_record_makes_extraction_raise(
    headers: list[tuple[str, bytes | None]], value: bytes | None
) -> None:
    found = extract(headers, value, BIG)
    assert found.parent is None or 0 < found.parent.trace_id < 2**128
