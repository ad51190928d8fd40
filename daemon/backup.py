"""`vanthu db backup PATH`: a consistent copy of the SQLite database while the daemon runs.

SQLite's online backup API copies the pages of one snapshot (a reader under WAL: the daemon's
writers go on meanwhile), into a new file next to PATH that is then checked, synced and linked
to PATH, so PATH is either absent or a whole copy, and an existing file is never overwritten.
The copy is a single file (rollback journal, not WAL), readable by any sqlite3 and by vanthu's
read-only commands. PostgreSQL is backed up with its own tools (pg_dump): see the README.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from contextlib import closing, suppress
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import make_url

from daemon.errors import DatabaseError

PG_DUMP_ADVICE = """\
vanthu db backup copies SQLite databases only; back PostgreSQL up with its own tools, e.g.:
  pg_dump --format=custom --file=/var/backups/vanthu/vanthu-$(date +%F).dump \
          'postgresql://vanthu@HOST/vanthu'
  restore into a new, empty database: pg_restore --dbname='postgresql://vanthu@HOST/NEW' FILE
pg_dump takes a consistent snapshot while the daemons run; see the README, "Backups"."""


@dataclass(frozen=True)
class Copy:
    """What was written: the copy's path, its size and what it holds."""

    path: Path
    size: int
    revision: str | None
    entries: int  # rows of the registers (incoming and confidential)


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL; None for another database or an in-memory one."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return None if parsed.database == ":memory:" else Path(parsed.database)


def backup(source: Path, target: Path, busy_seconds: float = 30.0) -> Copy:
    """Copy the database at `source` to the new file `target` (FileExistsError if there is
    one); a database that cannot be read is a DatabaseError."""
    if target.exists() or target.is_symlink():
        raise FileExistsError(errno.EEXIST, "the file exists; a backup never overwrites",
                              str(target))
    if not source.exists():
        raise DatabaseError(f"no database at {source}")
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        _copy(source, partial, busy_seconds)
        copy = _check(partial)
        _sync(partial)
        os.link(partial, target)  # fails, never replaces, if the file appeared meanwhile
        _sync(target.parent)
    finally:
        with suppress(FileNotFoundError):
            partial.unlink()
    return Copy(target, target.stat().st_size, copy[0], copy[1])


def _copy(source: Path, partial: Path, busy_seconds: float) -> None:
    try:
        with closing(sqlite3.connect(f"file:{source}?mode=ro", uri=True,
                                     timeout=busy_seconds)) as src, \
                closing(sqlite3.connect(partial)) as dst:
            src.backup(dst)  # one step: one snapshot of the source
            dst.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
    except sqlite3.Error as err:
        raise DatabaseError(f"backup of {source}: {err}") from err


def _check(partial: Path) -> tuple[str | None, int]:
    """The copy's own integrity check, its schema revision and how many register entries it
    holds; a damaged copy is a DatabaseError."""
    with closing(sqlite3.connect(f"file:{partial}?mode=ro", uri=True)) as db:
        verdict = db.execute("PRAGMA quick_check").fetchone()[0]
        if verdict != "ok":
            raise DatabaseError(f"the copy failed SQLite's check: {verdict}")
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        revision = (db.execute("SELECT version_num FROM alembic_version").fetchone() or [None])[0] \
            if "alembic_version" in tables else None
        entries = db.execute("SELECT count(*) FROM register_entries").fetchone()[0] \
            if "register_entries" in tables else 0
    return revision, int(entries)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
