"""Claims on outbox rows: several daemons on one database send each email once; a claim of
another daemon is respected until it expires (or at once when its process is dead here); the
tries counted before each SMTP transaction bound the copies; old rows fail; the SMTP server's
own trouble is the health fault "smtp". A real SQLite file (a PostgreSQL database too, for the
tests marked db) and a real SMTP server on loopback.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, update

from daemon import leases
from daemon.config import SmtpConfig
from daemon.db import health, make_engine, outbox, upgrade
from daemon.errors import DatabaseError
from daemon.models import OutboxState
from daemon.outbound.journal import SendJournal, journal_path
from daemon.outbound.send import Sender, claim_seconds
from tests.conftest import ROOT
from tests.pg import database_url, on_postgresql
from tests.queued import queue_raw
from tests.servers import SmtpSink

SUBJECT = "=?utf-8?q?H=E1=BB=93_s=C6=A1_c=E1=BA=A5p_ph=C3=A9p?="  # Hồ sơ cấp phép


def _raw(n: int) -> bytes:
    return (f"From: vanthu@x.gov.vn\r\nTo: a@x.gov.vn\r\nSubject: {SUBJECT} {n}\r\n"
            f"Message-ID: <{n}.forward@x.gov.vn>\r\n\r\nKính gửi ông Nguyễn Văn Toàn\r\n"
            ).encode()


def _engine(path: Path | str, count: int = 1, **row: Any) -> Engine:
    """A database file (or URL) with `count` pending rows (with `row`'s values); a fresh
    PostgreSQL database instead of the file on the PostgreSQL run of a `db` test."""
    if isinstance(path, Path):
        path = database_url(path.parent) if on_postgresql() else f"sqlite:///{path}"
    engine = make_engine(path)
    upgrade(engine)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for n in range(1, count + 1):
            queue_raw(conn, _raw(n), **{
                "header_message_id": f"<{n}.forward@x.gov.vn>", "action": "forward",
                "recipients": ["a@x.gov.vn"], "state": OutboxState.PENDING,
                "attempts": 0, "tries_begun": 0, "next_attempt_at": now, "created_at": now,
                **row})
    return engine


def _rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)).all())


def _set(engine: Engine, **values: Any) -> None:
    with engine.begin() as conn:
        conn.execute(update(outbox).values(**values))


def _copies(sink: SmtpSink) -> Counter[str]:
    return Counter(str(message_from_bytes(m.data, policy=policy.default)["Message-ID"])
                   for m in sink.messages())


def _drain(engine: Engine, port: int, **cfg: Any) -> int:
    return asyncio.run(Sender(engine, SmtpConfig(port=port, **cfg)).drain())


@dataclass
class SlowSink(SmtpSink):
    """The sink taking a moment over each message, so that daemons overlap."""

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        await asyncio.sleep(0.05)
        return await super().handle_DATA(server, session, envelope)


@pytest.fixture()
def slow() -> Iterator[SlowSink]:
    sink = SlowSink()
    sink.start()
    yield sink
    sink.stop()


# A daemon's sender in its own process: waits for the start signal (a file), then drains a
# few rows at a time until no row is pending, and prints how many it sent.
_WORKER = """
import asyncio, os, sys, time
from sqlalchemy import func, select
from daemon.config import SmtpConfig
from daemon.db import make_engine, outbox
from daemon.outbound.send import Sender

engine = make_engine(sys.argv[1])
sender = Sender(engine, SmtpConfig(port=int(sys.argv[2])))
while not os.path.exists(sys.argv[3]):
    time.sleep(0.01)
sent = 0
while True:
    sent += asyncio.run(sender.drain(limit=3))
    with engine.connect() as conn:
        if not conn.scalar(select(func.count()).select_from(outbox)
                           .where(outbox.c.state == "pending")):
            break
print(sent)
"""


@pytest.mark.db
def test_daemons_on_one_database_send_each_email_once(tmp_path: Path, slow: SlowSink,
                                                     db_url: str) -> None:
    """Three processes draining one database (a SQLite file; PostgreSQL, where the claims are
    SELECT … FOR UPDATE SKIP LOCKED) into one SMTP server at the same time: every email
    arrives exactly once, each row was tried once, no claim is left, and the work was shared
    (the claims kept them apart, not the luck of who came first)."""
    engine = _engine(db_url, 60)
    go = tmp_path / "go"
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, db_url,
                                 str(slow.port), str(go)], cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(3)]
    go.touch()
    results = [w.communicate(timeout=120) for w in workers]

    assert all(w.returncode == 0 for w in workers), [err[-2000:] for _, err in results]
    sent = [int(out) for out, _ in results]
    assert _copies(slow) == {f"<{n}.forward@x.gov.vn>": 1 for n in range(1, 61)}
    assert sum(sent) == 60 and sum(1 for s in sent if s) >= 2, sent
    assert all((r.state, r.attempts, r.tries_begun, r.claimed_by)
               == (OutboxState.SENT, 1, 1, None) for r in _rows(engine)), [
        (r.id, r.state, r.attempts, r.tries_begun, r.claimed_by) for r in _rows(engine)]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.db
def test_claim_of_a_live_daemon_elsewhere_is_respected_until_it_expires(
        tmp_path: Path, smtp: SmtpSink) -> None:
    """A row claimed by a daemon on another machine (never guessed dead) is left alone while
    its claim holds, and sent once it has expired; then its claim is gone."""
    engine = _engine(tmp_path / "out.db", 2)
    later = datetime.now(UTC) + timedelta(minutes=5)
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == 1).values(
            claimed_by="may-khac/1/1", claim_expires_at=later, tries_begun=1))

    assert _drain(engine, smtp.port) == 1
    assert _copies(smtp) == {"<2.forward@x.gov.vn>": 1}

    _set(engine, claim_expires_at=datetime.now(UTC) - timedelta(seconds=1))
    assert _drain(engine, smtp.port) == 1

    assert _copies(smtp) == {"<1.forward@x.gov.vn>": 1, "<2.forward@x.gov.vn>": 1}
    first = _rows(engine)[0]
    # The other daemon's try had no outcome: a doubt; this one was the second try.
    assert (first.state, first.attempts, first.tries_begun, first.claimed_by) == (
        OutboxState.SENT, 1, 2, None)


@pytest.mark.db
def test_claim_of_a_dead_process_here_is_taken_at_once(tmp_path: Path, smtp: SmtpSink) -> None:
    """A claim of a daemon of this machine whose process has ended is free at once."""
    engine = _engine(tmp_path / "out.db")
    _set(engine, claimed_by=f"{socket.gethostname()}/{_dead_pid()}/12345",
         claim_expires_at=datetime.now(UTC) + timedelta(hours=1), tries_begun=1)

    assert _drain(engine, smtp.port) == 1
    assert _copies(smtp) == {"<1.forward@x.gov.vn>": 1}


@pytest.mark.db
def test_claim_from_before_a_clock_step_back_is_free(tmp_path: Path, smtp: SmtpSink) -> None:
    """A claim expiring further ahead than any claim lasts was made before the clock went
    back: it does not hold the row for hours."""
    engine = _engine(tmp_path / "out.db")
    far = timedelta(seconds=3 * claim_seconds(SmtpConfig()))
    _set(engine, claimed_by="may-khac/1/1", claim_expires_at=datetime.now(UTC) + far)

    assert _drain(engine, smtp.port) == 1


@pytest.mark.db
@pytest.mark.parametrize(("ahead", "due"), [(timedelta(minutes=30), False),
                                            (timedelta(hours=5, minutes=59), False),
                                            (timedelta(hours=7, minutes=1), True),
                                            (timedelta(days=30), True)])
def test_retry_time_from_before_a_clock_step_back_is_due(tmp_path: Path, smtp: SmtpSink,
                                                         ahead: timedelta, due: bool) -> None:
    """A retry time within the longest backoff (6 h) waits; one further ahead than that plus
    an hour can only come from a clock stepped back, and is due now."""
    engine = _engine(tmp_path / "out.db", attempts=1, tries_begun=1)
    _set(engine, next_attempt_at=datetime.now(UTC) + ahead)

    assert _drain(engine, smtp.port) == int(due)


@pytest.mark.db
@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(attempts=st.integers(0, 8), doubts=st.integers(0, 3), legacy=st.booleans())
def test_tries_in_doubt_bound_the_copies(tmp_path_factory: pytest.TempPathFactory,
                                         smtp: SmtpSink, attempts: int, doubts: int,
                                         legacy: bool) -> None:
    """Whatever a row's counters: with fewer than two doubts (tries begun without a recorded
    outcome) it is sent once more; with two or more it fails "in doubt" and is never sent. A
    row from before tries were counted (tries_begun NULL) has no doubts."""
    engine = _engine(tmp_path_factory.mktemp("doubts") / "out.db", attempts=attempts,
                     tries_begun=None if legacy else attempts + doubts)
    before = len(smtp.messages())

    sent = _drain(engine, smtp.port, max_attempts=20)

    row = _rows(engine)[0]
    if legacy or doubts < 2:
        assert sent == 1 and len(smtp.messages()) == before + 1
        assert row.state == OutboxState.SENT and row.attempts == attempts + 1
        assert row.tries_begun == attempts + (0 if legacy else doubts) + 1
    else:
        assert sent == 0 and len(smtp.messages()) == before
        assert row.state == OutboxState.FAILED
        assert row.last_error.startswith(f"in doubt: {doubts} tries")
        assert "check with the recipients before resending" in row.last_error
    engine.dispose()


@pytest.mark.db
def test_row_older_than_max_age_fails_without_a_try(tmp_path: Path, smtp: SmtpSink) -> None:
    """A pending row queued longer ago than [smtp] max_age_hours fails, even while it waits
    for a retry, with why; it is not sent."""
    engine = _engine(tmp_path / "out.db", 2, attempts=3, tries_begun=3,
                     last_error="451 4.3.0 try later")
    long_ago = datetime.now(UTC) - timedelta(hours=49)
    with engine.begin() as conn:
        conn.execute(update(outbox).where(outbox.c.id == 1).values(
            created_at=long_ago, next_attempt_at=datetime.now(UTC) + timedelta(hours=2)))

    assert _drain(engine, smtp.port, max_age_hours=48) == 1

    old, young = _rows(engine)
    assert old.state == OutboxState.FAILED and old.tries_begun == 3
    assert old.last_error == ("not sent within 48 hours of being queued (3 attempts; "
                              "last error: 451 4.3.0 try later)")
    assert young.state == OutboxState.SENT
    assert _copies(smtp) == {"<2.forward@x.gov.vn>": 1}


def test_claim_that_cannot_be_written_sends_nothing(tmp_path: Path, smtp: SmtpSink) -> None:
    """The database locked by another process's transaction: the claim cannot be written, so
    nothing is sent and the drain raises DatabaseError."""
    path = tmp_path / "out.db"
    _engine(path).dispose()
    engine = make_engine(f"sqlite:///{path}", busy_seconds=0.3)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(DatabaseError):
            asyncio.run(Sender(engine, SmtpConfig(port=smtp.port)).drain())
    finally:
        holder.rollback()
        holder.close()

    assert smtp.messages() == []
    assert _rows(engine)[0].tries_begun == 0
    assert _drain(engine, smtp.port) == 1


def _fault(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(health).where(health.c.component == "smtp")).first()


@pytest.mark.db
def test_smtp_trouble_is_a_health_fault_until_a_delivery(tmp_path: Path, smtp: SmtpSink) -> None:
    """No server: the fault "smtp" says so, and keeps the time it began across drains; a 4xx
    to every try keeps it; the next delivery clears it."""
    engine = _engine(tmp_path / "out.db")

    _drain(engine, 1, timeout_seconds=2)
    first = _fault(engine)
    assert first is not None and first.problem.startswith("connect:")
    assert _rows(engine)[0].attempts == 0  # the outage is not the row's

    _set(engine, next_attempt_at=datetime.now(UTC))
    smtp.reply = "421 4.3.2 busy"
    _drain(engine, smtp.port)
    second = _fault(engine)
    assert second.since == first.since and "421" in second.problem

    smtp.reply = None
    _set(engine, next_attempt_at=datetime.now(UTC))
    assert _drain(engine, smtp.port) == 1
    assert _fault(engine) is None


@pytest.mark.db
def test_claim_is_taken_and_counted_before_the_transaction(tmp_path: Path,
                                                           smtp: SmtpSink) -> None:
    """While the server holds the message, the row is already claimed by this daemon and the
    try counted, both committed (read from another connection): on PostgreSQL in the row, on
    SQLite in the sender's journal beside the database (folded into the row afterwards)."""
    engine = _engine(tmp_path / "out.db")
    other = make_engine(engine.url.render_as_string(hide_password=False))
    beside = journal_path(engine)
    seen: list[tuple[Any, ...]] = []
    original = smtp.handle_DATA

    async def look(server: Any, session: Any, envelope: Any) -> str:
        with other.connect() as conn:
            claimed_by, begun, attempts, expires = conn.execute(select(
                outbox.c.claimed_by, outbox.c.tries_begun, outbox.c.attempts,
                outbox.c.claim_expires_at)).one()
        if beside is not None:  # read by another connection to the journal's file
            assert begun == 0
            begun += sum(1 for e in SendJournal(beside).entries()
                         if e.row_id == 1 and e.outcome is None and e.owner == claimed_by)
        seen.append((claimed_by, begun, attempts, expires))
        return await original(server, session, envelope)

    smtp.handle_DATA = look  # type: ignore[method-assign]
    started = time.time()
    try:
        assert _drain(engine, smtp.port) == 1
    finally:
        other.dispose()

    claimed_by, begun, attempts, expires = seen[0]
    assert (claimed_by, begun, attempts) == (str(leases.me()), 1, 0)
    assert expires.timestamp() > started + claim_seconds(SmtpConfig())
    assert (_rows(engine)[0].claimed_by, _rows(engine)[0].tries_begun) == (None, 1)
