"""The benchmark's latency phases and key-order check (bench/decompose.py): pure, no broker."""

from bench.decompose import breakdown, order_violations, phases
from bench.workload import Arrival, read_timing
from bridge.kafka.records import TIMING_HEADER, timing_header


def arrival(key: bytes, started_ms: float, sent_ms: int, *, read_s: float = 0.0, duration_ms: float = 0.0):
    return Arrival(read_s, duration_ms, "queued", key, sent_ms, started_ms - 1.0, started_ms)


def test_the_phases_add_up_to_the_end_to_end_time():
    a = Arrival(
        at=1.050,
        duration_ms=20.0,
        status="queued",
        key=b"k",
        sent_ms=1030,
        fetched_ms=1004.0,
        started_ms=1006.0,
    )
    got = phases(1.000, a)
    assert got is not None
    assert [round(p, 6) for p in got] == [4.0, 2.0, 20.0, 4.0, 20.0]
    assert round(sum(got), 6) == round((a.at - 1.000) * 1000, 6)


def test_no_header_no_phases_and_no_order_verdict():
    plain = Arrival(1.0, 1.0, "queued", b"k", 1000)
    assert phases(0.5, plain) is None
    assert breakdown({"c-0": 0.5}, {"c-0": plain}) == {}
    assert order_violations({"c-0": plain}) is None


def test_a_command_that_starts_before_its_predecessor_sent_its_outcome_breaks_key_order():
    in_order = {
        "x-0": arrival(b"a", 100.0, 110),
        "x-1": arrival(b"a", 110.0, 120),
        "x-2": arrival(b"b", 105.0, 130),
    }
    assert order_violations(in_order) == 0
    overlapping = {**in_order, "x-3": arrival(b"a", 115.0, 140)}  # starts before x-1's outcome at 120
    assert order_violations(overlapping) == 1


def test_an_outcome_without_timing_leaves_only_its_own_pair_unjudged():
    mixed = {
        "x-0": arrival(b"a", 100.0, 110),
        "x-1": Arrival(1.0, 1.0, "queued", b"a", 120),  # a parked command's outcome: no timing header
        "x-2": arrival(b"a", 115.0, 140),  # started before x-1's outcome at 120
    }
    assert order_violations(mixed) == 1


def test_order_follows_the_command_index_not_the_arrival():
    # x-10 was sent after x-9: compared by index, not by string order ("x-10" < "x-9")
    found = {"x-10": arrival(b"a", 200.0, 210), "x-9": arrival(b"a", 100.0, 150)}
    assert order_violations(found) == 0


def test_the_timing_header_reads_back():
    name, value = timing_header(1.5, 2.25)
    assert name == TIMING_HEADER
    assert read_timing([("other", b"x"), (name, value)]) == (1500.0, 2250.0)
    assert read_timing(None) == (None, None)
