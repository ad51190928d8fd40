"""`vanthu status` tells the truth: each real cause makes it exit 1 and is named (an English key
in --json, a Vietnamese sentence in the plain output), a warning leaves it at 0, and it never
writes the database while it looks.

The disks are real: a small tmpfs filled until the kernel says ENOSPC, a folder bind-mounted
read-only (chmod does not stop root). The database is held open by a writer the whole time, as
the running daemon holds it. Where mounting is not permitted the test is skipped, saying why.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, insert

from daemon.cli import main
from daemon.db import health, make_engine, outbox, upgrade, utcnow
from daemon.models import OutboxState
from tests.conftest import ROOT, RULES

DIRECTOR = "giamdoc.sxd@example.gov.vn"


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, check=False)
    if done.returncode:
        raise OSError(errno.EPERM, f"mount {' '.join(args)}: {done.stderr.strip()}")


def _umount(path: Path) -> None:
    """Unmount `path`; a mount still busy is detached lazily (never left behind) and the
    test fails saying who kept it."""
    done = subprocess.run(["umount", str(path)], capture_output=True, text=True, check=False)
    if done.returncode:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)
        raise AssertionError(f"{path} was still in use: {done.stderr.strip()}")


@contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `path` for the block; the test is skipped where mounting
    is not permitted (not root, no CAP_SYS_ADMIN in a container)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    except (OSError, FileNotFoundError) as err:
        pytest.skip(f"cannot mount a tmpfs here, so no real full disk to test with: {err}")
    try:
        yield path
    finally:
        _umount(path)


@contextmanager
def read_only(path: Path) -> Iterator[Path]:
    """`path` bind-mounted read-only over itself for the block (skipped where not allowed)."""
    try:
        _mount("--bind", str(path), str(path))
    except (OSError, FileNotFoundError) as err:
        pytest.skip(f"cannot bind-mount here, so no real read-only folder to test with: {err}")
    try:
        _mount("-o", "remount,ro,bind", str(path))
        yield path
    finally:
        _umount(path)


def fill(folder: Path) -> None:
    """Write into `folder` until its disk is full (the kernel's ENOSPC, nothing less)."""
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as err:
            assert err.errno == errno.ENOSPC, err


@dataclass
class Site:
    """A data folder and a database as a running daemon leaves them, a config naming them, and
    another process holding the database open (its WAL and index) as the daemon does. The
    test's own connections are closed after each write: SQLite keeps a closed file open while
    another connection of the same process holds a lock on it, which would keep a disk busy."""

    root: Path
    data: Path
    database: Path
    status_settings: dict[str, Any] = field(default_factory=dict)
    holder: subprocess.Popen[str] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        (self.data / "mail").mkdir(parents=True, exist_ok=True)
        self.database.parent.mkdir(parents=True, exist_ok=True)
        engine = make_engine(f"sqlite:///{self.database}")
        upgrade(engine)
        engine.dispose()
        self.holder = subprocess.Popen([sys.executable, "-c", f"""
import sqlite3, time
db = sqlite3.connect({str(self.database)!r})
db.execute("SELECT count(*) FROM outbox").fetchall()
print("held", flush=True)
time.sleep(600)
"""], stdout=subprocess.PIPE, text=True)
        assert self.holder.stdout is not None
        assert self.holder.stdout.readline().strip() == "held"

    def close(self) -> None:
        if self.holder is not None:
            self.holder.kill()
            self.holder.wait()
            if self.holder.stdout is not None:
                self.holder.stdout.close()
            self.holder = None

    def config(self) -> Path:
        path = self.root / "config.toml"
        status = "".join(f"{k} = {v}\n" for k, v in self.status_settings.items())
        path.write_text(
            '[agency]\nname = "Sở Xây dựng"\ncode = "000.00.22.H56"\n'
            f'[storage]\ndata_dir = "{self.data}"\ndatabase_url = "sqlite:///{self.database}"\n'
            '[[mailboxes]]\nname = "agency"\nhost = "127.0.0.1"\nusername = "vanthu"\n'
            'password = "x"\n[smtp]\nfrom = "vanthu@sxd.example.gov.vn"\n'
            f'[rules]\ndir = "{RULES}"\n[status]\n{status}', encoding="utf-8")
        return path

    def _files(self) -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                for p in self.database.parent.glob(f"{self.database.name}*")
                if not p.name.endswith("-shm")}

    def status(self, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
        """`vanthu status --json` and `vanthu status`: (exit code, report, plain text); both
        exit the same way, and the database's files are byte for byte as they were."""
        config = str(self.config())
        before = self._files()
        code = main(["status", "--json", "--config", config])
        report = json.loads(capsys.readouterr().out)
        plain_code = main(["status", "--config", config])
        text = capsys.readouterr().out
        assert plain_code == code
        assert self._files() == before, "status changed the database"
        assert report["healthy"] == (code == 0)
        return code, report, text

    def write(self, *statements: Any) -> None:
        engine = make_engine(f"sqlite:///{self.database}")
        with engine.begin() as conn:
            for statement in statements:
                conn.execute(statement)
        engine.dispose()


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    built = Site(tmp_path, tmp_path / "data", tmp_path / "db" / "vanthu.db",
                 {"min_free_mb": 1})
    yield built
    built.close()


def causes(report: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [c for c in report["causes"] if c["cause"] == key]


def warnings(report: dict[str, Any], key: str) -> list[dict[str, Any]]:
    return [c for c in report["warnings"] if c["cause"] == key]


def test_all_well_is_healthy(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """Nothing wrong: exit 0, no cause, no warning, and the people's verdict says so."""
    code, report, text = site.status(capsys)

    assert code == 0 and report["causes"] == [] and report["warnings"] == []
    assert report["problems"] == []
    assert text.rstrip().endswith("Tình trạng: TỐT")


# -- Disks --------------------------------------------------------------------------------


@pytest.mark.parametrize(("filled", "min_free_mb", "healthy"), [
    (True, 1, False),  # full: the kernel refuses another block
    (False, 200, False),  # a 4 MB disk is below the default minimum of 200 MB
    (False, 1, True),  # the same disk with the minimum set lower is fine
])
def test_a_full_or_low_disk_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     filled: bool, min_free_mb: int, healthy: bool) -> None:
    """The mail store and the database on one small disk: below `[status] min_free_mb` free,
    one cause names both places and the free space; above it, healthy."""
    with ExitStack() as stack:
        disk = stack.enter_context(tmpfs(tmp_path / "disk", "4m"))
        site = Site(tmp_path, disk / "data", disk / "vanthu.db", {"min_free_mb": min_free_mb})
        stack.callback(site.close)
        if filled:
            fill(disk)

        code, report, text = site.status(capsys)

    assert code == (0 if healthy else 1)
    if healthy:
        assert report["causes"] == []
        return
    (cause,) = causes(report, "disk_low")
    assert cause["places"] == ["store", "database"]
    assert cause["paths"] == [str(disk / "data" / "mail"), str(disk / "vanthu.db")]
    assert cause["free_mb"] < min_free_mb and cause["min_free_mb"] == min_free_mb
    if filled:
        assert cause["free_mb"] == 0
    assert "Ổ đĩa chứa kho thư" in text and f"dưới mức tối thiểu {min_free_mb} MB" in text
    assert "[disk_low]" in text and "Tình trạng: CÓ 1 VẤN ĐỀ" in text


def test_a_full_disk_is_named_even_when_the_database_cannot_be_read(tmp_path: Path) -> None:
    """No daemon holds the database (its WAL index is gone) and the disk is full: SQLite
    cannot open it to read; status says so in its one line and names the full disk after."""
    with ExitStack() as stack:
        disk = stack.enter_context(tmpfs(tmp_path / "disk", "4m"))
        site = Site(tmp_path, disk / "data", disk / "vanthu.db", {"min_free_mb": 1})
        site.close()
        last = sqlite3.connect(site.database)  # the last one out removes the WAL and index
        last.execute("SELECT count(*) FROM outbox").fetchall()
        last.close()
        assert not site.database.with_name("vanthu.db-shm").exists()
        fill(disk)

        done = subprocess.run([sys.executable, "-m", "daemon", "status", "--config",
                               str(site.config())], cwd=ROOT, capture_output=True, text=True,
                              timeout=120, check=False)

    assert done.returncode == 1 and done.stdout == ""
    first, *rest = done.stderr.splitlines()
    assert first.startswith(f"vanthu status: database sqlite:///{disk / 'vanthu.db'}: ")
    assert rest == [line for line in rest if line.startswith("vanthu status: disk_low: ")]
    assert len(rest) == 1 and "chỉ còn 0,0 MB trống" in rest[0]


@pytest.mark.parametrize("place", ["store", "database"])
def test_a_read_only_store_or_database_is_named(site: Site, place: str,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The mail store's folder, or the database's, on a read-only mount: exit 1 naming which
    (status itself still reads the database)."""
    folder = site.data / "mail" if place == "store" else site.database.parent
    with read_only(folder):
        code, report, text = site.status(capsys)

    assert code == 1
    (cause,) = causes(report, "read_only")
    assert cause["place"] == place
    assert cause["path"] == str(folder if place == "store" else site.database)
    name = {"store": "Kho thư", "database": "Cơ sở dữ liệu"}[place]
    assert f"{name} ({cause['path']}) nằm trên ổ đĩa chỉ đọc" in text and "[read_only]" in text


# -- SMTP, mailboxes, faults -------------------------------------------------------------------


def _fault(component: str, problem: str, since: datetime) -> Any:
    return insert(health).values(component=component, problem=problem, since=since,
                                 updated_at=utcnow())


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.integers(1, 24 * 60), offset=st.integers(-24 * 60, 24 * 60)
       .filter(lambda m: abs(m) >= 1))
def test_smtp_failing_longer_than_the_limit_is_a_problem_shorter_a_warning(
        site: Site, capsys: pytest.CaptureFixture[str], limit: int, offset: int) -> None:
    """The `smtp` fault the sender records, failing for `limit + offset` minutes against
    `[status] smtp_failing_minutes = limit`: a problem (exit 1) from the limit on, a warning
    (exit 0) before it; named with its reply either way."""
    failing = max(limit + offset, 0)
    site.status_settings["smtp_failing_minutes"] = limit
    since = utcnow() - timedelta(minutes=failing)
    reply = "421 4.3.2 Hệ thống đang bảo trì"
    site.write(delete(health), _fault("smtp", reply, since))

    code, report, text = site.status(capsys)

    long = failing >= limit
    assert code == (1 if long else 0)
    (cause,) = (causes if long else warnings)(report, "smtp_failing")
    assert cause["problem"] == reply and cause["limit_minutes"] == limit
    assert cause["minutes"] in (failing, failing + 1)
    assert "Máy chủ gửi thư (SMTP) lỗi liên tục từ" in text and reply in text
    assert ("Vấn đề cần xử lý:" in text) == long and ("Cảnh báo:" in text) != long


def test_a_mailbox_held_by_another_daemon_is_a_warning(site: Site,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """Another daemon fetches the mailbox: shown, not unhealthy (the mail is being fetched)."""
    site.write(_fault("mailbox:agency", "held by host-b/4242/99 until 10:05", utcnow()))

    code, report, text = site.status(capsys)

    assert code == 0 and report["causes"] == []
    (cause,) = warnings(report, "mailbox_held")
    assert cause["component"] == "mailbox:agency"
    assert "Hộp thư agency đang do một tiến trình văn thư khác nhận thư" in text


@pytest.mark.parametrize(("component", "key", "words"), [
    ("pipeline", "pipeline_paused", "Xử lý thư đến tạm dừng"),
    ("store agency/INBOX", "store_failing", "Kho thư không ghi được"),
])
def test_a_fault_of_the_daemon_is_a_problem(site: Site, capsys: pytest.CaptureFixture[str],
                                            component: str, key: str, words: str) -> None:
    site.write(_fault(component, "No space left on device", utcnow()))

    code, report, text = site.status(capsys)

    assert code == 1
    (cause,) = causes(report, key)
    assert cause["component"] == component
    assert words in text and "No space left on device" in text


# -- The outbox --------------------------------------------------------------------------------


def _row(n: int, recipients: list[str], *, age_minutes: float, **values: Any) -> Any:
    created = utcnow() - timedelta(minutes=age_minutes)
    return insert(outbox).values(**{
        "header_message_id": f"<{n}.status@sxd.example.gov.vn>", "action": "forward",
        "recipients": recipients,
        "state": OutboxState.PENDING, "attempts": 0, "next_attempt_at": created,
        "created_at": created, **values})


def test_an_email_tried_and_overdue_is_a_problem(site: Site,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    """A pending email tried and still waiting past `[status] outbox_overdue_minutes`: exit 1
    with its last error; tried but recent, it is shown as pending and healthy."""
    site.write(_row(1, [DIRECTOR], age_minutes=2, attempts=1,
                    last_error="451 4.7.1 Thử lại sau"))
    code, report, _ = site.status(capsys)
    assert code == 0 and report["outbox_pending"][0]["last_error"] == "451 4.7.1 Thử lại sau"

    site.write(_row(2, [DIRECTOR], age_minutes=60, attempts=3,
                    last_error="timed out after DATA"))
    site.status_settings["outbox_overdue_minutes"] = 90
    code, report, _ = site.status(capsys)
    assert code == 0, report["causes"]  # an hour is not overdue when the limit is 90 minutes

    del site.status_settings["outbox_overdue_minutes"]
    code, report, text = site.status(capsys)

    assert code == 1
    (cause,) = causes(report, "outbox_overdue")
    assert cause["count"] == 1 and cause["rows"][0]["message_id"] == "<2.status@sxd.example.gov.vn>"
    assert "1 thư gửi đi chờ quá 15 phút" in text and "timed out after DATA" in text


def test_a_failed_email_is_a_problem(site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    site.write(_row(1, [DIRECTOR], age_minutes=3000, attempts=10,
                    state=OutboxState.FAILED, last_error="550 5.7.1 Thư bị từ chối"))

    code, report, text = site.status(capsys)

    assert code == 1
    (cause,) = causes(report, "outbox_failed")
    assert cause["count"] == 1
    assert "1 thư gửi đi không gửi được" in text and "550 5.7.1 Thư bị từ chối" in text
    assert f"thư chuyển văn bản gửi {DIRECTOR}" in text


def test_an_email_failed_in_doubt_says_to_check_before_resending(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """Tries begun without an answer (a crash or a lost connection after DATA) made the row
    fail in doubt: named apart, so nobody resends what may have arrived."""
    site.write(_row(1, [DIRECTOR], age_minutes=30, attempts=0, tries_begun=2,
                    state=OutboxState.FAILED, last_error="in doubt: no answer after DATA"))

    code, report, text = site.status(capsys)

    assert code == 1
    (cause,) = causes(report, "outbox_in_doubt")
    assert cause["recipients"] == [DIRECTOR]
    assert "có thể đã đến nơi nhưng máy chủ không xác nhận" in text


def test_a_refused_recipient_is_a_problem_naming_the_address(
        site: Site, capsys: pytest.CaptureFixture[str]) -> None:
    """Three of four recipients got the forward, the Director's address was refused: the
    missed copy is named with the server's reply; the others are not."""
    others = ["vanphong@example.gov.vn", "phongqlxd@example.gov.vn", "phothanhtra@example.gov.vn"]
    site.write(_row(1, [DIRECTOR, *others], age_minutes=5, attempts=1,
                    state=OutboxState.SENT, sent_at=utcnow(), delivered=others,
                    refused={DIRECTOR: "550 5.1.1 Người nhận không tồn tại"}))

    code, report, text = site.status(capsys)

    assert code == 1
    (cause,) = causes(report, "recipient_refused")
    assert (cause["address"], cause["reply"]) == (DIRECTOR,
                                                  "550 5.1.1 Người nhận không tồn tại")
    assert f"từ chối người nhận {DIRECTOR}" in text and "KHÔNG nhận được thư" in text
    assert not any(address in c["message"] for c in report["causes"] for address in others)


def test_every_cause_at_once_is_named_each(site: Site,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    """Several things wrong together: each is its own cause, none hides another."""
    site.write(_fault("smtp", "connection refused", utcnow() - timedelta(hours=2)),
               _row(1, [DIRECTOR], age_minutes=120, attempts=4, last_error="connection refused"),
               _row(2, [DIRECTOR], age_minutes=3000, state=OutboxState.FAILED,
                    last_error="too old"))
    with read_only(site.data / "mail"):
        code, report, text = site.status(capsys)

    assert code == 1
    assert {c["cause"] for c in report["causes"]} == {
        "read_only", "smtp_failing", "outbox_overdue", "outbox_failed"}
    assert "Tình trạng: CÓ 4 VẤN ĐỀ" in text


# -- The database locked for writing -------------------------------------------------------


def test_a_database_locked_for_writing_is_named(site: Site,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Another process holds the write lock: under WAL a reader still sees a healthy picture,
    so status takes the write lock itself and gives it back (nothing written); held longer
    than WRITE_LOCK_SECONDS, the database is named locked. Released, all is well again."""
    with subprocess.Popen([sys.executable, "-c", f"""
import sqlite3
db = sqlite3.connect({str(site.database)!r}, isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
input()
"""], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) as locker:
        assert locker.stdout is not None and locker.stdin is not None
        assert locker.stdout.readline().strip() == "locked"
        code, report, text = site.status(capsys)
        locker.stdin.write("\n")
        locker.stdin.flush()
    assert code == 1
    assert causes(report, "database_locked")[0]["path"] == str(site.database)
    assert "bị một tiến trình khác khóa ghi" in text

    code, report, _ = site.status(capsys)
    assert code == 0 and not causes(report, "database_locked")
