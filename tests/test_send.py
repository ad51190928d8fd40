"""The outbox and the sender against a real SMTP server: 250 sent, 4xx retried up to
`[smtp] max_attempts`, 5xx failed, a partial refusal recorded; one row's trouble is never the
drain's."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, select, update

from daemon.config import SmtpConfig
from daemon.db import make_engine, outbox, upgrade
from daemon.models import OutboxState
from daemon.outbound.send import Sender, backoff
from daemon.probe import probe_smtp
from tests.queued import queue_raw
from tests.servers import SmtpSink

RAW = (b"From: vanthu@x.gov.vn\r\nTo: a@x.gov.vn\r\nSubject: test\r\n"
       b"Message-ID: <1.forward@x.gov.vn>\r\n\r\nhello\r\n")


def _queue(tmp_path: Path, *recipients: list[str]) -> Any:
    """A database with one pending row per recipient list (default: one row for a@x.gov.vn)."""
    engine = make_engine(f"sqlite:///{tmp_path / 'out.db'}")
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for n, to in enumerate(recipients or (["a@x.gov.vn"],), 1):
            queue_raw(conn, RAW, header_message_id=f"<{n}.forward@x.gov.vn>",
                      action="forward", recipients=to, state=OutboxState.PENDING, attempts=0,
                      next_attempt_at=now, created_at=now)
    return engine


def _rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)).all())


def _due_now(engine: Engine) -> None:
    """Move every retry to now, as the clock would after the backoff."""
    with engine.begin() as conn:
        conn.execute(update(outbox).values(next_attempt_at=datetime.now(UTC)))


@dataclass
class PickySink(SmtpSink):
    """The test SMTP server, answering RCPT per address, and hanging up during the DATA of a
    message for `hang_up_for`."""

    replies: dict[str, str] = field(default_factory=dict)
    hang_up_for: str | None = None

    async def handle_RCPT(self, server: Any, session: Any, envelope: Any, address: str,
                          options: Any) -> str:
        if address in self.replies:
            return self.replies[address]
        return await super().handle_RCPT(server, session, envelope, address, options)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.hang_up_for in envelope.rcpt_tos:
            server.transport.close()
            return "421 4.3.2 going away"
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture()
def picky() -> Iterator[PickySink]:
    sink = PickySink()
    sink.start()
    yield sink
    sink.stop()


def _row(engine: object) -> object:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return conn.execute(select(outbox)).one()


def test_accepted_mail_is_marked_sent(tmp_path: Path, smtp: SmtpSink) -> None:
    """After the server's 250 the row is sent and the server holds the very bytes."""
    engine = _queue(tmp_path)
    sender = Sender(engine, SmtpConfig(port=smtp.port))

    assert asyncio.run(sender.drain()) == 1

    assert _row(engine).state == OutboxState.SENT  # type: ignore[attr-defined]
    assert smtp.messages()[0].data.replace(b"\r\n", b"\n") == RAW.replace(b"\r\n", b"\n")


def test_temporary_failure_is_retried_later(tmp_path: Path, smtp: SmtpSink) -> None:
    """A 4xx keeps the row pending with a later attempt time; it goes once the server is back."""
    engine = _queue(tmp_path)
    sender = Sender(engine, SmtpConfig(port=smtp.port))
    smtp.reply = "451 4.3.0 try again later"

    assert asyncio.run(sender.drain()) == 0

    row = _row(engine)
    assert row.state == OutboxState.PENDING and row.attempts == 1  # type: ignore[attr-defined]
    assert row.next_attempt_at > datetime.now(UTC)  # type: ignore[attr-defined]
    assert "451" in row.last_error  # type: ignore[attr-defined]
    smtp.reply = None
    with engine.begin() as conn:
        conn.execute(update(outbox).values(next_attempt_at=datetime.now(UTC)))
    assert asyncio.run(sender.drain()) == 1
    assert len(smtp.messages()) == 1


