"""Repeated log messages collapsed, never silently dropped (issue 25.5).

A broker outage makes the Kafka client repeat itself ("Unable connect to node", "Unable to update
metadata", fetcher and coordinator errors: about 180 lines a second), and the bridge's own retry
warnings repeat with it. :class:`Repeats` is a logging filter on those loggers: per logger and
message template, the first record of a window (``window_s``, a minute) goes through unchanged and
the rest are counted; :meth:`Repeats.drain` hands the counts to the broker watch
(bridge/kafka/probe.py), which reports them in its outage lines and once a minute otherwise. The
Kafka client's records are all subject to it; the bridge's own only when logged with
``extra=COLLAPSE`` (retry warnings: never a per-command line).

Example::

    repeats = install()                      # once per process, while the bridge runs
    log.warning("publish failed, will retry: %s", exc, extra=COLLAPSE)
    counts = repeats.drain()                 # {("aiokafka.conn", "Unable connect to node %s"): 812}
    uninstall(repeats)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping

COLLAPSE = {"collapse": True}
WINDOW_S = 60.0
CLIENT = "aiokafka"
Key = tuple[str, str]  # logger name, message template


class Repeats(logging.Filter):
    def __init__(self, window_s: float = WINDOW_S, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self._window_s = window_s
        self._clock = clock
        self._passed_at: dict[Key, float] = {}
        self._counts: dict[Key, int] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        marked = record.__dict__.pop("collapse", False)
        if not (marked or record.name.startswith(CLIENT)):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        passed = self._passed_at.get(key)
        if passed is None or now - passed >= self._window_s:
            self._passed_at[key] = now
            return True
        self._counts[key] = self._counts.get(key, 0) + 1
        return False

    def drain(self) -> dict[Key, int]:
        """The records held back since the last drain, per kind (and forget them)."""
        counts, self._counts = self._counts, {}
        return counts


def describe(counts: Mapping[Key, int], limit: int = 4) -> str:
    """Pure: ``812 repeated log line(s) held back: 'Unable connect to node %s' (aiokafka.conn) x700, ...``."""
    total = sum(counts.values())
    ranked = sorted(counts.items(), key=lambda item: -item[1])
    parts = [f"'{template}' ({name}) x{n}" for (name, template), n in ranked[:limit]]
    if len(ranked) > limit:
        parts.append(f"{len(ranked) - limit} more kind(s)")
    return f"{total} repeated log line(s) held back: {', '.join(parts)}"


_installed: list[Repeats] = []


def install(window_s: float = WINDOW_S) -> Repeats:
    """Put a :class:`Repeats` on the Kafka client's loggers and the bridge's (they exist once their
    modules are imported, as they are when a bridge runs)."""
    repeats = Repeats(window_s)
    for logger in _loggers():
        logger.addFilter(repeats)
    _installed.append(repeats)
    return repeats


def uninstall(repeats: Repeats) -> None:
    for logger in _loggers():
        logger.removeFilter(repeats)
    if repeats in _installed:
        _installed.remove(repeats)


def drain_installed() -> dict[Key, int]:
    """What the installed collapser held back since the last drain ({} when none is installed)."""
    return _installed[-1].drain() if _installed else {}


def _loggers() -> list[logging.Logger]:
    names = [CLIENT, "bridge", *logging.root.manager.loggerDict]
    found = {name for name in names if name == CLIENT or name.startswith((CLIENT + ".", "bridge"))}
    return [logging.getLogger(name) for name in sorted(found)]
