import pytest

from bridge.kafka.offsets import OffsetTracker, may_start


def test_nothing_committable_until_the_first_record_finishes():
    t = OffsetTracker()
    t.add(5)
    t.add(6)
    assert t.committable() is None
    t.done(6)
    assert t.committable() is None
    t.done(5)
    assert t.committable() == 7


def test_commit_stops_at_the_first_unfinished_offset():
    t = OffsetTracker()
    for offset in (10, 11, 14, 20):  # gaps: compacted or control records
        t.add(offset)
    t.done(10)
    t.done(14)
    t.done(20)
    assert t.committable() == 11
    assert t.pending() == 3
    t.done(11)
    assert t.committable() == 21
    assert t.pending() == 0


def test_offsets_must_arrive_in_order():
    t = OffsetTracker()
    t.add(3)
    with pytest.raises(ValueError, match="not after"):
        t.add(3)


def test_oldest_pending_since_follows_the_head():
    t = OffsetTracker()
    t.add(1, now=100.0)
    t.add(2, now=101.0)
    assert t.oldest_pending_since() == 100.0
    t.done(1)
    assert t.oldest_pending_since() == 101.0
    t.done(2)
    assert t.oldest_pending_since() is None


@pytest.mark.parametrize(
    ("offset", "drain_below", "starts"),
    [(7, None, True), (4, 5, True), (5, 5, False), (9, 5, False), (0, 0, False)],
)
def test_a_closing_partition_starts_only_records_below_the_bar(offset, drain_below, starts):
    assert may_start(offset, drain_below) is starts
