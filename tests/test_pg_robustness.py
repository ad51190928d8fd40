"""Robustness of daemons sharing PostgreSQL (issue 16, item 3): the same mail stored by two
daemons at once, control characters in mailbox and folder names, and which of PostgreSQL's
errors the loops treat as passing trouble (retried) and which as faults (kept as they are).

The errors are provoked on the test's own PostgreSQL server: a backend terminated, a
serialization conflict, a deadlock, a lock refused, an index row too large.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Connection, Engine, event, exc, select, text

from daemon import config
from daemon.db import database_errors, locations, make_engine, messages
from daemon.errors import ConfigError, DatabaseError
from daemon.intake.store import Fetched, MailStore, store_batch
from tests.faults.rig import wait_for
from tests.pg import Postgres
from tests.servers import free_port

MAILBOXES = ["Sở Tư pháp", "Văn phòng UBND tỉnh", "Phòng Tài nguyên — Môi trường",
             "Ban Quản lý dự án"]


def _mail(n: int) -> bytes:
    msg = EmailMessage()
    msg["From"] = "Nguyễn Văn Ánh <anh@example.vn>"
    msg["To"] = "vanthu@soxd.gov.vn, tiepnhan@ubnd.gov.vn"
    msg["Subject"] = f"Đề nghị cấp giấy phép xây dựng số {n}"
    msg["Message-ID"] = f"<same-{n}@example.vn>"
    msg.set_content(f"Kính gửi Sở Xây dựng, hồ sơ {n}.")
    return msg.as_bytes()


def _rows(engine: Engine) -> tuple[list[str], list[tuple[int, str, int]]]:
    with engine.connect() as conn:
        shas = [str(s) for s in conn.scalars(select(messages.c.sha256))]
        where = conn.execute(select(locations.c.message_id, locations.c.mailbox,
                                    locations.c.uid)).all()
    return shas, [(int(m), str(b), int(u)) for m, b, u in where]


def _waiting_on_a_lock(engine: Engine) -> bool:
    """Whether another session of this database waits for a lock (PostgreSQL)."""
    with engine.connect() as conn:
        return bool(conn.scalar(text(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'")))


# --- the same mail in two mailboxes, stored by two daemons at once -------------------------


@pytest.mark.db
def test_a_mail_stored_by_two_daemons_at_once_makes_one_row(database: Engine, store: str,
                                                            tmp_path: Path) -> None:
    """Daemon A has inserted the mail's row and not committed yet when daemon B stores the same
    mail from another mailbox: B waits, then finds A's row; both succeed, one row, both
    locations. (A look-then-insert failed B on the unique sha256.)"""
    url = database.url.render_as_string(hide_password=False)
    first, second = make_engine(url), make_engine(url)
    mail_store = MailStore(tmp_path / "data")
    raw = _mail(1)
    inserted, release = threading.Event(), threading.Event()

    def hold_commit(conn: Connection) -> None:  # A's transaction stays open with its row
        inserted.set()
        release.wait(60)

    event.listen(first, "commit", hold_commit)
    results: dict[str, Any] = {}

    def run(name: str, engine: Engine, mailbox: str) -> None:
        try:
            results[name] = store_batch(engine, mail_store, mailbox=mailbox, folder="INBOX",
                                        uidvalidity=7, batch=[Fetched(uid=3, raw=raw)])
        except BaseException as err:  # handed back to the test
            results[name] = err

    a = threading.Thread(target=run, args=("a", first, MAILBOXES[0]))
    a.start()
    assert inserted.wait(60)
    b = threading.Thread(target=run, args=("b", second, MAILBOXES[1]))
    b.start()
    if store == "postgresql":  # B's insert waits for A's uncommitted row
        wait_for(lambda: _waiting_on_a_lock(database), 60)
    release.set()
    a.join(60)
    b.join(60)
    first.dispose()
    second.dispose()

    assert not isinstance(results["a"], BaseException), results["a"]
    assert not isinstance(results["b"], BaseException), results["b"]
    assert len(results["a"]) == 1 and results["b"] == []
    shas, where = _rows(database)
    assert len(shas) == 1
    assert sorted(where) == sorted([(results["a"][0], MAILBOXES[0], 3),
                                    (results["a"][0], MAILBOXES[1], 3)])
    assert mail_store.read(shas[0]) == raw


@pytest.mark.db
def test_daemons_storing_the_same_batch_together_never_fail(database: Engine,
                                                            tmp_path: Path) -> None:
    """Four daemons (threads with their own engines, one mail store as on a shared disk)
    released together store the same three mails from four mailboxes: no error, one row per
    mail, each reported new by exactly one daemon, every location recorded."""
    url = database.url.render_as_string(hide_password=False)
    engines = [make_engine(url) for _ in MAILBOXES]
    mail_store = MailStore(tmp_path / "data")
    batch = [Fetched(uid=10 + n, raw=_mail(n)) for n in range(3)]
    gate = threading.Barrier(len(MAILBOXES))
    results: list[Any] = [None] * len(MAILBOXES)

    def run(i: int) -> None:
        gate.wait()
        try:
            results[i] = store_batch(engines[i], mail_store, mailbox=MAILBOXES[i],
                                     folder="Hộp thư đến", uidvalidity=1, batch=batch)
        except BaseException as err:  # handed back to the test
            results[i] = err

    pool = [threading.Thread(target=run, args=(i,)) for i in range(len(MAILBOXES))]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(120)
    for engine in engines:
        engine.dispose()

    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    new = sorted(pk for ids in results for pk in ids)
    shas, where = _rows(database)
    assert len(shas) == 3 and len(new) == 3
    assert sorted(where) == sorted((pk, box, 10 + n) for n, pk in enumerate(new)
                                   for box in MAILBOXES)


# --- control characters in mailbox and folder names ---------------------------------------


def _toml_string(value: str) -> str:
    """A TOML basic string holding `value` exactly (control characters escaped)."""
    out = []
    for char in value:
        if char in '"\\' or ord(char) < 0x20 or 0x7F <= ord(char) <= 0x9F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


CONFIG = """
[agency]
name = "Sở Xây dựng"
code = "000.00.22.H56"

