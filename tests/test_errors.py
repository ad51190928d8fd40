"""Each outside system has one error boundary: IMAP, the mail store, the database, SMTP and the
file readers raise only errors of vanthu's tree (or, for files, defects), against real servers
and real files."""

from __future__ import annotations

import asyncio
import io
import shutil
import sqlite3
import struct
import subprocess
import sys
import threading
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, exc, select

from daemon.config import LimitsConfig, Secret, SmtpConfig
from daemon.db import (
    checkpoints,
    database_errors,
    health,
    make_engine,
    messages,
    outbox,
    upgrade,
)
from daemon.errors import (
    EX_CONFIG,
    DatabaseError,
    MailboxAuthError,
    MailboxError,
    MailboxRefused,
    StoreError,
    TransientError,
)
from daemon.intake.fetch import FolderWatcher, connect
from daemon.intake.store import MailStore, record_fetch
from daemon.models import OutboxState
from daemon.outbound.send import Sender
from daemon.understand import attachments
from tests.conftest import CORPUS, ROOT, Office, wait_for
from tests.queued import queue_raw
from tests.servers import SmtpSink

# --- IMAP ----------------------------------------------------------------------------------


def test_a_refused_login_is_a_mailbox_auth_error(office: Office) -> None:
    """A wrong password is told apart from other mailbox trouble: MailboxAuthError."""
    mailbox = replace(office.cfg.mailboxes[0], password=Secret("wrong"))

    with pytest.raises(MailboxAuthError, match=r"login to 127\.0\.0\.1:\d+ as agency"), \
            connect(mailbox):
        pass


def test_an_unreachable_server_is_a_mailbox_error(office: Office) -> None:
    """No server listening: a MailboxError naming the address, not a socket error."""
    mailbox = replace(office.cfg.mailboxes[0], port=1)

    with pytest.raises(MailboxError, match=r"connect to 127\.0\.0\.1:1:") as caught, \
            connect(mailbox):
        pass

    assert not isinstance(caught.value, MailboxAuthError)


def test_a_refused_command_is_mailbox_refused(office: Office) -> None:
    """The server's NO to a command is a MailboxRefused; the connection still works after it."""
    with connect(office.cfg.mailboxes[0]) as client:
        with pytest.raises(MailboxRefused, match="select_folder"):
            client.select_folder("No such folder")

        assert client.select_folder("INBOX")[b"EXISTS"] == 0


def test_a_dropped_connection_is_a_mailbox_error(office: Office) -> None:
    """The server ending the session makes the next command a MailboxError, not imaplib's."""
    with connect(office.cfg.mailboxes[0]) as client:
        client.select_folder("INBOX")
        office.dovecot.kick(office.user)

        with pytest.raises(MailboxError) as caught:
            for _ in range(50):  # the BYE is read by the command after it arrived
                client.noop()

    assert not isinstance(caught.value, MailboxRefused)


# --- the mail store --------------------------------------------------------------------------


def _break(store: MailStore) -> None:
    """Put a file where the store's temporary folder belongs: every write fails (as root too)."""
    shutil.rmtree(store.tmp)
    store.tmp.write_bytes(b"")


def _repair(store: MailStore) -> None:
    store.tmp.unlink()
    store.tmp.mkdir()


def test_a_store_that_cannot_write_raises_store_error(tmp_path: Path) -> None:
    """An OSError of the disk leaves write_many as a StoreError saying where."""
    store = MailStore(tmp_path)
    _break(store)

    with pytest.raises(StoreError, match="cannot write mail to"):
        store.write_many([b"Subject: x\r\n\r\nhello\r\n"])


class Watching:
    """A FolderWatcher in a background thread, stopped on exit."""

    def __init__(self, office: Office, engine: Engine, store: MailStore) -> None:
        cfg = office.cfg
        self.stop = threading.Event()
        self.watcher = FolderWatcher(cfg.mailboxes[0], "INBOX", engine, store,
                                     cfg.limits.max_message_bytes, lambda: None, self.stop)
        self.thread = threading.Thread(target=self.watcher.run, daemon=True)

    def __enter__(self) -> Watching:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()


def _scalar(engine: Engine, query: Any) -> object:
    with engine.connect() as conn:
        return conn.scalar(query)


def test_a_store_fault_is_reported_as_the_store_s_not_the_mailbox_s(office: Office) -> None:
    """A store that cannot write is a fault of the store in `status`, the mailbox stays clean,
    the checkpoint does not move; once the disk is back the mail is stored and the fault
    cleared."""
    engine = office.engine()
    store = MailStore(office.cfg.storage.data_dir)
    _break(store)
    office.deliver((CORPUS / "008.eml").read_bytes())
    component = f"store {office.cfg.mailboxes[0].name}/INBOX"
    fault = select(health.c.problem).where(health.c.component == component)

    with Watching(office, engine, store):
        wait_for(lambda: _scalar(engine, fault) is not None)
        assert "cannot write mail to" in str(_scalar(engine, fault))
        assert _scalar(engine, select(checkpoints.c.last_error)) is None
        assert _scalar(engine, select(checkpoints.c.last_uid)) == 0

        _repair(store)

        wait_for(lambda: _scalar(engine, select(messages.c.id)) is not None)
        wait_for(lambda: _scalar(engine, fault) is None)
    engine.dispose()


