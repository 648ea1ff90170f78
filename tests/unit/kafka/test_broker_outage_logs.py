"""A broker outage is a few lines, not thousands (issue 25.5): the Kafka client's repeated messages
(and the bridge's own retry warnings) are held back and counted, never silently dropped; the broker
watch logs one line when the outage starts, a reminder at most once a minute with counts, and one
when it ends; readiness follows each probe."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bridge.kafka import probe
from bridge.kafka.probe import BrokerWatch
from bridge.kafka.stats import EngineStats
from bridge.observability.repeats import COLLAPSE, Repeats, describe, install, uninstall
from tests.fakes import FakeClock


def test_repeats_let_the_first_of_a_kind_through_per_window_and_count_the_rest() -> None:
    clock = FakeClock(100.0)
    repeats = Repeats(60.0, clock)
    client = logging.getLogger("aiokafka.conn")
    ours = logging.getLogger("bridge.kafka.test")
    records = [
        client.makeRecord(client.name, logging.ERROR, "f", 1, "Unable connect to node %s", ("1",), None),
        client.makeRecord(client.name, logging.ERROR, "f", 1, "Unable connect to node %s", ("2",), None),
        client.makeRecord(client.name, logging.ERROR, "f", 1, "Unable to update metadata", (), None),
        ours.makeRecord(ours.name, logging.INFO, "f", 1, "outcome %s", ("c-1",), None),
        ours.makeRecord(ours.name, logging.INFO, "f", 1, "outcome %s", ("c-2",), None),
        ours.makeRecord(
            ours.name, logging.WARNING, "f", 1, "publish failed: %s", ("x",), None, extra=COLLAPSE
        ),
        ours.makeRecord(
            ours.name, logging.WARNING, "f", 1, "publish failed: %s", ("y",), None, extra=COLLAPSE
        ),
    ]
    passed = [repeats.filter(r) for r in records]
    assert passed == [True, False, True, True, True, True, False]  # the bridge's per-command lines all pass
    assert not hasattr(records[5], "collapse")  # the marker never reaches a formatter
    counts = repeats.drain()
    assert counts == {("aiokafka.conn", "Unable connect to node %s"): 1, (ours.name, "publish failed: %s"): 1}
    assert repeats.drain() == {}
    assert "2 repeated log line(s) held back" in describe(counts)
    clock.now += 61  # a new window: the first goes through again
    again = client.makeRecord(client.name, logging.ERROR, "f", 1, "Unable connect to node %s", ("1",), None)
    assert repeats.filter(again)


def test_installed_on_the_client_and_bridge_loggers_they_hold_back_real_log_calls(
    caplog: pytest.LogCaptureFixture,
) -> None:
    repeats = install()
    try:
        with caplog.at_level(logging.INFO):
            for n in range(50):
                logging.getLogger("aiokafka.cluster").error("Unable to update metadata from %s", n)
        shown = [r for r in caplog.records if r.name == "aiokafka.cluster"]
        assert len(shown) == 1 and repeats.drain() == {
            ("aiokafka.cluster", "Unable to update metadata from %s"): 49
        }
    finally:
        uninstall(repeats)


def test_an_outage_is_one_line_a_reminder_a_minute_and_one_line_at_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock, stats = FakeClock(0.0), EngineStats()
    held = {("aiokafka.conn", "Unable connect to node %s"): 0}

    def drain() -> dict[tuple[str, str], int]:
        counts = {k: n for k, n in held.items() if n}
        held.update(dict.fromkeys(held, 0))
        return counts

    watch = BrokerWatch(stats, drain, clock)
    with caplog.at_level(logging.INFO, logger="bridge.engine"):
        watch.probed(None)
        assert stats.broker_ok
        for _ in range(150):  # 150 s without an answer, one probe a second
            clock.now += 1.0
            held[("aiokafka.conn", "Unable connect to node %s")] += 180
            watch.probed("KafkaConnectionError")
            assert not stats.broker_ok  # readiness follows the first failed probe
        clock.now += 1.0
        watch.probed(None)
        assert stats.broker_ok  # and the first answer
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 4, lines  # start, two reminders (60 s, 120 s), end
    assert lines[0].startswith("Kafka broker outage: the broker does not answer (KafkaConnectionError)")
    assert "no answer for 60s (61 probe(s) failed" in lines[1] and "10980 repeated log line(s)" in lines[1]
    assert "(121 probe(s) failed" in lines[2] and "x10800" in lines[2]
    assert lines[3].startswith(
        "Kafka broker outage over: it answers again after 150.0s (150 probe(s) failed)"
    )
    assert "5220 repeated log line(s)" in lines[3]
    assert 10980 + 10800 + 5220 == 150 * 180  # every held-back line is counted in some line: none dropped
    assert [r.levelname for r in caplog.records] == ["WARNING", "WARNING", "WARNING", "INFO"]


class SlowMetadata:
    """A broker that answers a metadata request after ``answer_s`` (longer than the probe's timeout)."""

    def __init__(self, answer_s: float) -> None:
        self.answer_s = answer_s
        self.asking = 0
        self.most_at_once = self.answered = self.cut_short = 0

    async def topics(self) -> set[str]:
        self.asking += 1
        self.most_at_once = max(self.most_at_once, self.asking)
        try:
            await asyncio.sleep(self.answer_s)
        except asyncio.CancelledError:
            self.cut_short += 1
            raise
        finally:
            self.asking -= 1
        self.answered += 1
        return set()


async def test_a_slow_probe_counts_as_failed_but_is_never_cut_short(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka leaks the socket of a request cancelled while it connects: a probe that outlasts its
    timeout makes the broker look down, and the next probe waits for that same request; a stop lets it
    finish (within the start grace)."""
    monkeypatch.setattr(probe, "BROKER_PROBE_TIMEOUT_S", 0.05)
    broker, stats = SlowMetadata(answer_s=0.2), EngineStats(broker_ok=True)
    probing = asyncio.create_task(probe.probe_broker(broker, stats, interval_s=0.01))  # type: ignore[arg-type]
    seen = set()
    for _ in range(45):
        await asyncio.sleep(0.01)
        seen.add(stats.broker_ok)
    assert seen == {True, False}  # down while a probe outlasts its timeout, up when it is answered
    probing.cancel()
    await asyncio.gather(probing, return_exceptions=True)
    assert broker.cut_short == 0 and broker.most_at_once == 1 and broker.answered >= 2
