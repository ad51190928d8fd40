"""The sender's journal on SQLite: each SMTP try's count and outcome, made durable without
the database's write lock.

SQLite has one writer at a time. Counting each try in the database before its DATA (see
daemon/outbound/send.py) took that lock once per email: the pipeline's recording transaction
had to end for it at every email, and under a backlog it committed one or two mails at a time
instead of groups. So on SQLite the sender writes its counts and outcomes to a file of its
own beside the database (`vanthu.db` → `vanthu.db-sends`, SQLite too, fsynced at each commit)
and folds them into the outbox with its next claim (every ten emails) and at the end of each
drain, in the transaction it takes anyway.

Each entry has a sequence number that never goes back (AUTOINCREMENT), and every outbox row
keeps the number of the last entry folded into it (`outbox.journal_seq`): an entry folds once,
whoever folds it and however often a fold is cut short (killed after the database's commit,
before the entries are forgotten). A journal lost or replaced (deleted by hand, a database
restored beside an older one) starts its numbers after the highest one folded, so its new
entries are never taken for old ones.

The journal is empty at rest: what is in it after a crash is folded by the next drain, before
anything is claimed. PostgreSQL takes many writers at once: there the counts go straight into
the outbox, as before.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from daemon.db import busy_seconds
from daemon.errors import DatabaseError

_SCHEMA = """CREATE TABLE IF NOT EXISTS tries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    row_id INTEGER NOT NULL,
    owner TEXT NOT NULL,
    outcome TEXT
)"""


@dataclass(frozen=True)
class Entry:
    """A try begun on outbox row `row_id` (before its DATA: `outcome` None), or how one
    ended (`outcome`: the fields of send.Attempt), by the sender `owner` (whose claim the
    outcome ends; daemon.leases.Owner)."""

    seq: int
    row_id: int
    owner: str
    outcome: dict[str, Any] | None


def journal_path(engine: Engine) -> Path | None:
    """Where the journal of `engine`'s database is: beside its SQLite file; None for
    PostgreSQL and an in-memory database (the counts go into the outbox)."""
    if engine.dialect.name != "sqlite":
        return None
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database)
    return path.with_name(path.name + "-sends")


class SendJournal:
    """The journal file at `path`, opened at its first use; one connection, one thread at a
    time; a writer waits up to `busy_seconds` for another. Every sqlite3 error is a
    DatabaseError naming the file: the sender then sends nothing more until it can write
    again."""

    def __init__(self, path: Path, busy_seconds: float = 30.0) -> None:
        self.path = path
        self.busy_seconds = busy_seconds
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    @classmethod
    def beside(cls, engine: Engine) -> SendJournal | None:
        path = journal_path(engine)
        return cls(path, busy_seconds(engine)) if path is not None else None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=self.busy_seconds, isolation_level=None,
                                   check_same_thread=False)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.execute(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _run(self, doing: str, work: Any) -> Any:
        with self._lock:
            try:
                return work(self._connect())
            except sqlite3.Error as err:
                raise DatabaseError(f"the sender's journal {self.path}: {doing}: {err}") from err

    def _write(self, doing: str, work: Any) -> None:
        """`work` in one write transaction, committed (fsynced) or rolled back."""
        def transaction(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                work(conn)
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

        self._run(doing, transaction)

    def write(self, owner: str, outcomes: list[tuple[int, dict[str, Any]]],
              count: int | None) -> None:
        """In one durable commit, by the sender `owner`: each (row id, outcome), then, with
        `count`, a try begun on that row."""
        rows: list[tuple[int, str, str | None]] = [(row_id, owner, json.dumps(outcome))
                                                   for row_id, outcome in outcomes]
        if count is not None:
            rows.append((count, owner, None))
        if rows:
            self._write("write", lambda conn: conn.executemany(
                "INSERT INTO tries (row_id, owner, outcome) VALUES (?, ?, ?)", rows))

    def entries(self) -> list[Entry]:
        """Every entry not forgotten yet, oldest first."""
        def work(conn: sqlite3.Connection) -> list[Entry]:
            return [Entry(seq, row_id, owner,
                          json.loads(outcome) if outcome is not None else None)
                    for seq, row_id, owner, outcome in conn.execute(
                        "SELECT seq, row_id, owner, outcome FROM tries ORDER BY seq")]
        return list(self._run("read", work))

    def forget(self, upto: int) -> None:
        """Drop the entries up to number `upto`: folded into the outbox and committed."""
        self._run("forget", lambda conn: conn.execute(
            "DELETE FROM tries WHERE seq <= ?", (upto,)))

    def start_after(self, seq: int) -> None:
        """New entries are numbered after `seq` (the highest number folded into the outbox)."""
        def work(conn: sqlite3.Connection) -> None:
            last = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'tries'"
                                ).fetchone()
            if last is None:
                conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('tries', ?)",
                             (seq,))
            elif last[0] < seq:
                conn.execute("UPDATE sqlite_sequence SET seq = ? WHERE name = 'tries'", (seq,))

        self._write("number", work)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
