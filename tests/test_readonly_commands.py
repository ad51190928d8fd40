"""Commands that only look (status, lists, exports) never write, create or upgrade the
database, and a database held by another process is answered within seconds, not waited out."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from daemon.db import make_engine, upgrade
from tests.test_errors import _vanthu


def _database(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "vanthu.db"
    path.parent.mkdir(parents=True)
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    engine.dispose()
    return path


def _hold(path: Path, script: str) -> subprocess.Popen[str]:
    """Another process that opens the database, runs `script` and keeps its transaction open
    until killed; returns once it holds its lock."""
    holder = subprocess.Popen(
        [sys.executable, "-c", f"""
import sqlite3, sys, time
db = sqlite3.connect({str(path)!r}, isolation_level=None)
{script}
print("held", flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert holder.stdout is not None
    if (line := holder.stdout.readline()).strip() != "held":
        holder.kill()
        output = line + holder.stdout.read()
        _release(holder)
        raise AssertionError(f"the lock holder failed:\n{output}")
    return holder


def _release(holder: subprocess.Popen[str]) -> None:
    holder.kill()
    holder.wait()
    if holder.stdout is not None:
        holder.stdout.close()


def test_status_answers_while_the_daemon_holds_a_write_transaction(tmp_path: Path) -> None:
    """A writer in the middle of a long transaction (WAL, as the daemon runs): status reads
    its snapshot and answers; it never waits for the writer's lock to upgrade the schema."""
    path = _database(tmp_path)
    holder = _hold(path, "db.execute('BEGIN IMMEDIATE'); "
                         "db.execute(\"INSERT INTO health (component, problem, since, updated_at) "
                         "VALUES ('x', 'y', '2026-01-01 00:00:00', '2026-01-01 00:00:00')\")")
    try:
        done = _vanthu(tmp_path, "status")
    finally:
        _release(holder)
    assert "locked" not in done.stderr
    assert "Traceback" not in done.stderr
    # The whole report came out (its mailbox and outgoing-mail lines), not only an error.
    assert "Hộp thư:" in done.stdout and "Thư gửi đi:" in done.stdout, done.stdout


def test_a_database_locked_for_reading_is_reported_within_seconds(tmp_path: Path) -> None:
    """An exclusive lock that even readers must wait for (a rollback-journal database in the
    middle of a write): status says the database is locked, in one line, after its short
    wait (3 s), instead of blocking for the 30 s a writer would wait."""
    path = _database(tmp_path)
    holder = _hold(path, "db.execute('PRAGMA journal_mode=DELETE'); "
                         "db.execute('BEGIN EXCLUSIVE')")
    try:
        started = time.monotonic()
        done = _vanthu(tmp_path, "status")
        took = time.monotonic() - started
    finally:
        _release(holder)
    assert done.returncode == 1
    (line,) = done.stderr.splitlines()
    assert line.startswith("vanthu status: database ") and "locked" in line, line
    assert took < 25, f"status waited {took:.0f} s"


def test_an_older_schema_is_named_and_left_as_it_is(tmp_path: Path) -> None:
    """A database missing a table of this build: status names it and the upgrade command,
    and creates nothing (only `vanthu db upgrade` and the daemon change the schema)."""
    path = _database(tmp_path)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE health")

    done = _vanthu(tmp_path, "status")

    assert done.returncode == 1
    assert "missing health" in done.stderr and "vanthu db upgrade" in done.stderr
    with sqlite3.connect(path) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert "health" not in tables


def test_read_only_commands_work_on_a_read_only_database(tmp_path: Path) -> None:
    """The database file and its folder made read-only (a backup mounted for inspection):
    status, the quarantine list and the register list still answer."""
    path = _database(tmp_path)
    for mode_target in (path, path.parent):
        mode_target.chmod(0o555 if mode_target.is_dir() else 0o444)
    try:
        for command in (["quarantine", "list"], ["register", "list"]):
            done = _vanthu(tmp_path, *command)
            assert done.returncode == 0, (command, done.stderr)
    finally:
        path.parent.chmod(0o755)
        path.chmod(0o644)
