"""The schema and the engine. SQLite (one WAL file) by default, PostgreSQL for several daemons.

Every state change of a message is one transaction with everything it caused. On SQLite a
transaction starts with BEGIN IMMEDIATE, so a read-then-write ("next số đến = last + 1") holds
the write lock from its first read and two writers cannot both read the same value. The
database's own trouble (locked, disk full, I/O error, cannot open) becomes a DatabaseError at
`database_errors`, the boundary the loops use; the transaction in hand was rolled back.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    CursorResult,
    Date,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    UniqueConstraint,
    bindparam,
    create_engine,
    delete,
    event,
    exc,
    func,
    inspect,
    make_url,
    select,
    update,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Dialect

from daemon.errors import DatabaseError

_log = logging.getLogger("vanthu.db")


class UTCDateTime(TypeDecorator[datetime]):
    """Timestamps are stored in UTC and always come back timezone-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the database")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def new_id(result: CursorResult[Any]) -> int:
    """The primary key of the row an INSERT made."""
    key = result.inserted_primary_key
    if key is None:
        raise RuntimeError("INSERT returned no primary key")
    return int(key[0])


def insert_new(conn: Connection, table: Table, **values: Any) -> bool:
    """Insert the row unless one with the same key is there (ON CONFLICT DO NOTHING); True
    when it was inserted. The way to claim something once across daemons: on PostgreSQL a
    second daemon's insert waits for the first one's transaction and then inserts nothing,
    where a look-then-insert would fail on the key."""
    return _insert_unless_there(conn, table, values) is not None


def insert_new_id(conn: Connection, table: Table, **values: Any) -> int | None:
    """As `insert_new`, for a table with an integer key: the new row's id, or None when a row
    with the same unique key was there (the caller reads that row's id)."""
    row = _insert_unless_there(conn, table, values)
    return None if row is None else int(row[0])


def _insert_unless_there(conn: Connection, table: Table, values: dict[str, Any]) -> Any:
    dialect = conn.dialect.name
    statement = _INSERTS_NEW.get((dialect, table))
    if statement is None:
        if dialect == "postgresql":
            from sqlalchemy.dialects import postgresql  # imported with its engine, not before

            statement = postgresql.insert(table)
        elif dialect == "sqlite":
            statement = sqlite.insert(table)
        else:
            raise RuntimeError(f"unsupported database {dialect}")
        # RETURNING, not rowcount: psycopg reports no row count for an INSERT (-1).
        statement = statement.on_conflict_do_nothing().returning(*table.primary_key.columns)
        _INSERTS_NEW[dialect, table] = statement
    return conn.execute(statement, values).first()


# `_insert_unless_there`'s statement for each database and table, built once (the values are
# given at execute): building a statement costs more than running most of them.
_INSERTS_NEW: dict[tuple[str, Table], Any] = {}


def next_number(conn: Connection, name: str) -> int:
    """Take the next value of the named gap-free counter, inside the caller's transaction.

    The UPDATE locks the counter's row until the transaction ends, so concurrent daemons take
    numbers one after the other, and a rolled-back transaction gives its number back."""
    for _ in range(2):
        row = conn.execute(_TAKE_NUMBER, {"counter": name}).first()
        if row is not None:
            return int(row[0])
        # A new counter: made at 0 once, whoever gets there first; then taken as any other.
        insert_new(conn, counters, name=name, value=0)
    raise RuntimeError(f"counter {name} could not be made")


def utcnow() -> datetime:
    return datetime.now(UTC)


metadata = MetaData()

