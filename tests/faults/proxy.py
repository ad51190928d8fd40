"""A TCP fault proxy on loopback, between vanthu and a real server (Dovecot or SMTP).

It runs its own event loop in a thread; `set_mode` switches it at run time:

    pass          forward bytes both ways
    cut           close every connection now (FIN); new connections are closed at once
    stall         stop forwarding while keeping every socket open; new ones are accepted
                  and connected upstream but get nothing
    reset         abort every connection with an RST (SO_LINGER 0); new ones are reset too
    accept-close  live connections go on; new ones are accepted and closed without a byte

`stop()` (or leaving the `with` block) closes everything: nothing outlives the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

MODES = ("pass", "cut", "stall", "reset", "accept-close")


def _rst(writer: asyncio.StreamWriter) -> None:
    """Close with an RST instead of a FIN: linger on, timeout zero."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def close(self, rst: bool) -> None:
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            if rst:
                _rst(writer)
            else:
                writer.transport.close()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """127.0.0.1:`port` forwards to 127.0.0.1:`target_port` unless a fault is switched on."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.mode = "pass"
        self.port = 0
        self.accepted = 0  # connections accepted, whatever happened to them
        self.forwarded = 0  # bytes forwarded, both ways
        self._links: set[_Link] = set()
        self._loop = asyncio.new_event_loop()
        self._flowing: asyncio.Event | None = None
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="fault-proxy")

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def start(self) -> FaultProxy:
        self._thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def set_mode(self, mode: str) -> None:
        """Switch the fault; takes effect on live connections before this returns."""
        if mode not in MODES:
            raise ValueError(f"unknown proxy mode {mode!r}")
        self._call(self._set_mode(mode))

    async def _set_mode(self, mode: str) -> None:
        assert self._flowing is not None
        self.mode = mode
        if mode == "stall":
            self._flowing.clear()
        else:
            self._flowing.set()
        if mode in ("cut", "reset"):
            for link in list(self._links):
                link.close(rst=mode == "reset")
                self._links.discard(link)

    @property
    def live(self) -> int:
        """Connections open right now."""
        return int(self._call(self._count()))

    async def _count(self) -> int:
        return len(self._links)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        if self.mode in ("cut", "accept-close"):
            writer.transport.close()
            return
        if self.mode == "reset":
            _rst(writer)
            return
        link = _Link(writer)
        self._links.add(link)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            link.close(rst=False)
            self._links.discard(link)
            return
        link.upstream = up_writer
        if link not in self._links:  # cut or reset while connecting
            link.close(rst=self.mode == "reset")
            return
        link.tasks = [asyncio.create_task(self._pump(reader, up_writer, link)),
                      asyncio.create_task(self._pump(up_reader, writer, link))]

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter,
                    link: _Link) -> None:
        assert self._flowing is not None
        try:
            while data := await source.read(65536):
                await self._flowing.wait()  # stalled: hold the bytes, keep the socket
                sink.write(data)
                await sink.drain()
                self.forwarded += len(data)
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            if link in self._links:  # one side closed: close the other, as a proxy does
                self._links.discard(link)
                link.close(rst=False)

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            self._call(self._stop(), timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.close(rst=False)
        self._links.clear()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
