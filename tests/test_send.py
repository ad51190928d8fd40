"""The outbox and the sender against a real SMTP server: 250 sent, 4xx retried, 5xx failed."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select, update

from daemon.config import SmtpConfig
from daemon.db import make_engine, outbox, upgrade
from daemon.localservers import SmtpSink
from daemon.send import Sender, backoff

RAW = (b"From: vanthu@x.gov.vn\r\nTo: a@x.gov.vn\r\nSubject: test\r\n"
       b"Message-ID: <1.forward@x.gov.vn>\r\n\r\nhello\r\n")


def _queue(tmp_path: Path) -> object:
    engine = make_engine(f"sqlite:///{tmp_path / 'out.db'}")
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        conn.execute(insert(outbox).values(
            header_message_id="<1.forward@x.gov.vn>", action="forward",
            recipients=["a@x.gov.vn"], raw=RAW, state="pending", attempts=0,
            next_attempt_at=now, created_at=now))
    return engine


def _row(engine: object) -> object:
    with engine.connect() as conn:  # type: ignore[attr-defined]
        return conn.execute(select(outbox)).one()


def test_accepted_mail_is_marked_sent(tmp_path: Path, smtp: SmtpSink) -> None:
    """After the server's 250 the row is sent and the server holds the very bytes."""
    engine = _queue(tmp_path)
    sender = Sender(engine, SmtpConfig(port=smtp.port))  # type: ignore[arg-type]

    assert asyncio.run(sender.drain()) == 1

    assert _row(engine).state == "sent"  # type: ignore[attr-defined]
    assert smtp.messages()[0].data.replace(b"\r\n", b"\n") == RAW.replace(b"\r\n", b"\n")


def test_temporary_failure_is_retried_later(tmp_path: Path, smtp: SmtpSink) -> None:
    """A 4xx keeps the row pending with a later attempt time; it goes once the server is back."""
    engine = _queue(tmp_path)
    sender = Sender(engine, SmtpConfig(port=smtp.port))  # type: ignore[arg-type]
    smtp.reply = "451 4.3.0 try again later"

    assert asyncio.run(sender.drain()) == 0

    row = _row(engine)
    assert row.state == "pending" and row.attempts == 1  # type: ignore[attr-defined]
    assert row.next_attempt_at > datetime.now(UTC)  # type: ignore[attr-defined]
    assert "451" in row.last_error  # type: ignore[attr-defined]
    smtp.reply = None
    with engine.begin() as conn:  # type: ignore[attr-defined]
        conn.execute(update(outbox).values(next_attempt_at=datetime.now(UTC)))
    assert asyncio.run(sender.drain()) == 1
    assert len(smtp.messages()) == 1


def test_permanent_failure_is_marked_failed(tmp_path: Path, smtp: SmtpSink) -> None:
    """A 5xx marks the row failed with the server's words, never retried."""
    engine = _queue(tmp_path)
    sender = Sender(engine, SmtpConfig(port=smtp.port))  # type: ignore[arg-type]
    smtp.reply = "550 5.1.1 no such user"

    asyncio.run(sender.drain())

    row = _row(engine)
    assert row.state == "failed" and "550" in row.last_error  # type: ignore[attr-defined]


def test_unreachable_server_defers(tmp_path: Path) -> None:
    """No server listening: the row stays pending for a retry."""
    engine = _queue(tmp_path)
    sender = Sender(engine, SmtpConfig(port=1, timeout_seconds=2))  # type: ignore[arg-type]

    asyncio.run(sender.drain())

    assert _row(engine).state == "pending"  # type: ignore[attr-defined]


def test_backoff_grows_and_is_capped() -> None:
    """Retries wait 1, 2, 4 … minutes, never more than six hours."""
    assert [backoff(n) for n in (1, 2, 3)] == [timedelta(minutes=m) for m in (1, 2, 4)]
    assert backoff(40) == timedelta(hours=6)
