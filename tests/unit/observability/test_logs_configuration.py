"""Log output as an operator sees it: one JSON object a line (or readable text), on stderr, scrubbed.

``configure_logging`` is what ``bridge run`` calls; the formatters are also tested one record at a
time in test_health_and_logs.py.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from datetime import datetime

import pytest

from bridge.observability.logs import JsonFormatter, TextFormatter, configure_logging
from bridge.observability.redact import Redactor

SECRET = "s3cret-client-value"


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root, kafka = logging.getLogger(), logging.getLogger("aiokafka")
    saved = (root.handlers[:], root.level, kafka.level)
    yield
    root.handlers[:], root.level = saved[0], saved[1]
    kafka.setLevel(saved[2])


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    return capsys.readouterr().err.splitlines()


def test_json_lines_go_to_stderr_one_object_each(capsys):
    configure_logging("INFO", "json", Redactor())
    logging.getLogger("bridge.outcome").info("outcome %s", "queued", extra={"command_id": "c-1"})
    logging.getLogger("bridge.engine").warning("paused")

    first, second = (json.loads(line) for line in lines(capsys))
    assert first["msg"] == "outcome queued" and first["command_id"] == "c-1"
    assert (first["level"], first["logger"]) == ("info", "bridge.outcome")
    assert (second["level"], second["msg"]) == ("warning", "paused")
    assert capsys.readouterr().out == ""


def test_a_json_line_has_a_utc_timestamp_in_milliseconds(capsys):
    configure_logging("INFO", "json", Redactor())
    logging.getLogger("bridge").info("x")

    ts = json.loads(lines(capsys)[0])["ts"]
    parsed = datetime.fromisoformat(ts)
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0
    assert len(ts.split(".")[1].split("+")[0]) == 3


def test_the_level_filters_what_is_written(capsys):
    configure_logging("WARNING", "json", Redactor())
    logging.getLogger("bridge").info("hidden")
    logging.getLogger("bridge").error("shown")

    assert [json.loads(line)["msg"] for line in lines(capsys)] == ["shown"]


def test_calling_it_again_replaces_the_handler_instead_of_doubling_lines(capsys):
    configure_logging("INFO", "json", Redactor())
    configure_logging("INFO", "json", Redactor())
    logging.getLogger("bridge").info("once")

    assert len(lines(capsys)) == 1


def test_text_format_for_development(capsys):
    configure_logging("INFO", "text", Redactor())
    logging.getLogger("bridge.engine").info("partition %d assigned", 3)

    [line] = lines(capsys)
    assert line.endswith("INFO    bridge.engine: partition 3 assigned")
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


def test_aiokafka_chatter_stays_at_warning_even_in_debug(capsys):
    configure_logging("DEBUG", "json", Redactor())
    logging.getLogger("aiokafka.conn").info("connected")
    logging.getLogger("bridge").debug("our own debug line")

    assert [json.loads(line)["logger"] for line in lines(capsys)] == ["bridge"]


def test_a_quieter_level_applies_to_aiokafka_too():
    configure_logging("ERROR", "json", Redactor())
    assert logging.getLogger("aiokafka").level == logging.ERROR


@pytest.mark.parametrize("fmt", ["json", "text"])
def test_configured_secrets_never_reach_the_output(capsys, fmt: str):
    configure_logging("DEBUG", fmt, Redactor([SECRET]))
    log = logging.getLogger("bridge.providers")
    log.debug("token request with %s", SECRET, extra={"detail": {"client_secret": SECRET}})
    try:
        raise RuntimeError(f"refused {SECRET}")
    except RuntimeError:
        log.exception("call failed")

    err = capsys.readouterr().err
    assert SECRET not in err and "***" in err


def test_an_exception_is_one_json_field_not_extra_lines(capsys):
    configure_logging("INFO", "json", Redactor())
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("bridge").exception("failed")

    [line] = lines(capsys)
    entry = json.loads(line)
    assert entry["msg"] == "failed" and "ValueError: boom" in entry["exc"]


def record(**extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("bridge", logging.INFO, __file__, 1, "m", (), None)
    for key, value in extra.items():
        setattr(rec, key, value)
    return rec


class Partition:
    def __str__(self) -> str:
        return "workflow.run.commands/3"


def test_extra_values_that_are_not_json_are_written_as_text():
    entry = json.loads(
        JsonFormatter(Redactor()).format(record(partition=Partition(), when=datetime(2026, 1, 2)))
    )
    assert entry["partition"] == "workflow.run.commands/3" and entry["when"] == "2026-01-02T00:00:00"


def test_private_and_standard_record_attributes_are_left_out():
    entry = json.loads(JsonFormatter(Redactor()).format(record(_internal="x", command_id="c")))
    assert set(entry) == {"ts", "level", "logger", "msg", "command_id"}


def test_text_lines_carry_time_level_and_logger():
    line = TextFormatter(Redactor()).format(record())
    clock, level, logger, message = line.split()
    assert len(clock.split(":")) == 3 and (level, logger, message) == ("INFO", "bridge:", "m")


def test_the_handler_writes_to_the_stderr_of_the_moment(capsys):
    configure_logging("INFO", "json", Redactor())
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr
