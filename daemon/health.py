"""What is wrong right now, as `vanthu status` and the digest both tell it: a watched folder
whose last error is newer than its last successful fetch, the faults of the system a daemon
is living with, the outbox's troubles, and a disk that is full or read-only. Reads only (the
database and the disks alike); the rule is decided here once.

Each finding is a `Cause`: a stable English key for machines (`status --json`, monitoring)
and one sentence for people in Vietnamese. A problem makes the system unhealthy; a warning is
shown and does not (an SMTP server failing for less than `[status] smtp_failing_minutes`, a
mailbox another daemon is fetching).
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, make_url, select

from daemon.db import checkpoints, health

if TYPE_CHECKING:
    from daemon.config import Config
    from daemon.outbound.outbox import Health


def mailbox_error(box: Any) -> str | None:
    """The last error of a watched folder (a `checkpoints` row) while it is newer than the last
    successful fetch, or None: an error a later fetch got past is history, not a problem."""
    if not box.last_error:
        return None
    if box.last_fetch_at is None:
        return str(box.last_error)
    if box.last_error_at is not None and box.last_error_at > box.last_fetch_at:
        return str(box.last_error)
    return None


def mailboxes(conn: Connection) -> list[Any]:
    """Every watched folder's checkpoint: last UID, last fetch, last error."""
    return list(conn.execute(select(checkpoints)).all())


def faults(conn: Connection) -> list[Any]:
    """The faults of the system being lived with (e.g. the pipeline paused), by component."""
    return list(conn.execute(select(health).order_by(health.c.component)).all())


@dataclass(frozen=True)
class Cause:
    """One thing wrong or worth a look: `key` for machines, `vi` for people, `en` for logs."""

    key: str  # stable, English: disk_low, read_only, smtp_failing, outbox_failed, …
    vi: str
    en: str
    facts: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"cause": self.key, "message": self.en, "message_vi": self.vi, **self.facts}


@dataclass(frozen=True)
class Verdict:
    """Everything found: the problems (each makes the system unhealthy) and the warnings."""

    problems: list[Cause] = field(default_factory=list)
    warnings: list[Cause] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems


ACTION_NAMES = {"forward": "chuyển văn bản", "notify": "thông báo văn bản mật",
                "assign": "giao xử lý", "reminder": "nhắc hạn", "digest": "báo cáo văn thư",
                "acknowledge": "báo nhận", "result": "trả kết quả", "supplement": "yêu cầu bổ sung",
                "apology": "thư xin lỗi hẹn lại", "release": "chuyển bổ sung tệp đính kèm"}


def _local(cfg: Config, moment: datetime | str) -> str:
    when = datetime.fromisoformat(moment) if isinstance(moment, str) else moment
    return f"{when.astimezone(cfg.agency.tz):%H:%M %d/%m/%Y}"


def _mb(size: float) -> str:
    """Megabytes the Vietnamese way: a decimal comma."""
    return f"{size:.1f}".replace(".", ",")


# -- Disks ------------------------------------------------------------------------------------

PLACE_NAMES = {"store": "Kho thư", "database": "Cơ sở dữ liệu"}


def _existing(path: Path) -> Path:
    """`path`, or its nearest existing parent (what a daemon creating it would write in)."""
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def storage_places(cfg: Config) -> list[tuple[str, Path]]:
    """What vanthu writes on disk: the mail store and, on SQLite, the database file (whose
    folder must be writable too: its journal and WAL files are made there)."""
    places = [("store", _existing(cfg.storage.data_dir / "mail"))]
    url = make_url(cfg.storage.url)
    if url.drivername.startswith("sqlite") and url.database not in (None, "", ":memory:"):
        places.append(("database", _existing(Path(str(url.database)))))
    return places