# --- the database ----------------------------------------------------------------------------


class Database:
    """A real SQLite file with the schema; `lock()` makes another connection hold its write
    lock, and `engine()` gives engines that wait only 0.1 s for it."""

    def __init__(self, path: Path) -> None:
        self.url = f"sqlite:///{path}"
        self.path = path
        self.engines: list[Engine] = []
        upgrade(self.engine())
        self.holder = sqlite3.connect(path, isolation_level=None)

    def engine(self) -> Engine:
        self.engines.append(make_engine(self.url, busy_seconds=0.1))
        return self.engines[-1]

    def lock(self) -> None:
        self.holder.execute("BEGIN IMMEDIATE")

    def unlock(self) -> None:
        if self.holder.in_transaction:
            self.holder.execute("ROLLBACK")

    def close(self) -> None:
        self.unlock()
        self.holder.close()
        for engine in self.engines:
            engine.dispose()


@pytest.fixture()
def database(tmp_path: Path) -> Iterator[Database]:
    db = Database(tmp_path / "vanthu.db")
    yield db
    db.close()


def test_a_locked_database_is_a_database_error(database: Database) -> None:
    """A write that waits past the busy timeout leaves the boundary as a transient
    DatabaseError saying what was being done."""
    engine = database.engine()
    database.lock()

    with pytest.raises(DatabaseError, match="recording: database is locked") as caught, \
            database_errors("recording"):
        record_fetch(engine, "vanthu", "INBOX", None)

    assert isinstance(caught.value, TransientError)


def test_a_bug_in_a_query_is_not_a_database_error(database: Database) -> None:
    """Only the database's own trouble is translated: a query naming no table keeps
    SQLAlchemy's error, since no retry would help."""
    engine = database.engine()

    with pytest.raises(exc.OperationalError, match="no such table"), database_errors("x"), \
            engine.connect() as conn:
        conn.exec_driver_sql("SELECT * FROM no_such_table")


def test_an_unopenable_database_is_a_database_error(tmp_path: Path) -> None:
    """A database path that is a folder cannot be opened: DatabaseError naming the database."""
    (tmp_path / "vanthu.db").mkdir()
    engine = make_engine(f"sqlite:///{tmp_path / 'vanthu.db'}")

    with pytest.raises(DatabaseError, match=r"database sqlite:///.*: unable to open"):
        upgrade(engine)

    engine.dispose()


def _queue(engine: Engine) -> None:
    """One pending outbox row for b@x.gov.vn."""
    now = datetime.now(UTC)
    with engine.begin() as conn:
        queue_raw(conn, b"Message-ID: <1@x.gov.vn>\r\nSubject: x\r\n\r\nhi\r\n",
                  header_message_id="<1@x.gov.vn>", action="forward",
                  recipients=["b@x.gov.vn"], state=OutboxState.PENDING, attempts=0,
                  next_attempt_at=now, created_at=now)


def _outbox_row(engine: Engine) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(outbox)).one()


def test_the_sender_on_a_locked_database_raises_database_error(database: Database,
                                                               smtp: SmtpSink) -> None:
    """The outbox cannot be written: a DatabaseError, and nothing is sent, since a try is
    claimed in a committed write before it begins; the row stays pending and goes once the
    database is back."""
    engine = database.engine()
    _queue(engine)
    database.lock()

    with pytest.raises(DatabaseError, match="outbox: database is locked"):
        asyncio.run(Sender(engine, SmtpConfig(port=smtp.port)).drain())

    database.unlock()
    assert smtp.messages() == []
    assert _outbox_row(engine).state == OutboxState.PENDING
    assert asyncio.run(Sender(engine, SmtpConfig(port=smtp.port)).drain()) == 1
    assert len(smtp.messages()) == 1
    assert _outbox_row(engine).state == OutboxState.SENT


# --- SMTP ----------------------------------------------------------------------------------


def test_a_tls_context_that_cannot_be_made_defers_the_rows(database: Database,
                                                           smtp: SmtpSink) -> None:
    """A CA file that does not exist is the connection's failure, recorded on the rows as
    `connect: …` for a retry; the rows keep their attempts and nothing is raised."""
    engine = database.engine()
    _queue(engine)
    cfg = SmtpConfig(port=smtp.port, security="starttls",
                     ca_file=str(database.path.parent / "no-ca.pem"))

    assert asyncio.run(Sender(engine, cfg).drain()) == 0

    row = _outbox_row(engine)
    assert row.state == OutboxState.PENDING and row.attempts == 0
    assert row.last_error.startswith("connect:")


# --- the file readers ----------------------------------------------------------------------


def _docx() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("word/document.xml", "<w:p>Số: 12/QĐ-UBND</w:p>" * 40)
    return buffer.getvalue()