# One row per distinct raw message (by sha256 of its bytes), whatever folder it was seen in.
messages = Table(
    "messages", metadata,
    Column("id", Integer, primary_key=True),
    Column("sha256", String(64), nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("mailbox", String(200), nullable=False),  # where it was first seen
    Column("header_message_id", Text, nullable=False, default=""),
    Column("subject", Text, nullable=False, default=""),
    Column("sender", Text, nullable=False, default=""),
    Column("stored_at", UTCDateTime, nullable=False),  # when vanthu fetched and stored it
    # When the agency's mail server accepted it (IMAP INTERNALDATE): the legal time of receipt.
    # NULL for rows of an earlier build and for mail that did not come from IMAP.
    Column("received_at", UTCDateTime),
    Column("state", String(20), nullable=False, index=True),
    Column("attempts", Integer, nullable=False, default=0),
    Column("last_error", Text),
    Column("kind", String(20)),
    Column("understanding", JSON),
    Column("decision", JSON),
    Column("case_id", ForeignKey("cases.id")),
    Column("duplicate_of", ForeignKey("register_entries.id")),
    Column("tags", JSON),
    # A rule's `move` action: the IMAP folder to move the mail to; cleared once moved.
    Column("move_to", String(500)),
    # The clerk's decision on a held mail: {"action": "release"|"drop", "by", "at", "reason"}.
    Column("clerk", JSON),
    # Why a held mail is held, by class (models.HoldKind values); NULL for rows of an earlier
    # build (`quarantine` reads them from the understanding).
    Column("hold_kinds", JSON),
    Column("updated_at", UTCDateTime, nullable=False),
    # Old mail taken into the register by `vanthu backlog import`: processed without any email
    # (no acknowledgement, forward, notice or reminder). NULL for every other mail.
    Column("quiet", Boolean),
)
Index("ix_messages_header_message_id", messages.c.header_message_id)

# Every (mailbox, folder, UIDVALIDITY, UID) a message was seen at. The IMAP identity of a mail.
locations = Table(
    "locations", metadata,
    Column("id", Integer, primary_key=True),
    Column("message_id", ForeignKey("messages.id"), nullable=False, index=True),
    Column("mailbox", String(200), nullable=False),
    Column("folder", String(500), nullable=False),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("uid", BigInteger, nullable=False),
    UniqueConstraint("mailbox", "folder", "uidvalidity", "uid"),
)

# The IMAP checkpoint of each watched folder: moves only in the transaction that stores mail.
checkpoints = Table(
    "checkpoints", metadata,
    Column("mailbox", String(200), primary_key=True),
    Column("folder", String(500), primary_key=True),
    Column("uidvalidity", BigInteger, nullable=False),
    Column("last_uid", BigInteger, nullable=False),
    Column("last_fetch_at", UTCDateTime),
    Column("last_error", Text),
    Column("last_error_at", UTCDateTime),
    # When vanthu first watched the folder on this database: with `[intake] start = "now"`,
    # mail the server received before it is old (archived). NULL on rows of an earlier build:
    # nothing is old there.
    Column("started_at", UTCDateTime),
    # The catch-up being fetched (for `vanthu status`): mails found by its SEARCH, mails stored
    # so far, when it began and when it last stored a batch.
    Column("backlog_total", BigInteger),
    Column("backlog_fetched", BigInteger),
    Column("backlog_since", UTCDateTime),
    Column("backlog_at", UTCDateTime),
)

# Named gap-free sequences: "incoming:2026" for số đến, "case:260531" for dossier codes.
counters = Table(
    "counters", metadata,
    Column("name", String(100), primary_key=True),
    Column("value", BigInteger, nullable=False),
)
# The statements run for every mail are built once with named placeholders (bindparam) and
# given their values at each execute: SQLAlchemy then skips building, coercing and keying
# them again, about 0.05-0.2 ms a statement (tests/bench_statements.py).
_TAKE_NUMBER = (update(counters).where(counters.c.name == bindparam("counter"))
                .values(value=counters.c.value + 1).returning(counters.c.value))

attachments = Table(
    "attachments", metadata,
    Column("id", Integer, primary_key=True),
    Column("message_id", ForeignKey("messages.id"), nullable=False, index=True),
    Column("name", Text, nullable=False),
    Column("content_type", String(200), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", String(64), nullable=False, index=True),
)

cases = Table(
    "cases", metadata,
    Column("id", Integer, primary_key=True),
    Column("code", String(100), nullable=False, unique=True),
    Column("opened_at", UTCDateTime, nullable=False),
    Column("status", String(40), nullable=False),
    Column("applicant_name", Text),
    Column("applicant_email", Text),
    Column("applicant_phone", Text),
    Column("procedure", Text),  # the catalogue's name
    Column("procedure_id", String(100)),
    Column("message_id", ForeignKey("messages.id")),
    Column("lead_department", String(100)),
    Column("deadline", Date),  # the appointment date (ngày hẹn trả kết quả)
    Column("paused_at", Date),  # supplements requested: the clock stands still since then
    Column("queue", String(100)),  # queue number and half-day slot, as on the receipt
    Column("apology_sent_at", UTCDateTime),  # the apology with a new date goes once
)

# Everything that happens to a case, appended, never changed.
case_events = Table(
    "case_events", metadata,
    Column("id", Integer, primary_key=True),
    Column("case_id", ForeignKey("cases.id"), nullable=False, index=True),
    Column("at", UTCDateTime, nullable=False),
    Column("event", String(40), nullable=False),
    Column("actor", String(200), nullable=False),
    Column("detail", JSON),
)

# Reminders sent, so that each goes once a day whoever runs the job.
reminders = Table(
    "reminders", metadata,
    Column("case_id", ForeignKey("cases.id"), primary_key=True),
    Column("day", Date, primary_key=True),
)

# Message-IDs of mail vanthu sent or registered for a case, so replies can be linked.
case_threads = Table(
    "case_threads", metadata,
    Column("header_message_id", String(500), primary_key=True),
    Column("case_id", ForeignKey("cases.id"), nullable=False),
)

# The incoming register (book "incoming") and the confidential one (book "confidential").
register_entries = Table(
    "register_entries", metadata,
    Column("id", Integer, primary_key=True),
    Column("book", String(20), nullable=False),
    Column("year", Integer, nullable=False),
    Column("number", Integer, nullable=False),
    Column("message_id", ForeignKey("messages.id"), nullable=False, unique=True),
    Column("received_at", UTCDateTime, nullable=False),
    # When vanthu wrote the entry: a mail the server took on Friday and vanthu fetched on
    # Monday is in Monday's digest. NULL on rows of an earlier build (read as received_at).
    Column("registered_at", UTCDateTime),
    Column("sender", Text, nullable=False),  # for people: "Name <address>"
    # The sender's address from the strict parse of From: the only one vanthu writes back to.
    Column("sender_email", Text),
    # How far the sender is proven (register.Trust): an entry never makes a better-proven copy
    # of the same document a duplicate. NULL (rows of an earlier build): unproven.
    Column("trust", Integer),
    Column("kind", String(20), nullable=False),
    Column("document", JSON),
    Column("doc_key", String(500), index=True),  # issuer|number|symbol|date, when all known
    Column("case_id", ForeignKey("cases.id")),
    Column("recipients", JSON),  # column 7: unit or person receiving
    Column("forwarded_at", UTCDateTime),  # column 8
    Column("lead_department", String(100)),  # assigned: chủ trì
    Column("cooperating", JSON),  # assigned: phối hợp
    Column("deadline", Date),  # thời hạn giải quyết
    Column("note", Text),
    # The leaders' directives by reply (ý kiến phân phối, chỉ đạo), oldest first: a list of
    # {"message_id", "by", "by_name", "role", "at" (ISO, UTC), "text", "read", "lead",
    # "cooperate", "deadline", "days", "problems", "sent_to"} (daemon/office/directives.py).
    Column("directives", JSON),
    UniqueConstraint("book", "year", "number"),
)

outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True),
    Column("header_message_id", String(500), nullable=False, unique=True),
    Column("message_id", ForeignKey("messages.id"), index=True),  # the mail that caused it
    Column("action", String(40), nullable=False),
    Column("recipients", JSON, nullable=False),
    # "address|YYYY-MM-DD" on automatic replies: counted per sender and per domain a day.
    Column("ack_key", String(400), index=True),
    # "domain|YYYY-MM-DD" of the same replies: the count per domain a day is an indexed
    # lookup; matching the end of ack_key read every reply ever queued (9 ms at 100,000).
    Column("ack_domain", String(300), index=True),
    Column("state", String(20), nullable=False, index=True),
    # A draft's makings (daemon/outbound/drafts.py): what its bytes are composed from.
    Column("draft", LargeBinary),
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    Column("last_error", Text),
    Column("created_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    # Recipients the server accepted, and those refused for good (address -> "code reply"):
    # a retry goes only to the others, and status reports the refusals.
    Column("delivered", JSON(none_as_null=True)),
    Column("refused", JSON(none_as_null=True)),
    # The daemon sending the row now (daemon.leases.Owner), until claim_expires_at: several
    # daemons on one database never send one row at the same time.
    Column("claimed_by", String(300)),
    Column("claim_expires_at", UTCDateTime),
    # SMTP transactions begun, counted durably before each one starts: a begun try with no
    # recorded outcome (a crash after the server's 250) may have delivered the email.
    Column("tries_begun", Integer),
    # The last entry of the sender's journal folded into the row (daemon/outbound/journal.py):
    # an entry folds once, however often folding is cut short.
    Column("journal_seq", Integer),
)

# The bytes of each email, written once, apart from its outbox row (none while it is a
# draft). The row is written again at every claim and outcome, and SQLite writes a row whole:
# bytes kept in it were written again each time (an email with a 1 MB attachment, a megabyte
# a claim), and reading any column after them walked every page of them.
outbox_bodies = Table(
    "outbox_bodies", metadata,
    Column("outbox_id", ForeignKey("outbox.id"), primary_key=True),
    Column("raw", LargeBinary, nullable=False),
)

# Named leases held by one daemon at a time: "mailbox:NAME" (who watches a mailbox) and any
# other work that must run in one place. A lease is held until expires_at unless renewed; a
# holder on this machine whose process is gone loses it at once (daemon.leases).
leases = Table(
    "leases", metadata,
    Column("name", String(300), primary_key=True),
    Column("owner", String(300), nullable=False),
    Column("expires_at", UTCDateTime, nullable=False),
    Column("acquired_at", UTCDateTime, nullable=False),
)


# The outgoing register (sổ văn bản đi): signed results sent, one row per PDF (by sha256).
outgoing_entries = Table(
    "outgoing_entries", metadata,
    Column("id", Integer, primary_key=True),
    Column("year", Integer, nullable=False),
    Column("number", Integer, nullable=False),
    Column("pdf_sha256", String(64), nullable=False, unique=True),
    Column("file_name", Text, nullable=False),
    Column("case_id", ForeignKey("cases.id")),
    Column("register_entry_id", ForeignKey("register_entries.id")),
    Column("document", JSON),  # số, ký hiệu; ngày; tên loại và trích yếu (read off the PDF)
    Column("signer", Text),  # người ký, from the signature
    Column("recipients", JSON, nullable=False),  # nơi nhận
    Column("sent_at", UTCDateTime, nullable=False),  # ngày chuyển (queued in the outbox)
    Column("outbox_message_id", String(500)),
    UniqueConstraint("year", "number"),
)

# The year-end closing of a register (khóa sổ): who closed which book of which year, when, and
# what it held then. One row per (book, year): closing again changes nothing. Entries numbered
# later (a mail of that year fetched after the closing) are marked as added after it.
register_closings = Table(
    "register_closings", metadata,
    Column("id", Integer, primary_key=True),
    Column("book", String(20)),
    Column("year", Integer),
    Column("closed_at", UTCDateTime),
    Column("closed_by", Text),
    Column("first_number", Integer),  # NULL for an empty book and for the case register
    Column("last_number", Integer),
    Column("count", Integer),
    UniqueConstraint("book", "year"),
)

# Official domains the clerk vouched for when releasing a held mail (`quarantine release
# --trust-sender`): later mail of the domain held only because it has no trusted authentication
# result goes on. A revoked row is kept (revoked_by/at); a domain has at most one row in force.
trusted_senders = Table(
    "trusted_senders", metadata,
    Column("id", Integer, primary_key=True),
    Column("domain", String(255), nullable=False, index=True),  # lower case, A-labels
    Column("address", Text, nullable=False),  # the released mail's sender
    Column("message_id", ForeignKey("messages.id")),  # the released mail
    Column("trusted_by", Text, nullable=False),
    Column("trusted_at", UTCDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("revoked_by", Text),
    Column("revoked_at", UTCDateTime),
)

# Result PDFs refused, so the digest can report them.
rejected_results = Table(
    "rejected_results", metadata,
    Column("id", Integer, primary_key=True),
    Column("file_name", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("rejected_at", UTCDateTime, nullable=False),
)

# One row per digest period sent: a period is claimed by inserting its key, once, by whichever
# daemon gets there first.
digests = Table(
    "digests", metadata,
    Column("period", String(40), primary_key=True),  # e.g. "2026-11-22T06:00"
    Column("sent_at", UTCDateTime, nullable=False),
)


# Faults of the system a daemon is living with right now (e.g. "pipeline": paused because a
# known-good sample mail fails too), so `status` and the digest can tell people; the row is
# removed when the fault clears.
health = Table(
    "health", metadata,
    Column("component", String(100), primary_key=True),
    Column("problem", Text, nullable=False),
    Column("since", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)


def report_fault(engine: Engine, component: str, problem: str) -> None:
    """Record (or refresh) a fault of `component`; keeps the time it started."""
    now = utcnow()
    refresh = (update(health).where(health.c.component == component)
               .values(problem=problem, updated_at=now))
    with engine.begin() as conn:
        if not conn.execute(refresh).rowcount and not insert_new(
                conn, health, component=component, problem=problem, since=now, updated_at=now):
            conn.execute(refresh)  # another daemon recorded it meanwhile


def clear_fault(engine: Engine, component: str) -> bool:
    """Forget the fault of `component`; True when there was one."""
    with engine.begin() as conn:
        return bool(conn.execute(delete(health).where(health.c.component == component))
                    .rowcount)


def _sqlite_setup(engine: Engine, busy_seconds: float) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver, which would BEGIN only at the first write.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a committed registration survives power loss, not only a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn: Any) -> None:
        # Writers take the write lock at BEGIN; readers (see `reading`) do not, so they never
        # wait for, or hold up, a writer (WAL gives them a consistent snapshot).
        if conn.get_execution_options().get("vanthu_read"):
            conn.exec_driver_sql("BEGIN")
        else:
            conn.exec_driver_sql("BEGIN IMMEDIATE")


@contextmanager
def reading(engine: Engine) -> Iterator[Connection]:
    """A connection for reads only: a plain (deferred) transaction, rolled back at the end."""
    with engine.connect() as conn:
        conn.execution_options(vanthu_read=True)
        try:
            yield conn
        finally:
            conn.rollback()


# SQLite's result codes for trouble of the database file, not of the statement: busy or locked
# past the busy timeout, an I/O error, a full disk, a read-only file, a file that cannot be
# opened. Any other code (a missing table, a constraint) is a bug and keeps its own exception.
_SQLITE_TRANSIENT = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR,
                               sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY,
                               sqlite3.SQLITE_CANTOPEN})


# PostgreSQL's SQLSTATEs of trouble that passes: another transaction won (serialization
# failure, deadlock, a lock not available), the server is shutting down, restarting or full of
# sessions, the admin cancelled the statement, the whole class 08 (the connection failed); and,
# as SQLite's SQLITE_FULL and SQLITE_IOERR are, the server's disk full (53100), out of memory
# (53200) or an I/O error (58030): the daemon pauses, reports the fault and tries again, instead
# of dying and being restarted into the same fault. Any other OperationalError (a program
# limit, a bug) passes unchanged.
_PG_TRANSIENT = frozenset({"40001", "40P01", "55P03", "57P01", "57P02", "57P03", "57014",
                           "53300", "53100", "53200", "58030"})


def _transient(err: exc.OperationalError) -> bool:
    if isinstance(err.orig, sqlite3.Error):
        code = getattr(err.orig, "sqlite_errorcode", None)
        return code is not None and code & 0xFF in _SQLITE_TRANSIENT
    if err.connection_invalidated:  # SQLAlchemy saw the connection lost
        return True
    # psycopg: no SQLSTATE when the client itself failed (no connection, the connection
    # dropped before the server said why).
    sqlstate = getattr(err.orig, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _PG_TRANSIENT


@contextmanager
def database_errors(doing: str) -> Iterator[None]:
    """The database's boundary: its operational trouble inside the block becomes a DatabaseError
    saying what was being done; any other exception passes unchanged. Used around the work of a
    loop (a fetch session, a drain), never around each query."""
    try:
        yield
    except exc.OperationalError as err:
        if not _transient(err):
            raise
        raise DatabaseError(f"{doing}: {err.orig}") from err
    except exc.TimeoutError as err:  # the connection pool had no connection to give
        raise DatabaseError(f"{doing}: {err}") from err


def make_engine(url: str, busy_seconds: float = 30.0) -> Engine:
    """An engine for `url`, set up for safe concurrent writers on SQLite, where a writer waits
    up to `busy_seconds` for another one to finish."""
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:":
            folder = Path(database).parent
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as err:
                raise DatabaseError(f"cannot create the database's folder {folder}: "
                                    f"{err.strerror or err}") from err
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": busy_seconds})
        _sqlite_setup(engine, busy_seconds)
        _BUSY_SECONDS[engine] = busy_seconds
        return engine
    return create_engine(url, pool_pre_ping=True)


_BUSY_SECONDS: weakref.WeakKeyDictionary[Engine, float] = weakref.WeakKeyDictionary()


def busy_seconds(engine: Engine) -> float:
    """How long a writer of `engine`'s SQLite database waits for another one (make_engine's
    `busy_seconds`): a file written beside it waits as long."""
    return _BUSY_SECONDS.get(engine, 30.0)


READER_BUSY_SECONDS = 3.0  # how long a read-only command waits for a lock before saying so


def make_reader(url: str, busy_seconds: float = READER_BUSY_SECONDS) -> Engine:
    """An engine for commands that only look (status, lists, exports): it never creates the
    database, never upgrades or writes it (SQLite's `query_only`), starts only deferred
    transactions (which never wait for the daemon's writers under WAL) and waits at most
    `busy_seconds` for a lock. A schema other than this vanthu's is a SchemaMismatch saying
    what to do (`vanthu db upgrade` when it is older)."""
    where = make_url(url).render_as_string(hide_password=True)
    if url.startswith("sqlite"):
        database = make_url(url).database
        if database and database != ":memory:" and not Path(database).exists():
            raise DatabaseError(f"no database at {database} yet: the daemon creates it when it "
                                "starts (or run `vanthu db upgrade`)")
        engine = create_engine(url, connect_args={"check_same_thread": False,
                                                  "timeout": busy_seconds})

        @event.listens_for(engine, "connect")
        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout={int(busy_seconds * 1000)}")
            cursor.execute("PRAGMA query_only=ON")
            cursor.close()

        @event.listens_for(engine, "begin")
        def on_begin(conn: Any) -> None:
            conn.exec_driver_sql("BEGIN")
    else:
        engine = create_engine(url, pool_pre_ping=True)
    try:
        with database_errors(f"database {where}"):
            _check_schema(engine, where)
    except BaseException:
        engine.dispose()  # nothing of a refused database stays open
        raise
    return engine


def _check_schema(engine: Engine, where: str) -> None:
    with engine.connect() as conn:
        problem = schema_problem(conn, where)
        conn.rollback()
    if problem:
        raise SchemaMismatch(problem)


class SchemaMismatch(DatabaseError):
    """The database's schema is not the one this vanthu's code was written for (older, newer,
    empty or damaged): nothing was changed; the message says what to do."""


def _where(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _tables(conn: Connection) -> set[str]:
    """The tables of the database, without Alembic's own and SQLite's internal ones."""
    return {name for name in inspect(conn).get_table_names()
            if name != "alembic_version" and not name.startswith("sqlite_")}


def _missing(conn: Connection, schema: dict[str, set[str]]) -> list[str]:
    """Tables and columns of `schema` ({table: columns}) that the database lacks."""
    present = inspect(conn)
    tables = _tables(conn)
    missing = [name for name in schema if name not in tables]
    for name, columns in schema.items():
        if name in tables:
            have = {column["name"] for column in present.get_columns(name)}
            missing += [f"{name}.{column}" for column in sorted(columns - have)]
    return missing


def _listed(names: list[str]) -> str:
    return ", ".join(names[:5]) + (" …" if len(names) > 5 else "")


def schema_problem(conn: Connection, where: str) -> str | None:
    """What keeps this vanthu from using the database, in one line naming what to do; None
    when its schema is the one the code expects. Only looks."""
    from daemon import __version__, migrations

    revision, head = migrations.current(conn), migrations.head()
    if revision is None and not _tables(conn):
        return (f"the database {where} is empty: the daemon creates its tables when it starts "
                "(or run `vanthu db upgrade`)")
    if revision is None:
        return (f"the database {where} was made by an older vanthu (before schema versions): "
                "back it up (`vanthu db backup PATH`), then run `vanthu db upgrade`")
    if not migrations.known(revision):
        return (f"the database {where} was made by a newer vanthu (schema {revision}; vanthu "
                f"{__version__} knows up to {head}): run that vanthu again (`vanthu db "
                "upgrade` never goes back)")
    if revision != head:
        return (f"the database {where} has schema {revision}, older than this vanthu's {head}: "
                "back it up (`vanthu db backup PATH`), then run `vanthu db upgrade`")
    expected = {name: {column.name for column in table.columns}
                for name, table in metadata.tables.items()}
    if missing := _missing(conn, expected):
        return (f"the database {where} is at schema {head} but is missing {_listed(missing)}: "
                "changed by hand or damaged; `vanthu db upgrade` does not rebuild it, restore "
                "a backup")
    return None


# Taken by whoever looks at or changes the schema on PostgreSQL, for its transaction: two
# daemons starting on one new database create its tables once.
_SCHEMA_LOCK = 0x76616E746875  # "vanthu"


def _sqlite_foreign_keys(conn: Connection, on: bool) -> bool:
    """Switch SQLite's foreign keys on or off; whether they were on. A pragma SQLite ignores
    inside a transaction: set on the driver's connection, outside one."""
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    was = bool(driver.execute("PRAGMA foreign_keys").fetchone()[0])
    driver.execute(f"PRAGMA foreign_keys={'ON' if on else 'OFF'}")
    return was


@contextmanager
def _schema_transaction(engine: Engine) -> Iterator[Connection]:
    """One transaction to look at and change the schema, one process at a time (SQLite's
    write lock from BEGIN IMMEDIATE, a PostgreSQL advisory lock). On SQLite foreign keys are off
    meanwhile, so a migration may rebuild a table the others point to (SQLite's own procedure
    for schema changes); they are checked before the commit."""
    with engine.connect() as conn:
        on_sqlite = conn.dialect.name == "sqlite"
        enforced = on_sqlite and _sqlite_foreign_keys(conn, False)
        try:
            with conn.begin():
                if not on_sqlite:
                    conn.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
                yield conn
                if on_sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check")
                               .first()):
                    raise RuntimeError(f"the migration broke a foreign key of {broken[0]}")
        finally:
            if enforced:
                _sqlite_foreign_keys(conn, True)


def upgrade(engine: Engine) -> tuple[str | None, str | None]:
    """Bring the database to the schema of this vanthu: a new one is created, one made by an
    earlier vanthu is migrated in place, every row kept (one made before schema versions is
    first recognised as the first version). One transaction: a failure changes nothing. A
    database of a newer vanthu is refused (SchemaMismatch); one that cannot be opened or
    written is a DatabaseError. Returns the revisions before (None: new, or made before
    schema versions) and after."""
    from daemon import migrations

    where = _where(engine)
    with database_errors(f"database {where}"), _schema_transaction(engine) as conn:
        before = migrations.current(conn)
        tables = _tables(conn)
        if before is None and not tables:
            # A new database: the schema as the code declares it, recorded at the newest
            # revision (Alembic's recipe; 2-3 times faster than running every revision, and
            # tests/test_migrations.py proves the revisions build the same schema).
            metadata.create_all(conn)
            migrations.stamp(conn, "head")
        elif before is None:
            _adopt(conn, where)
        elif not migrations.known(before):
            raise SchemaMismatch(schema_problem(conn, where) or before)
        if migrations.current(conn) != migrations.head():
            migrations.upgrade(conn)
        after = migrations.current(conn)
    if after != before:
        _log.info("db.upgraded", extra={"database": where, "from": before, "to": after})
    return before, after


def prepare(engine: Engine) -> None:
    """The database as the daemon and the commands that write need it: a new (empty) one is
    created at this vanthu's schema; any other must already be at it, else SchemaMismatch
    naming `vanthu db upgrade` (an upgrade is the administrator's step, after a backup).

    SQLite answers "busy" at once, without waiting, where waiting could deadlock; daemons
    starting together on a new file meet such moments while one of them creates the schema.
    Such an answer is asked again, until `busy_seconds` have passed since the first try."""
    where = _where(engine)
    deadline = time.monotonic() + busy_seconds(engine)
    while True:
        try:
            _prepare(engine, where)
            return
        except DatabaseError as err:
            if not _sqlite_busy(err) or time.monotonic() >= deadline:
                raise
        time.sleep(PREPARE_RETRY_SECONDS)


PREPARE_RETRY_SECONDS = 0.05


def _sqlite_busy(err: DatabaseError) -> bool:
    """Whether `err` is SQLite's "busy" (another connection holds the lock it needs)."""
    cause = err.__cause__
    orig = cause.orig if isinstance(cause, exc.OperationalError) else None
    code = getattr(orig, "sqlite_errorcode", None)
    return isinstance(orig, sqlite3.Error) and code is not None \
        and code & 0xFF == sqlite3.SQLITE_BUSY


def _prepare(engine: Engine, where: str) -> None:
    with database_errors(f"database {where}"):
        with reading(engine) as conn:
            empty = not _tables(conn)
            problem = None if empty else schema_problem(conn, where)
        if empty:
            upgrade(engine)  # looks again under the lock: another daemon may have made it
        elif problem:
            raise SchemaMismatch(problem)


def _base_schema() -> dict[str, set[str]]:
    """{table: columns} of the first schema version, made by its revision on a scratch SQLite
    database (so the revision is the one description of that schema)."""
    from sqlalchemy.pool import StaticPool

    from daemon import migrations

    scratch = create_engine("sqlite://", poolclass=StaticPool)
    try:
        with scratch.begin() as conn:
            migrations.upgrade(conn, migrations.BASE)
            present = inspect(conn)
            return {name: {column["name"] for column in present.get_columns(name)}
                    for name in _tables(conn)}
    finally:
        scratch.dispose()


def _adopt(conn: Connection, where: str) -> None:
    """A database made before schema versions: what that release's upgrade did (create missing
    tables, add missing nullable columns) brings it to the first version, which is then
    recorded; tables or columns no release had are refused."""
    from daemon import migrations

    base = _base_schema()
    tables = _tables(conn)
    present = inspect(conn)
    strange = sorted(tables - set(base))
    strange += [f"{name}.{column['name']}" for name in sorted(tables & set(base))
                for column in present.get_columns(name) if column["name"] not in base[name]]
    if strange:
        raise SchemaMismatch(f"the database {where} has no schema version and tables or "
                             f"columns vanthu never made ({_listed(strange)}): not upgraded")
    for name in _missing(conn, base):
        _add_legacy(conn, where, name, base)
    migrations.stamp(conn, migrations.BASE)


def _add_legacy(conn: Connection, where: str, missing: str, base: dict[str, set[str]]) -> None:
    """Add a table or nullable column of the first version to a database made before it."""
    name, _, column_name = missing.partition(".")
    table = metadata.tables.get(name)
    known = {column.name for column in table.columns} if table is not None else set()
    # A table is made as this vanthu has it: only while that is still the first version's.
    # A column of the first version is added alone (later revisions add theirs).
    if table is None or (known != base[name] if not column_name
                         else column_name not in base[name] or column_name not in known):
        raise SchemaMismatch(f"the database {where} has no schema version and lacks {missing}, "
                             "which this vanthu cannot add: not upgraded")
    if not column_name:
        table.create(conn)
        return
    column = table.columns[column_name]
    if not column.nullable or column.primary_key:
        raise SchemaMismatch(f"the database {where} has no schema version and lacks the "
                             f"required column {missing}: not upgraded")
    kind = column.type.compile(dialect=conn.dialect)
    conn.exec_driver_sql(f'ALTER TABLE "{name}" ADD COLUMN "{column_name}" {kind}')


class Turns:
    """Who writes next on SQLite, where one writer works at a time and a writer that finds
    the lock taken sleeps and polls: a pipeline committing group after group would keep the
    fetch threads waiting for seconds. A fetch thread says when it wants to write
    (`urgent`); the pipeline then ends its transaction at the next mail and lets it write
    first (`wait_clear`). Storing is the durable part of intake: it goes first.

    The same goes for the interpreter's time: while a fetch thread stores a backlog of more
    than one batch (`backlog`), the daemon's pipeline waits (`catching_up`, for a bounded
    time: daemon.service), so the backlog is stored at the wire's pace, then processed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = {"urgent": 0, "backlog": 0}

    @contextmanager
    def _during(self, what: str) -> Iterator[None]:
        with self._cond:
            self._count[what] += 1
        try:
            yield
        finally:
            with self._cond:
                self._count[what] -= 1
                self._cond.notify_all()

    def backlog(self) -> AbstractContextManager[None]:
        """While a fetch thread stores a backlog."""
        return self._during("backlog")

    def catching_up(self) -> bool:
        return self._count["backlog"] > 0

    def urgent(self) -> AbstractContextManager[None]:
        """While a writer other than the pipeline wants SQLite's write lock."""
        return self._during("urgent")

    def wanted(self) -> bool:
        return self._count["urgent"] > 0

    def wait_clear(self, timeout: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._count["urgent"] == 0, timeout)
