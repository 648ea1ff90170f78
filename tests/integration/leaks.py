"""Which test made a Kafka connection, producer or consumer that was never closed, and where.

aiokafka warns about an unclosed connection or client when the garbage collector finds it, which is
often during a later test (its warning then says "loop is closed"), and with ``filterwarnings = error``
that later test fails. Each one here remembers the test and the frames that made it, and the warning
names them::

    ResourceWarning: Unclosed AIOKafkaConnection opened during tests/integration/test_x.py::test_y (call),
    by create_conn (client.py:...) <- ...
"""

from __future__ import annotations

import os
import traceback
import warnings
import weakref
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.conn import AIOKafkaConnection

_connect = AIOKafkaConnection.connect
_opened: weakref.WeakSet[AIOKafkaConnection] = weakref.WeakSet()
_finalize = AIOKafkaConnection.__del__


async def _connect_noting_the_test(self: AIOKafkaConnection) -> Any:
    self._opened_during = os.environ.get("PYTEST_CURRENT_TEST", "no test")  # type: ignore[attr-defined]
    self._opened_by = _callers()  # type: ignore[attr-defined]
    _opened.add(self)
    return await _connect(self)


def _warn_with_the_test(self: AIOKafkaConnection, _warnings: Any = warnings) -> None:
    if self.connected():
        opened = getattr(self, "_opened_during", "an unknown test")
        by = getattr(self, "_opened_by", "")
        _warnings.warn(
            f"Unclosed AIOKafkaConnection opened during {opened}, by {by}", ResourceWarning, source=self
        )
    _finalize(self)


def note_still_open(test: str) -> None:
    """With ``BRIDGE_LEAK_LOG`` set: the connections opened during ``test`` (its node id) and open
    still, appended to that file (left open: the garbage collector's warning still fails the run)."""
    if not os.environ.get("BRIDGE_LEAK_LOG"):
        return
    leaked = [
        f"{opened}, by {getattr(conn, '_opened_by', '')}"
        for conn in list(_opened)
        if conn.connected() and (opened := getattr(conn, "_opened_during", "")).startswith(test + " ")
    ]
    if leaked:
        with Path(os.environ["BRIDGE_LEAK_LOG"]).open("a") as log:
            log.write("\n".join(leaked) + "\n")


def _callers() -> str:
    """The frames that led to the connect, innermost last (one task's stack: aiokafka's own, mostly)."""
    frames = traceback.extract_stack()[:-2]
    return " <- ".join(f"{f.name} ({Path(f.filename).name}:{f.lineno})" for f in reversed(frames[-8:]))


def _note_the_maker(cls: type[Any]) -> None:
    """``cls`` (a client) remembers who made it; unclosed when collected, its warning says so."""
    make, finalize = cls.__init__, cls.__del__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        self._made_during = os.environ.get("PYTEST_CURRENT_TEST", "no test")
        self._made_by = _callers()
        make(self, *args, **kwargs)

    def warn_with_the_maker(self: Any, _warnings: Any = warnings) -> None:
        if getattr(self, "_closed", True) is False:
            made = f"made during {getattr(self, '_made_during', '?')}, by {getattr(self, '_made_by', '?')}"
            _warnings.warn(f"Unclosed {cls.__name__} {made}", ResourceWarning, source=self)
            self._closed = True  # said once, here
        finalize(self)

    cls.__init__ = init
    cls.__del__ = warn_with_the_maker


def install() -> None:
    AIOKafkaConnection.connect = _connect_noting_the_test  # type: ignore[method-assign]
    AIOKafkaConnection.__del__ = _warn_with_the_test  # type: ignore[method-assign]
    for cls in (AIOKafkaProducer, AIOKafkaConsumer):
        _note_the_maker(cls)