def disks(cfg: Config) -> list[Cause]:
    """A disk with less than `[status] min_free_mb` free (or no free inode), a read-only file
    system, a place this user may not write. Looks only: statvfs and access, never a probe
    file (status must not write, and a probe proves nothing about the daemon's own user; the
    daemon reports the store's real write errors as faults itself)."""
    found: list[Cause] = []
    low: dict[int, list[tuple[str, Path]]] = {}
    for place, path in storage_places(cfg):
        name = PLACE_NAMES[place]
        try:
            fs = os.statvfs(path)
            device = os.stat(path).st_dev
        except OSError as err:
            found.append(Cause("storage_unreadable", f"{name} ({path}): không xem được ổ đĩa "
                               f"({err.strerror}).", f"{place} {path}: cannot look at its disk "
                               f"({err.strerror})", {"place": place, "path": str(path)}))
            continue
        free_mb = fs.f_bavail * fs.f_frsize / 2**20
        no_inodes = fs.f_files > 0 and fs.f_favail == 0
        if free_mb < cfg.status.min_free_mb or no_inodes:
            low.setdefault(device, []).append((place, path))
            if len(low[device]) == 1:
                found.append(_disk_low(cfg, device, low, free_mb, no_inodes))
            else:  # the same disk: one cause naming every place on it
                index = next(i for i, c in enumerate(found) if c.facts.get("device") == device)
                found[index] = _disk_low(cfg, device, low, free_mb, no_inodes)
        if fs.f_flag & os.ST_RDONLY:
            found.append(Cause("read_only", f"{name} ({path}) nằm trên ổ đĩa chỉ đọc: văn thư "
                               "điện tử không ghi được thư, sổ hay kết quả nào.",
                               f"{place} {path} is on a read-only file system",
                               {"place": place, "path": str(path)}))
        elif not _writable(path):
            found.append(Cause("not_writable", f"{name} ({path}) không ghi được (không có "
                               "quyền ghi).", f"{place} {path} is not writable",
                               {"place": place, "path": str(path)}))
    return found


def _writable(path: Path) -> bool:
    """Whether this user may write `path` (a file) or make files in it (a folder)."""
    if path.is_dir():
        return os.access(path, os.W_OK | os.X_OK)
    return os.access(path, os.W_OK) and os.access(path.parent, os.W_OK | os.X_OK)


def _disk_low(cfg: Config, device: int, low: dict[int, list[tuple[str, Path]]],
              free_mb: float, no_inodes: bool) -> Cause:
    places = low[device]
    names = " và ".join(f"{PLACE_NAMES[p].lower()} ({path})" for p, path in places)
    what = ("hết chỗ tạo tệp mới (inode)" if no_inodes
            else f"chỉ còn {_mb(free_mb)} MB trống, dưới mức tối thiểu {cfg.status.min_free_mb} MB")
    return Cause(
        "disk_low", f"Ổ đĩa chứa {names} {what}: thư mới có thể không lưu được.",
        f"the disk of {', '.join(f'{p} {path}' for p, path in places)} has "
        + ("no free inode" if no_inodes else
           f"{free_mb:.1f} MB free, below the minimum of {cfg.status.min_free_mb} MB"),
        {"places": [p for p, _ in places], "paths": [str(path) for _, path in places],
         "free_mb": round(free_mb, 1), "min_free_mb": cfg.status.min_free_mb,
         "device": device})


# -- Faults recorded by the daemons -----------------------------------------------------------