def _patched(data: bytes, local: int, central: int, value: bytes) -> bytes:
    """Overwrite bytes at an offset of the local and of the central header of the one entry."""
    out = bytearray(data)
    for signature, offset in ((b"PK\x03\x04", local), (b"PK\x01\x02", central)):
        at = out.find(signature) + offset
        out[at:at + len(value)] = value
    return bytes(out)


def _encrypted(data: bytes) -> bytes:
    flags = struct.unpack_from("<H", data, data.find(b"PK\x03\x04") + 6)[0] | 1
    return _patched(data, 6, 8, struct.pack("<H", flags))


def _unknown_method(data: bytes) -> bytes:
    return _patched(data, 8, 10, struct.pack("<H", 99))


def _corrupt(data: bytes) -> bytes:
    out = bytearray(data)
    start = out.find(b"PK\x03\x04")
    name_len, extra_len = struct.unpack_from("<HH", out, start + 26)
    body = start + 30 + name_len + extra_len
    out[body:body + 8] = bytes(b ^ 0xFF for b in out[body:body + 8])
    return bytes(out)


@pytest.mark.parametrize(("damage", "reason"), [
    (_encrypted, "không kiểm tra được: tệp nén có mật khẩu"),
    (_unknown_method, "không kiểm tra được: phương thức nén 99 không hỗ trợ"),
    (_corrupt, "tệp nén hỏng, không kiểm tra được (zlib.error)")])
def test_a_damaged_docx_is_withheld_not_an_exception(damage: Callable[[bytes], bytes],
                                                      reason: str) -> None:
    """An encrypted entry, an unknown compression method or corrupt data in a DOCX withholds
    the attachment with the reason, never an exception that would make the whole mail
    unreadable."""
    reading = attachments.read("don.docx", "application/octet-stream", damage(_docx()),
                               LimitsConfig())

    assert reading.text == ""
    assert reading.withheld == reason
    assert reading.defects == (f"attachment 'don.docx' withheld: {reason}",)


# --- the command line ------------------------------------------------------------------------

CONFIG = f"""
[agency]
name = "Sở Xây dựng"
code = "000.00.22.H56"

[storage]
data_dir = "data"

[[mailboxes]]
host = "127.0.0.1"
username = "vanthu"
password = "secret"

[smtp]
from = "vanthu@sxd.tayninh.gov.vn"

[rules]
dir = "{ROOT / 'rules'}"
"""


def _vanthu(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`python -m daemon ARGS --config C`, C being CONFIG in `tmp_path`."""
    path = tmp_path / "config.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return subprocess.run([sys.executable, "-m", "daemon", *args, "--config", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)


def test_status_on_a_database_that_cannot_be_opened_says_so_in_one_line(tmp_path: Path) -> None:
    """`vanthu status` on a database path that is a folder: exit 1, one line naming the
    database and SQLite's reason, no traceback."""
    (tmp_path / "data" / "vanthu.db").mkdir(parents=True)

    done = _vanthu(tmp_path, "status")

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"vanthu status: database sqlite:///{tmp_path / 'data' / 'vanthu.db'}: "
        "unable to open database file"]
    assert done.stdout == ""


def test_a_data_folder_that_is_a_file_says_so_in_one_line(tmp_path: Path) -> None:
    """A data folder that cannot be created (a file is in its place): exit 1, one line."""
    (tmp_path / "data").write_text("not a folder", encoding="utf-8")

    done = _vanthu(tmp_path, "db", "upgrade")

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"vanthu db: cannot create the database's folder {tmp_path / 'data'}: File exists"]


def test_status_before_any_database_exists_creates_nothing(tmp_path: Path) -> None:
    """`vanthu status` only looks: with no database yet it says so in one line and leaves
    no database (nor its folder) behind."""
    done = _vanthu(tmp_path, "status")

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"vanthu status: no database at {tmp_path / 'data' / 'vanthu.db'} yet: the daemon "
        "creates it when it starts (or run `vanthu db upgrade`)"]
    assert not (tmp_path / "data").exists()


def test_send_result_of_a_missing_file_says_so_in_one_line(tmp_path: Path) -> None:
    """`vanthu send-result` of a file that does not exist: exit 1, one line naming it."""
    missing = tmp_path / "HS-0001-260101.pdf"

    done = _vanthu(tmp_path, "send-result", str(missing))

    assert done.returncode == 1
    assert done.stderr.splitlines() == [
        f"vanthu send-result: {missing}: No such file or directory"]


def test_a_configuration_error_lists_every_problem_and_exits_78(tmp_path: Path) -> None:
    """Wrong values in config.toml: exit 78 and each problem as `file:line: message`, no
    traceback."""
    path = tmp_path / "config.toml"
    text = CONFIG.replace('host = "127.0.0.1"', 'host = "127.0.0.1"\nport = 0')
    path.write_text(text.replace('from = "vanthu@sxd.tayninh.gov.vn"', 'from = "a, b"'),
                    encoding="utf-8")

    done = subprocess.run([sys.executable, "-m", "daemon", "status", "--config", str(path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == EX_CONFIG
    assert done.stderr.splitlines() == [
        f"{path}:11: mailboxes[0].port: must be a TCP port (1 to 65535)",
        f"{path}:16: smtp.from: must be exactly one mailbox, found 2"]
