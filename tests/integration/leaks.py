"""Which test made a Kafka connection that was never closed.

aiokafka warns about an unclosed connection when the garbage collector finds it, which is often during a
later test (its warning then says "loop is closed"), and with ``filterwarnings = error`` that later test
fails. Each connection here remembers the test that opened it, and the warning names it::

    ResourceWarning: Unclosed AIOKafkaConnection opened during tests/integration/test_x.py::test_y (call)
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from aiokafka.conn import AIOKafkaConnection

_connect = AIOKafkaConnection.connect
_finalize = AIOKafkaConnection.__del__


async def _connect_noting_the_test(self: AIOKafkaConnection) -> Any:
    self._opened_during = os.environ.get("PYTEST_CURRENT_TEST", "no test")  # type: ignore[attr-defined]
    return await _connect(self)


def _warn_with_the_test(self: AIOKafkaConnection, _warnings: Any = warnings) -> None:
    if self.connected():
        opened = getattr(self, "_opened_during", "an unknown test")
        _warnings.warn(f"Unclosed AIOKafkaConnection opened during {opened}", ResourceWarning, source=self)
    _finalize(self)


def install() -> None:
    AIOKafkaConnection.connect = _connect_noting_the_test  # type: ignore[method-assign]
    AIOKafkaConnection.__del__ = _warn_with_the_test  # type: ignore[method-assign]
