import json
import logging

from bridge.kafka.stats import EngineStats
from bridge.observability.health import judge_readiness
from bridge.observability.logs import JsonFormatter, TextFormatter
from bridge.observability.redact import Redactor


def stats(**kw):
    base = {"broker_ok": True, "last_progress_at": 100.0, "assigned": frozenset({("t", 0)})}
    return EngineStats(**{**base, **kw})


def test_not_connected_is_not_ready():
    verdict = judge_readiness(stats(broker_ok=False), now=100.0, stall_after_s=60)
    assert not verdict.ready and "broker" in verdict.reason


def test_failing_publishes_are_not_ready():
    verdict = judge_readiness(stats(publish_error="KafkaTimeoutError: x"), now=100.0, stall_after_s=60)
    assert not verdict.ready and "cannot publish" in verdict.reason


def test_waiting_work_without_progress_is_a_stall_with_a_reason():
    verdict = judge_readiness(stats(lag=40, in_flight=3), now=161.0, stall_after_s=60)
    assert not verdict.ready
    assert (
        "stalled" in verdict.reason and "40 command(s) waiting" in verdict.reason and "61s" in verdict.reason
    )


def test_idle_or_progressing_is_ready():
    assert judge_readiness(stats(lag=0, in_flight=0), now=10_000.0, stall_after_s=60).ready  # idle for long
    assert judge_readiness(stats(lag=40, in_flight=3), now=159.0, stall_after_s=60).ready  # progress recently
    unassigned = judge_readiness(stats(assigned=frozenset()), now=100.0, stall_after_s=60)
    assert unassigned.ready and "nothing to do" in unassigned.reason


def record(msg, *args, **extra):
    rec = logging.LogRecord("bridge.outcome", logging.INFO, __file__, 1, msg, args, None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


def test_json_lines_carry_extra_fields_and_no_secrets():
    formatter = JsonFormatter(Redactor(["s3cret-client-value"]))
    line = formatter.format(
        record(
            "token %s refused",
            "s3cret-client-value",
            command_id="c-1",
            status="error",
            detail="Authorization: Bearer abcdefghijklmnop",
        )
    )
    entry = json.loads(line)
    assert entry["level"] == "info" and entry["command_id"] == "c-1" and entry["status"] == "error"
    assert "s3cret-client-value" not in line and "abcdefghijklmnop" not in line


def test_text_format_is_readable_and_redacted():
    formatter = TextFormatter(Redactor(["s3cret-client-value"]))
    line = formatter.format(record("outcome %s with s3cret-client-value", "c-1"))
    assert "outcome c-1 with ***" in line and "bridge.outcome" in line


def test_restoring_the_ledger_is_not_ready_and_says_so():
    verdict = judge_readiness(stats(restoring=2, lag=500), now=1000.0, stall_after_s=60)
    assert not verdict.ready and verdict.reason == "restoring the command ledger of 2 partition(s)"