[smtp]
host = "smtp.example.gov.vn"
username = "vanthu"
password = "q"
from = "vanthu@example.gov.vn"

[[mailboxes]]
host = "imap.example.gov.vn"
username = "vanthu"
password = "p"
"""


def _mailbox_config(tmp_path: Path, key: str, value: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(f"{CONFIG}{key} = {value}\n", encoding="utf-8")
    return path


VIETNAMESE = st.text(st.sampled_from("aăâbcdđeêghiklmnoôơpqrstuưvxyàảãáạằẳẵắặầẩẫấậđèẻẽéẹ"
                                     "ềểễếệìỉĩíịòỏõóọồổỗốộờởỡớợùủũúụừửữứựỳỷỹýỵ "
                                     "ĐƯƠÂÊÔĂÁÀẢÃẠ/.-_"), min_size=1, max_size=30)
CONTROL = st.sampled_from([chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]])


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(before=VIETNAMESE, control=CONTROL, after=st.text(max_size=8),
       where=st.sampled_from(["name", "folders", "after"]))
def test_control_characters_in_mailbox_and_folder_names_are_refused(
        tmp_path: Path, before: str, control: str, after: str, where: str) -> None:
    """A mailbox or folder name (also the folder of after = "move:…") holding any C0 or C1
    control character is refused at load in one line naming the key; the same name without
    it loads and is kept as written."""
    name = before + control + after
    values = {"name": _toml_string(name), "folders": f'["INBOX", {_toml_string(name)}]',
              "after": _toml_string("move:" + name)}

    with pytest.raises(ConfigError) as caught:
        config.load(_mailbox_config(tmp_path, where, values[where]))

    problems = caught.value.problems
    assert len(problems) == 1
    line = str(problems[0])
    assert f"mailboxes[0].{where}" in line
    assert "\n" not in line and "\r" not in line and control not in line

    clean = (before + after).translate({c: None for c in [*range(0x20), *range(0x7F, 0xA0),
                                                         0x2028, 0x2029]})
    if not clean.strip():
        return
    values = {"name": _toml_string(clean), "folders": f'["INBOX", {_toml_string(clean)}]',
              "after": _toml_string("move:" + clean)}
    box = config.load(_mailbox_config(tmp_path, where, values[where])).mailboxes[0]
    kept = {"name": box.name, "folders": box.folders[-1], "after": box.after[5:]}
    assert kept[where] == clean


# --- which PostgreSQL errors are passing trouble -------------------------------------------


@pytest.fixture()
def pg(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE hồ_sơ (id int PRIMARY KEY, tên text)"))
        conn.execute(text("INSERT INTO hồ_sơ VALUES (1, 'Nguyễn Văn Ánh'), (2, 'Trần Thị Bé')"))
    yield engine
    engine.dispose()


def _sqlstate(err: BaseException) -> str | None:
    assert isinstance(err, DatabaseError | exc.OperationalError), repr(err)
    cause = err.__cause__ if isinstance(err, DatabaseError) else err
    assert isinstance(cause, exc.DBAPIError)
    return getattr(cause.orig, "sqlstate", None)


def test_a_terminated_backend_is_passing_trouble(pg: Engine, postgres: Postgres) -> None:
    """The admin (or a failover) ends vanthu's session: the next statement is a DatabaseError
    for the loop to retry, and the pool's next connection works."""
    with pytest.raises(DatabaseError, match="lost connection") as caught, \
            database_errors("lost connection"), pg.connect() as conn:
        pid = conn.scalar(text("SELECT pg_backend_pid()"))
        postgres.execute(f"SELECT pg_terminate_backend({int(pid)})")
        wait_for(lambda: not postgres.execute(
            f"SELECT 1 FROM pg_stat_activity WHERE pid = {int(pid)}"), 60)
        conn.execute(text("SELECT 1"))
    assert _sqlstate(caught.value) in (None, "57P01")
    with pg.connect() as conn:
        assert conn.scalar(text("SELECT count(*) FROM hồ_sơ")) == 2