def test_permanent_failure_is_marked_failed(tmp_path: Path, smtp: SmtpSink) -> None:
    """A 5xx marks the row failed with the server's words, never retried."""
    engine = _queue(tmp_path)
    sender = Sender(engine, SmtpConfig(port=smtp.port))
    smtp.reply = "550 5.1.1 no such user"

    asyncio.run(sender.drain())

    row = _row(engine)
    assert row.state == OutboxState.FAILED  # type: ignore[attr-defined]
    assert "550" in row.last_error  # type: ignore[attr-defined]


def test_unreachable_server_defers(tmp_path: Path) -> None:
    """No server listening: the row stays pending for a retry, its attempts untouched (the
    outage is not the row's fault), the error shown."""
    engine = _queue(tmp_path)
    sender = Sender(engine, SmtpConfig(port=1, timeout_seconds=2))

    asyncio.run(sender.drain())

    row = _row(engine)
    assert row.state == OutboxState.PENDING and row.attempts == 0  # type: ignore[attr-defined]
    assert row.last_error.startswith("connect:")  # type: ignore[attr-defined]


def test_backoff_grows_and_is_capped() -> None:
    """Retries wait 1, 2, 4 … minutes, never more than six hours."""
    assert [backoff(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    assert backoff(40) == timedelta(hours=6)


def test_temporary_failures_end_in_failed_after_max_attempts(tmp_path: Path,
                                                             smtp: SmtpSink) -> None:
    """A 4xx every time: retried with backoff, then failed after `[smtp] max_attempts`
    attempts, with the server's words."""
    engine = _queue(tmp_path)
    sender = Sender(engine, SmtpConfig(port=smtp.port, max_attempts=3))
    smtp.reply = "451 4.3.0 try again later"

    states = []
    for _ in range(4):
        asyncio.run(sender.drain())
        states.append((_rows(engine)[0].state, _rows(engine)[0].attempts))
        _due_now(engine)

    assert states == [(OutboxState.PENDING, 1), (OutboxState.PENDING, 2),
                      (OutboxState.FAILED, 3), (OutboxState.FAILED, 3)]
    assert "gave up after 3 attempts: a@x.gov.vn: 451" in _rows(engine)[0].last_error
    assert smtp.messages() == []


def test_partly_refused_recipients_are_recorded_and_never_resent(tmp_path: Path,
                                                                 picky: PickySink) -> None:
    """One recipient refused for good, one for now: the row records the refusal, the
    accepted recipient gets the mail once, and the retry goes to the deferred one only."""
    engine = _queue(tmp_path, ["a@x.gov.vn", "b@x.gov.vn", "c@x.gov.vn"])
    sender = Sender(engine, SmtpConfig(port=picky.port))
    picky.replies = {"b@x.gov.vn": "550 5.1.1 no such user", "c@x.gov.vn": "452 4.2.2 full"}

    assert asyncio.run(sender.drain()) == 0

    row = _rows(engine)[0]
    assert row.state == OutboxState.PENDING and row.delivered == ["a@x.gov.vn"]
    assert row.refused == {"b@x.gov.vn": "550 5.1.1 no such user"}
    picky.replies = {}
    _due_now(engine)

    assert asyncio.run(sender.drain()) == 1

    assert [m.rcpt_tos for m in picky.messages()] == [["a@x.gov.vn"], ["c@x.gov.vn"]]
    row = _rows(engine)[0]
    assert row.state == OutboxState.SENT and row.refused == {
        "b@x.gov.vn": "550 5.1.1 no such user"}
    assert "b@x.gov.vn: 550" in row.last_error


def test_every_recipient_refused_fails_the_row(tmp_path: Path, picky: PickySink) -> None:
    """When the server refuses every recipient for good, the row fails with each refusal."""
    engine = _queue(tmp_path, ["a@x.gov.vn", "b@x.gov.vn"], ["c@x.gov.vn"])
    picky.replies = {"a@x.gov.vn": "550 5.1.1 no such user", "b@x.gov.vn": "553 5.1.3 bad"}

    assert asyncio.run(Sender(engine, SmtpConfig(port=picky.port)).drain()) == 1

    failed, sent = _rows(engine)
    assert failed.state == OutboxState.FAILED and set(failed.refused) == {"a@x.gov.vn",
                                                                         "b@x.gov.vn"}
    assert sent.state == OutboxState.SENT and picky.messages()[0].rcpt_tos == ["c@x.gov.vn"]


def test_dropped_connection_ends_the_drain_after_recording(tmp_path: Path,
                                                           picky: PickySink) -> None:
    """The server hangs up after the DATA of a row: that row records the error as a doubt (it
    may have arrived: a try begun, not an attempt with an answer) and waits for a retry, the
    rows behind it wait for the next connection, then all go."""
    engine = _queue(tmp_path, ["a@x.gov.vn"], ["b@x.gov.vn"], ["c@x.gov.vn"])
    sender = Sender(engine, SmtpConfig(port=picky.port))
    picky.hang_up_for = "b@x.gov.vn"

    assert asyncio.run(sender.drain()) == 1

    first, second, third = _rows(engine)
    assert first.state == OutboxState.SENT
    assert second.state == OutboxState.PENDING
    assert (second.attempts, second.tries_begun) == (0, 1)
    assert second.last_error and second.claimed_by is None
    assert third.state == OutboxState.PENDING and third.attempts == 0
    picky.hang_up_for = None
    _due_now(engine)

    assert asyncio.run(sender.drain()) == 2
    assert [m.rcpt_tos for m in picky.messages()] == [["a@x.gov.vn"], ["b@x.gov.vn"],
                                                     ["c@x.gov.vn"]]


def test_claims_and_outcomes_do_not_write_the_bytes_again(tmp_path: Path,
                                                           smtp: SmtpSink) -> None:
    """An email's bytes are written once: a 4 MB email refused for now, then sent (two
    claims, two outcomes, their folds) adds less than a megabyte to SQLite's write-ahead log.
    Kept in the outbox row, each of those writes wrote the whole 4 MB again."""
    body = b"".join(b"%076d\r\n" % n for n in range(52_000))  # 4 MB of 78-octet lines
    raw = RAW.replace(b"hello\r\n", body)
    engine = make_engine(f"sqlite:///{tmp_path / 'out.db'}")
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        queue_raw(conn, raw, header_message_id="<1.forward@x.gov.vn>", action="forward",
                  recipients=["a@x.gov.vn"], state=OutboxState.PENDING, attempts=0,
                  next_attempt_at=now, created_at=now)
    with closing(sqlite3.connect(tmp_path / "out.db")) as conn:
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    wal = tmp_path / "out.db-wal"
    assert wal.stat().st_size == 0

    sender = Sender(engine, SmtpConfig(port=smtp.port))
    smtp.reply = "451 4.3.0 try again later"
    assert asyncio.run(sender.drain()) == 0
    smtp.reply = None
    _due_now(engine)
    assert asyncio.run(sender.drain()) == 1

    assert _row(engine).state == OutboxState.SENT  # type: ignore[attr-defined]
    assert smtp.messages()[-1].data.replace(b"\r\n", b"\n") == raw.replace(b"\r\n", b"\n")
    assert wal.stat().st_size < 1_000_000
    engine.dispose()


def test_the_smtp_probe_closes_a_connection_the_server_refuses_after_its_greeting() -> None:
    """`vanthu check`'s SMTP probe against a server that greets, then answers EHLO with 554:
    the probe fails with the server's words and closes its socket itself (before, it was left
    to the garbage collector: a ResourceWarning, which this suite makes an error)."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    closed = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.sendall(b"220 mx.sxd.tayninh.gov.vn ready\r\n")
            conn.recv(1024)  # EHLO
            conn.sendall("554 5.7.1 Không phục vụ máy này\r\n".encode())
            conn.settimeout(30)
            with contextlib.suppress(OSError):
                while conn.recv(1024):
                    pass
            closed.set()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        probe = probe_smtp(SmtpConfig(host="127.0.0.1", port=port))
        assert not probe.ok and "554" in str(probe.error)
        assert closed.wait(10)  # the probe hung up: the server read its end of the stream
        gc.collect()  # a socket left open would warn here
    finally:
        listener.close()
        server.join(10)
