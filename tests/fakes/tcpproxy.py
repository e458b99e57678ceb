"""A TCP proxy on 127.0.0.1:<free port> that can cut a service off: a database or Redis going away.

Point the server's URL at the proxy instead of the service; then, from the test::

    with TcpProxy(5432) as proxy:                # forwards 127.0.0.1:<proxy.port> -> 127.0.0.1:5432
        proxy.down()       # every open connection is reset, new ones are reset at once
        proxy.blackhole()  # connections are accepted and held, nothing is forwarded or answered
        proxy.up()         # forwarding again (connections cut earlier stay cut)

The listening socket stays bound the whole time (no other process can take the port); "down"
resets each new connection (SO_LINGER 0), which the client sees as the service being gone.
Runs its own event loop in a daemon thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from typing import Literal, Self

Mode = Literal["up", "down", "blackhole"]


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode: Mode = "up"
        self.accepted = 0  # connections accepted so far (any mode)
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._held: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        self._call(self._start())
        return self

    def __exit__(self, *exc: object) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    # --- control (from the test's thread) -------------------------------------------------------

    def up(self) -> None:
        self._call(self._set("up"))

    def down(self) -> None:
        """The service is gone: open connections are reset and new ones refused."""
        self._call(self._set("down"))

    def blackhole(self) -> None:
        """The service hangs: connections are accepted and never answered."""
        self._call(self._set("blackhole"))

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)  # type: ignore[arg-type]

    # --- the proxy (on its own loop) -----------------------------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._accept, sock=self._sock)

    async def _stop(self) -> None:
        await self._set("down")
        if self._server is not None:
            self._server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        if others:  # the connections were reset above: let their tasks see it and end
            await asyncio.wait(others, timeout=2)

    async def _set(self, mode: Mode) -> None:
        self.mode = mode
        if mode != "up":
            for w in list(self._writers):
                _reset(w)
            self._writers.clear()
        if mode != "blackhole":
            for w in list(self._held):
                _reset(w)
            self._held.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode == "down":
            _reset(writer)
            return
        if self.mode == "blackhole":
            self._held.add(writer)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            _reset(writer)
            return
        self._writers.update((writer, up_writer))
        await asyncio.gather(
            self._pipe(reader, up_writer), self._pipe(up_reader, writer), return_exceptions=True
        )
        for w in (writer, up_writer):
            self._writers.discard(w)
            w.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        finally:
            with contextlib.suppress(OSError):
                writer.write_eof()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST (SO_LINGER 0), as a crashed host or a cut link looks to the other side."""
    sock = writer.get_extra_info("socket")
    with contextlib.suppress(OSError):
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
