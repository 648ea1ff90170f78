"""Which test made a Kafka connection, producer, consumer or socket that was never closed, and where.

aiokafka warns about an unclosed connection or client when the garbage collector finds it, which is
often during a later test (its warning then says "loop is closed"), and with ``filterwarnings = error``
that later test fails. Each one here remembers the test and the frames that made it, and the warning
names them::

    ResourceWarning: Unclosed AIOKafkaConnection opened during tests/integration/test_x.py::test_y (call),
    by create_conn (client.py:...) <- ...

A socket the garbage collector finds after its loop closed says only "unclosed socket" and "loop is
closed", in whichever test collects it. So every asyncio socket transport remembers its test too, and
``stray_transports`` lists (and closes) those a test left open, while its loop still runs: the test
that leaked them fails, saying where each was opened, and later tests are unharmed.
"""

from __future__ import annotations

import asyncio
import os
import traceback
import warnings
import weakref
from asyncio import selector_events
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


_transport_init = selector_events._SelectorSocketTransport.__init__
_transports: weakref.WeakSet[Any] = weakref.WeakSet()


def _transport_init_noting_the_test(self: Any, *args: Any, **kwargs: Any) -> None:
    _transport_init(self, *args, **kwargs)
    self._opened_during = os.environ.get("PYTEST_CURRENT_TEST", "no test")
    self._opened_by = _callers(depth=14)  # asyncio's own frames first, then who asked for the socket
    _transports.add(self)


def stray_transports(test: str, loop: asyncio.AbstractEventLoop) -> list[str]:
    """The socket transports on ``loop`` that ``test`` (its node id) opened and left open, each
    closed here (aborted) and described by its peer and the frames that opened it."""
    strays = []
    for transport in list(_transports):
        if transport._loop is not loop or transport.is_closing():
            continue
        if not getattr(transport, "_opened_during", "").startswith(test + " "):
            continue
        peer = transport.get_extra_info("peername")
        protocol = type(transport.get_protocol()).__name__
        opened = f"opened during {transport._opened_during}, by {transport._opened_by}"
        strays.append(f"to {peer} ({protocol}) {opened}")
        transport.abort()
    return strays


def _callers(depth: int = 8) -> str:
    """The frames that led to the connect, innermost first (one task's stack: aiokafka's own, mostly)."""
    frames = traceback.extract_stack()[:-2]
    return " <- ".join(f"{f.name} ({Path(f.filename).name}:{f.lineno})" for f in reversed(frames[-depth:]))


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
    selector_events._SelectorSocketTransport.__init__ = _transport_init_noting_the_test  # type: ignore[method-assign]
    AIOKafkaConnection.connect = _connect_noting_the_test  # type: ignore[method-assign]
    AIOKafkaConnection.__del__ = _warn_with_the_test  # type: ignore[method-assign]
    for cls in (AIOKafkaProducer, AIOKafkaConsumer):
        _note_the_maker(cls)