def test_a_serialization_failure_is_passing_trouble(pg: Engine) -> None:
    """A repeatable-read transaction updating a row another one changed since it began: 40001,
    a DatabaseError (the next try reads the new row)."""
    with pytest.raises(DatabaseError, match="serialization") as caught, \
            database_errors("serialization"), \
            pg.connect().execution_options(isolation_level="REPEATABLE READ") as conn:
        conn.execute(text("SELECT tên FROM hồ_sơ WHERE id = 1")).all()
        with pg.begin() as other:
            other.execute(text("UPDATE hồ_sơ SET tên = 'Lê Văn Cường' WHERE id = 1"))
        conn.execute(text("UPDATE hồ_sơ SET tên = 'Phạm Thị Dung' WHERE id = 1"))
    assert _sqlstate(caught.value) == "40001"


def test_a_deadlock_is_passing_trouble(pg: Engine) -> None:
    """Two transactions locking two rows in opposite orders: PostgreSQL breaks the deadlock by
    failing one with 40P01, which is a DatabaseError; the other commits."""
    gate = threading.Barrier(2)
    results: list[BaseException | None] = [None, None]

    def run(i: int) -> None:
        first, second = (1, 2) if i == 0 else (2, 1)
        try:
            with database_errors("deadlock"), pg.begin() as conn:
                conn.execute(text("SET LOCAL deadlock_timeout = '100ms'"))
                conn.execute(text(f"UPDATE hồ_sơ SET tên = tên WHERE id = {first}"))
                gate.wait(60)
                conn.execute(text(f"UPDATE hồ_sơ SET tên = tên WHERE id = {second}"))
        except BaseException as err:  # handed back to the test
            results[i] = err

    pool = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)

    failed = [r for r in results if r is not None]
    assert len(failed) == 1, results
    assert isinstance(failed[0], DatabaseError) and _sqlstate(failed[0]) == "40P01"


def test_a_lock_not_available_is_passing_trouble(pg: Engine) -> None:
    """FOR UPDATE NOWAIT on a row another transaction holds: 55P03, a DatabaseError."""
    with pg.begin() as holder:
        holder.execute(text("SELECT * FROM hồ_sơ WHERE id = 1 FOR UPDATE"))
        with pytest.raises(DatabaseError) as caught, database_errors("nowait"), \
                pg.begin() as conn:
            conn.execute(text("SELECT * FROM hồ_sơ WHERE id = 1 FOR UPDATE NOWAIT"))
    assert _sqlstate(caught.value) == "55P03"


def test_a_server_that_is_not_there_is_passing_trouble() -> None:
    """No server listening (down, restarting): a DatabaseError, retried."""
    engine = make_engine(f"postgresql+psycopg://vanthu:vanthu@127.0.0.1:{free_port()}/vanthu")
    try:
        with pytest.raises(DatabaseError, match="connect"), database_errors("connect"), \
                engine.connect():
            pass
    finally:
        engine.dispose()


def test_a_limit_of_the_server_is_a_fault_kept_as_it_is(pg: Engine) -> None:
    """An index row too large for PostgreSQL (54000, an OperationalError) is no passing
    trouble: retrying gives the same; it leaves the boundary as it is, as a bug would."""
    with pg.begin() as conn:
        conn.execute(text("CREATE TABLE khóa (v text PRIMARY KEY)"))
    with pytest.raises(exc.OperationalError) as caught, database_errors("limit"), \
            pg.begin() as conn:
        conn.execute(text("INSERT INTO khóa SELECT string_agg(md5(i::text), '') "
                          "FROM generate_series(1, 400) AS i"))
    assert _sqlstate(caught.value) == "54000"


def test_a_missing_table_is_a_fault_kept_as_it_is(pg: Engine) -> None:
    """A query naming no table is a bug: PostgreSQL's error passes unchanged."""
    with pytest.raises(exc.ProgrammingError), database_errors("bug"), pg.connect() as conn:
        conn.execute(text("SELECT * FROM không_có_bảng"))


@pytest.mark.parametrize(("error", "passing"), [
    (psycopg.errors.DiskFull, True), (psycopg.errors.OutOfMemory, True),
    (psycopg.errors.IoError, True), (psycopg.errors.ProgramLimitExceeded, False),
    (psycopg.errors.CannotConnectNow, True),
    (psycopg.errors.CrashShutdown, True), (psycopg.errors.TooManyConnections, True),
    (psycopg.errors.QueryCanceled, True), (psycopg.errors.ConnectionFailure, True),
])
def test_errors_not_provoked_here_are_sorted_by_their_sqlstate(
        error: type[psycopg.Error], passing: bool) -> None:
    """The errors this machine cannot cause cheaply (a full disk, a starting server) are told
    apart by the SQLSTATE of psycopg's class for them, as the real ones would be."""
    wrapped = exc.OperationalError("INSERT …", {}, error("ổ đĩa / máy chủ"))
    if passing:
        with pytest.raises(DatabaseError), database_errors("x"):
            raise wrapped
    else:
        with pytest.raises(exc.OperationalError), database_errors("x"):
            raise wrapped

