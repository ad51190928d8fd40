"""A faulty SMTP server on loopback, written by hand so each fault is exact (asyncio, one
thread of its own). `mode` can be switched at any time; it is read at each command:

    accept            a normal server: 250 to everything
    421-greeting      "421 busy" instead of the greeting, then close
    451-rcpt          "451" to every RCPT TO
    451-data          "451" after the message's final dot
    550-one           "550" to RCPT TO of `refuse` only, 250 to the others
    hang-after-data   the message is read in full, then no answer ever (the socket stays open)
    reset-after-data  the message is read in full, then an RST instead of the answer
    crawl             every answer comes `crawl_seconds` late

Every message whose DATA arrived in full is recorded (Message-ID, recipients, how it was
answered): a server that hung or reset after the data may still have delivered it, so the
invariants count those copies too (a 451 after the data is a refusal: no copy).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

MODES = ("accept", "421-greeting", "451-rcpt", "451-data", "550-one", "hang-after-data",
         "reset-after-data", "crawl")
_MESSAGE_ID = re.compile(rb"(?im)^Message-ID:[ \t]*(<[^>\r\n]*>)")


@dataclass(frozen=True)
class Delivery:
    """One message the server read in full."""

    message_id: str
    recipients: tuple[str, ...]
    answer: str  # "250", "451", "none" (hung), "reset"
    data: bytes = field(repr=False)

    @property
    def accepted(self) -> bool:
        return self.answer == "250"


class FaultySmtp:
    """127.0.0.1:`port`, with the faults above; `on_data` (if set) is called in the server's
    thread after a message arrived and before it is answered (e.g. to fill the disk)."""

    def __init__(self, mode: str = "accept", refuse: str = "", crawl_seconds: float = 3.0) -> None:
        self.mode = mode
        self.refuse = refuse.lower()
        self.crawl_seconds = crawl_seconds
        self.on_data: Callable[[Delivery], None] | None = None
        self.port = 0
        self.sessions = 0
        self._deliveries: list[Delivery] = []
        self._writers: set[asyncio.StreamWriter] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="faulty-smtp")

    # -- control ---------------------------------------------------------------------------

    def _call(self, coro: Any, timeout: float = 30.0) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    def start(self) -> FaultySmtp:
        self._thread.start()
        self._call(self._start())
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise ValueError(f"unknown SMTP mode {mode!r}")
        self.mode = mode

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
        for writer in list(self._writers):
            writer.transport.abort()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def __enter__(self) -> FaultySmtp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what arrived ----------------------------------------------------------------------

    def deliveries(self) -> list[Delivery]:
        with self._lock:
            return list(self._deliveries)

    def copies(self) -> Counter[tuple[str, str]]:
        """(Message-ID, recipient) → how many copies may have been delivered: those answered
        250 and those never answered (hung, reset), which the server may have kept; not those
        it refused after the data with a 451."""
        return Counter((d.message_id, r) for d in self.deliveries() if d.answer != "451"
                       for r in d.recipients)

    def accepted(self) -> Counter[tuple[str, str]]:
        """(Message-ID, recipient) → how many copies the server acknowledged with 250."""
        return Counter((d.message_id, r) for d in self.deliveries() if d.accepted
                       for r in d.recipients)

    # -- the protocol ----------------------------------------------------------------------

    async def _reply(self, writer: asyncio.StreamWriter, line: str) -> None:
        if self.mode == "crawl":
            await asyncio.sleep(self.crawl_seconds)
        writer.write(line.encode() + b"\r\n")
        await writer.drain()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.sessions += 1
        self._writers.add(writer)
        try:
            await self._converse(reader, writer)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            writer.transport.abort()

    async def _converse(self, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        if self.mode == "421-greeting":
            await self._reply(writer, "421 faulty.localhost busy, try later")
            return
        await self._reply(writer, "220 faulty.localhost ESMTP")
        recipients: list[str] = []
        while line := await reader.readline():
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                await self._reply(writer, "250-faulty.localhost\r\n250-8BITMIME\r\n"
                                          "250 SMTPUTF8" if verb == b"EHLO"
                                  else "250 faulty.localhost")
            elif verb == b"MAIL":
                recipients = []
                await self._reply(writer, "250 OK")
            elif verb == b"RCPT":
                address = line.decode("utf-8", "replace").partition(":")[2].strip()
                address = address.split()[0].strip("<>").lower() if address else ""
                if self.mode == "451-rcpt":
                    await self._reply(writer, "451 4.3.0 try again later")
                elif self.mode == "550-one" and address == self.refuse:
                    await self._reply(writer, "550 5.1.1 no such mailbox")
                else:
                    recipients.append(address)
                    await self._reply(writer, "250 OK")
            elif verb == b"DATA":
                if not recipients:
                    await self._reply(writer, "554 no valid recipients")
                    continue
                await self._reply(writer, "354 go ahead")
                data = await self._read_data(reader)
                if not await self._answer_data(writer, data, recipients):
                    return
                recipients = []
            elif verb == b"RSET":
                recipients = []
                await self._reply(writer, "250 OK")
            elif verb == b"NOOP":
                await self._reply(writer, "250 OK")
            elif verb == b"QUIT":
                await self._reply(writer, "221 bye")
                return
            else:
                await self._reply(writer, "502 not implemented")

    @staticmethod
    async def _read_data(reader: asyncio.StreamReader) -> bytes:
        lines: list[bytes] = []
        while True:
            line = await reader.readline()
            if not line:
                raise asyncio.IncompleteReadError(b"", None)
            if line in (b".\r\n", b".\n"):
                return b"".join(lines)
            lines.append(line[1:] if line.startswith(b"..") else line)

    async def _answer_data(self, writer: asyncio.StreamWriter, data: bytes,
                           recipients: list[str]) -> bool:
        """Answer the final dot as the mode says; False when the session is over."""
        mode = self.mode
        answer = {"hang-after-data": "none", "reset-after-data": "reset",
                  "451-data": "451"}.get(mode, "250")
        found = _MESSAGE_ID.search(data[:65536])
        delivery = Delivery(found.group(1).decode("ascii", "replace") if found else "",
                            tuple(recipients), answer, data)
        with self._lock:
            self._deliveries.append(delivery)
        if self.on_data is not None:
            await asyncio.to_thread(self.on_data, delivery)
        if answer == "none":
            await asyncio.Event().wait()  # until the client gives up or the server stops
        if answer == "reset":
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        await self._reply(writer, "451 4.3.0 queue full" if answer == "451"
                          else "250 2.0.0 queued")
        return True