def fault_causes(cfg: Config, rows: Iterable[Any], now: datetime) -> Verdict:
    """Sort the `health` rows: SMTP failing longer than `[status] smtp_failing_minutes` is a
    problem and a shorter failure a warning (the retries may well get through); a mailbox
    another daemon holds is a warning (that daemon fetches it); any other fault (the pipeline
    paused, sending stopped, the store failing) is a problem."""
    problems: list[Cause] = []
    warnings: list[Cause] = []
    limit = timedelta(minutes=cfg.status.smtp_failing_minutes)
    for row in rows:
        since = _local(cfg, row.since)
        facts = {"component": row.component, "problem": row.problem,
                 "since": row.since.isoformat(), "updated_at": row.updated_at.isoformat()}
        if row.component == "smtp":
            minutes = int((now - row.since).total_seconds() // 60)
            long = now - row.since >= limit
            cause = Cause(
                "smtp_failing",
                f"Máy chủ gửi thư (SMTP) lỗi liên tục từ {since} ({minutes} phút): "
                f"{row.problem}. " + ("Thư gửi đi đang bị giữ lại." if long else
                                      "Thư sẽ được gửi lại tự động."),
                f"the SMTP server has been failing since {row.since.isoformat()} "
                f"({minutes} min): {row.problem}", {**facts, "minutes": minutes,
                                                    "limit_minutes": limit.total_seconds() / 60})
            (problems if long else warnings).append(cause)
        elif row.component.startswith("mailbox:"):
            name = row.component.removeprefix("mailbox:")
            warnings.append(Cause(
                "mailbox_held", f"Hộp thư {name} đang do một tiến trình văn thư khác nhận thư "
                f"(từ {since}): {row.problem}.",
                f"mailbox {name} is held by another daemon: {row.problem}", facts))
        elif row.component == "pipeline":
            problems.append(Cause(
                "pipeline_paused", f"Xử lý thư đến tạm dừng từ {since}: {row.problem}. Thư vẫn "
                "được lưu đủ và sẽ được xử lý tiếp khi sự cố hết.",
                f"pipeline: {row.problem}", facts))
        elif row.component == "sending":
            problems.append(Cause(
                "sending_stopped", f"Việc gửi thư dừng từ {since}: {row.problem}. Thư đã xếp "
                "hàng được giữ nguyên và sẽ được gửi khi sự cố được khắc phục (xem nhật ký "
                "outbox.drain_failed).", f"sending: {row.problem}", facts))
        elif row.component.startswith("store"):
            problems.append(Cause(
                "store_failing", f"Kho thư không ghi được ({row.component}) từ {since}: "
                f"{row.problem}.", f"{row.component}: {row.problem}", facts))
        else:
            problems.append(Cause("fault", f"Sự cố {row.component} từ {since}: {row.problem}.",
                                  f"{row.component}: {row.problem}", facts))
    return Verdict(problems, warnings)


def mailbox_causes(boxes: Iterable[Any]) -> list[Cause]:
    """Each watched folder whose last error is newer than its last good fetch."""
    return [Cause("mailbox_error", f"Hộp thư {b.mailbox}/{b.folder} lỗi: {error}.",
                  f"mailbox {b.mailbox}/{b.folder}: {error}",
                  {"mailbox": b.mailbox, "folder": b.folder, "error": error})
            for b in boxes if (error := mailbox_error(b))]


# -- The outbox -------------------------------------------------------------------------------

def _to(row: dict[str, Any]) -> str:
    return ", ".join(row["recipients"])


def outbox_causes(cfg: Config, sending: Health) -> list[Cause]:
    """The outbox's troubles as causes: emails failed (given up for good), emails tried and
    overdue, and recipients the server refused while the others got the email."""
    found: list[Cause] = []
    if sending.failed:
        last = sending.failed[0]
        found.append(Cause(
            "outbox_failed",
            f"{sending.failed_count} thư gửi đi không gửi được; gần nhất: thư "
            f"{ACTION_NAMES.get(last['action'], last['action'])} gửi {_to(last)} "
            f"(tạo lúc {_local(cfg, last['created_at'])}): {last['last_error']}.",
            f"{sending.failed_count} outgoing email(s) failed; last: {last['action']} to "
            f"{_to(last)}: {last['last_error']}",
            {"count": sending.failed_count, "rows": sending.failed}))
    for row in sending.in_doubt:
        found.append(Cause(
            "outbox_in_doubt",
            f"Thư {ACTION_NAMES.get(row['action'], row['action'])} gửi {_to(row)} (tạo lúc "
            f"{_local(cfg, row['created_at'])}) có thể đã đến nơi nhưng máy chủ không xác nhận; "
            "đã dừng gửi lại để tránh gửi trùng: hãy hỏi lại người nhận.",
            f"{row['action']} {row['message_id']} to {_to(row)} may have been delivered "
            "(tries without the server's answer): check with the recipients before resending",
            {"id": row["id"], "message_id": row["message_id"], "action": row["action"],
             "recipients": row["recipients"]}))
    if sending.stuck:
        oldest = sending.stuck[0]
        found.append(Cause(
            "outbox_overdue",
            f"{len(sending.stuck)} thư gửi đi chờ quá {sending.overdue_minutes:g} "
            f"phút chưa gửi được (thư cũ nhất tạo lúc {_local(cfg, oldest['created_at'])}, "
            f"đã thử {oldest['attempts']} lần); lỗi gần nhất: {oldest['last_error']}.",
            f"{len(sending.stuck)} outgoing email(s) waiting more than "
            f"{sending.overdue_minutes:g} minutes since {oldest['created_at']}; "
            f"last error: {oldest['last_error']}",
            {"count": len(sending.stuck), "rows": sending.stuck}))
    for row in sending.refused:
        for address, why in row["refused"].items():
            found.append(Cause(
                "recipient_refused",
                f"Máy chủ thư từ chối người nhận {address} của thư "
                f"{ACTION_NAMES.get(row['action'], row['action'])} (tạo lúc "
                f"{_local(cfg, row['created_at'])}): {why}. Người này KHÔNG nhận được thư; "
                "những người nhận khác đã nhận.",
                f"recipient refused for {row['action']} {row['message_id']}: {address}: {why}",
                {"address": address, "reply": why, "id": row["id"],
                 "message_id": row["message_id"], "action": row["action"]}))
    return found


WRITE_LOCK_SECONDS = 5.0  # longer than any write transaction of a healthy daemon


def write_locked(cfg: Config, seconds: float = WRITE_LOCK_SECONDS) -> Cause | None:
    """Whether nobody can write the SQLite database: another process has held its write lock
    for `seconds`. Under WAL a reader still sees the last committed picture, healthy-looking,
    while the daemon can record nothing, not even its own fault; only this look tells. It takes
    the write lock (BEGIN IMMEDIATE) and gives it back at once (ROLLBACK): nothing is written.
    None on another database, or when the file cannot be opened for writing at all (the disk
    checks name that)."""
    url = make_url(cfg.storage.url)
    if not url.drivername.startswith("sqlite") or not url.database \
            or url.database == ":memory:" or not Path(url.database).exists():
        return None
    try:
        probe = sqlite3.connect(f"file:{Path(url.database).resolve()}?mode=rw", uri=True,
                                timeout=seconds, isolation_level=None)
    except sqlite3.Error:
        return None
    try:
        probe.execute("BEGIN IMMEDIATE")
        probe.execute("ROLLBACK")
    except sqlite3.OperationalError as err:
        if getattr(err, "sqlite_errorcode", 0) & 0xFF not in (sqlite3.SQLITE_BUSY,
                                                               sqlite3.SQLITE_LOCKED):
            return None
        return Cause("database_locked",
                     f"Cơ sở dữ liệu ({url.database}) bị một tiến trình khác khóa ghi quá "
                     f"{seconds:g} giây: văn thư điện tử không ghi được thư, sổ hay thư đi nào.",
                     f"database {url.database} locked for writing by another process for "
                     f"more than {seconds:g} s", {"path": url.database})
    finally:
        probe.close()
    return None


def calendar_causes(cfg: Config, now: datetime) -> list[Cause]:
    """In December, a warning when next year's days off are not announced yet: deadlines
    that run into it are counted on the law's estimate (Tết, the day next to 2/9 and any
    swapped Saturday may still change). Cleared by adding the year to holidays_vn.yaml, or
    the agency's own [calendar] days."""
    from daemon.office import calendar

    local = now.astimezone(cfg.agency.tz)
    year = local.year + 1
    if local.month != 12 or calendar.announced(year):
        return []
    return [Cause("calendar_provisional",
                  f"Lịch nghỉ lễ, Tết năm {year} chưa được cập nhật theo quyết định chính thức: "
                  f"hạn xử lý rơi vào năm {year} đang tính theo lịch dự kiến (vanthu calendar "
                  f"show {year}).",
                  f"the days off of {year} are not announced yet: deadlines in {year} are "
                  "counted on a provisional calendar", {"year": year})]


def assess(conn: Connection, cfg: Config, now: datetime) -> Verdict:
    """Everything `vanthu status` judges, from one read snapshot and a look at the disks."""
    from daemon.outbound import outbox as outbox_module

    faults_found = fault_causes(cfg, faults(conn), now)
    sending = outbox_module.health(conn, now, cfg.status.outbox_overdue_minutes)
    return Verdict(
        [*disks(cfg), *faults_found.problems, *outbox_causes(cfg, sending),
         *mailbox_causes(mailboxes(conn))],
        [*faults_found.warnings, *calendar_causes(cfg, now)])
