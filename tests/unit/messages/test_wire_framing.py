"""Schema Registry framing and header accounting, at their edges (pure; no broker).

The frame is a zero magic byte and a 4-byte big-endian schema id; header sizes decide whether a
dead letter can carry the original headers.
"""

from __future__ import annotations

import orjson
import pytest

from bridge.messages.wire import (
    FRAME_BYTES,
    copyable_headers,
    header_size,
    header_text,
    schema_id_of,
    split_frame,
)

COMMAND = orjson.dumps({"id": "c-1"})


def frame(schema_id: int, payload: bytes = COMMAND) -> bytes:
    return b"\x00" + schema_id.to_bytes(4, "big") + payload


# -- framing -------------------------------------------------------------------------------------------


def test_plain_json_is_not_framed():
    assert split_frame(COMMAND) == (None, COMMAND)


def test_a_frame_gives_the_id_and_the_json_after_it():
    assert split_frame(frame(7)) == (7, COMMAND)


@pytest.mark.parametrize("schema_id", [0, 1, 256, 2**31, 2**32 - 1])
def test_the_whole_unsigned_id_range_is_read_big_endian(schema_id: int):
    assert split_frame(frame(schema_id)) == (schema_id, COMMAND)


def test_a_frame_with_nothing_after_it_has_an_empty_payload():
    # the empty payload is then refused as JSON by the parser, not here
    assert split_frame(frame(3, b"")) == (3, b"")


@pytest.mark.parametrize("cut", range(1, FRAME_BYTES))
def test_a_frame_cut_short_is_none(cut: int):
    assert split_frame(frame(300)[:cut]) is None


def test_an_empty_value_is_not_a_frame():
    assert split_frame(b"") == (None, b"")


def test_a_leading_byte_other_than_zero_is_not_a_frame():
    assert split_frame(b"\x01\x00\x00\x00\x05{}") == (None, b"\x01\x00\x00\x00\x05{}")


@pytest.mark.parametrize(
    ("value", "schema_id"),
    [(None, None), (b"", None), (COMMAND, None), (frame(42), 42), (b"\x00\x00", None)],
)
def test_schema_id_of_any_value(value: bytes | None, schema_id: int | None):
    assert schema_id_of(value) == schema_id


# -- headers -------------------------------------------------------------------------------------------


def test_header_size_counts_names_and_values_in_bytes():
    assert header_size([("trace", b"abc"), ("é", b"\xff")]) == 5 + 3 + 2 + 1


def test_a_null_header_value_counts_as_nothing():
    assert header_size([("k", None)]) == 1


def test_a_name_that_is_not_encodable_is_still_counted():
    assert header_size([("a\udcff", b"")]) == 2


def test_no_headers_take_no_bytes():
    assert header_size([]) == 0


def test_headers_are_copied_whole_when_they_fit_exactly():
    headers = [("a", b"12"), ("b", None)]
    assert copyable_headers(headers, 4) == (headers, 0)


def test_headers_are_all_dropped_when_one_byte_over():
    headers = [("a", b"12"), ("b", b"x")]
    assert copyable_headers(headers, 4) == ([], 5)


def test_the_copy_is_a_new_list():
    headers = [("a", b"1")]
    copied, _ = copyable_headers(headers, 10)
    assert copied == headers and copied is not headers


@pytest.mark.parametrize(
    ("value", "text"),
    [(b"v1", "v1"), (None, ""), (b"", ""), ("ñ".encode(), "ñ"), (b"\xff\xfe", None)],
)
def test_header_text(value: bytes | None, text: str | None):
    assert header_text(value) == text
