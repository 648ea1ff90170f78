"""Which test made a Kafka connection that was never closed.

aiokafka warns about an unclosed connection when the garbage collector finds it, which is often during a
later test (its warning then says "loop is closed"), and with ``filterwarnings = error`` that later test
fails. Each connection here remembers the test that opened it, and the warning names it::

    ResourceWarning: Unclosed AIOKafkaConnection opened during tests/integration/test_x.py::test_y (call)
"""

from __future__ import annotations

import os
import traceback
import warnings
import weakref
from pathlib import Path
from typing import Any

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


def still_open(test: str) -> list[str]:
    """The connections opened during ``test`` (its node id) that are open still: closed here, described."""
    found = []
    for conn in list(_opened):
        opened = getattr(conn, "_opened_during", "")
        if conn.connected() and opened.startswith(test + " "):
            found.append(f"{opened}, by {getattr(conn, '_opened_by', '')}")
            conn.close()
    return found


def _callers() -> str:
    """The frames that led to the connect, innermost last (one task's stack: aiokafka's own, mostly)."""
    frames = traceback.extract_stack()[:-2]
    return " <- ".join(f"{f.name} ({Path(f.filename).name}:{f.lineno})" for f in reversed(frames[-8:]))


def install() -> None:
    AIOKafkaConnection.connect = _connect_noting_the_test  # type: ignore[method-assign]
    AIOKafkaConnection.__del__ = _warn_with_the_test  # type: ignore[method-assign]
