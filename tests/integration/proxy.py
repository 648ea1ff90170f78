"""A loopback TCP proxy that a test can cut, stall and restore: a broker outage without losing its state.

``cut()`` refuses new connections and resets the open ones (the broker's host down, a firewall that
rejects). ``stall()`` is a network partition that drops packets: connections stay open and new ones
are accepted, but no byte passes either way, and no reset tells either side; ``restore()`` heals it,
and what was sent meanwhile is delivered then, late, as TCP retransmits it after a partition heals
(a client that gave up on a request and closed its connection still has it delivered)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any


class CuttableProxy:
    def __init__(self, listen_port: int, target_port: int) -> None:
        self.listen_port = listen_port
        self.target_port = target_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cuts = 0  # a connection accepted before a cut is reset by it, even one still connecting
        self._flowing = asyncio.Event()
        self._flowing.set()

    @property
    def up(self) -> bool:
        return self._server is not None

    async def restore(self) -> None:
        self._flowing.set()
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)

    async def stall(self) -> None:
        """Pass no byte either way, on open connections and new ones, until ``restore()``."""
        self._flowing.clear()
        if self._server is None:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.listen_port)

    async def cut(self) -> None:
        """Refuse new connections and reset every open one."""
        self._cuts += 1
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        """Cut, and end every task of the proxy's, those still accepting a connection too."""
        await self.cut()
        while self._tasks:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        cuts = self._cuts
        accepting = asyncio.current_task()
        assert accepting is not None
        self._tasks.add(accepting)
        self._writers.add(writer)
        try:
            await self._flowing.wait()  # a stalled network: the client's request waits with its connection
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except (OSError, asyncio.CancelledError):
            writer.transport.abort()
            self._writers.discard(writer)
            return
        finally:
            self._tasks.discard(accepting)
        if cuts != self._cuts:  # cut while this one connected upstream
            for end in (writer, up_writer):
                end.transport.abort()
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        for src, dst in ((reader, up_writer), (up_reader, writer)):
            task = asyncio.create_task(self._pipe(src, dst))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self._flowing.wait()
                if not (data := await reader.read(65536)):
                    break
                await self._flowing.wait()  # read before the stall began: held until it ends
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
