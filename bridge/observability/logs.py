"""Logging: JSON lines in production, readable text with ``--dev``. Secrets are scrubbed on the way out."""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any

import orjson

from bridge.observability.redact import Redactor

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}


_second: list[Any] = [None, ""]  # the last whole second formatted, and its text up to the seconds


def _timestamp(created: float) -> str:
    """``datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds")``, the date and
    time part formatted once per second: one log line per outcome makes this a hot path."""
    second = int(created)
    micros = round((created - second) * 1e6)  # rounded to microseconds first, as datetime does
    if micros >= 1_000_000:
        second, micros = second + 1, micros - 1_000_000
    if _second[0] != second:
        _second[:] = [second, datetime.fromtimestamp(second, UTC).isoformat()[:19]]
    return f"{_second[1]}.{micros // 1000:03d}+00:00"


class JsonFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = record.__dict__
        for name in fields:
            if name not in _STANDARD and name[0] != "_":
                entry[name] = fields[name]
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # one scrub of the finished line: cheaper than one per field, and it sees every field
        return self._redactor.scrub(orjson.dumps(entry, default=str).decode())


class TextFormatter(logging.Formatter):
    def __init__(self, redactor: Redactor) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
        self._redactor = redactor

    def format(self, record: logging.LogRecord) -> str:
        return self._redactor.scrub(super().format(record))


def configure_logging(level: str, fmt: str, redactor: Redactor) -> None:
    # Neither formatter prints the caller, thread or process: skip collecting them for every record
    # (the "Optimization" section of the logging HOWTO). A record is logged per outcome.
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(redactor) if fmt == "json" else TextFormatter(redactor))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, logging.getLevelName(level)))
