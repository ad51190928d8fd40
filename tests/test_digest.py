"""The digest: content in Vietnamese, once per period across restarts, sent on start when
missed, scheduled at the configured hours (a controllable clock, never sleeps)."""

from __future__ import annotations

import dataclasses
import functools
import re
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, insert, select, update

from daemon import config, health
from daemon.cli import main
from daemon.config import DigestConfig, StatusConfig, StorageConfig
from daemon.db import cases, digests, make_engine, outbox, reminders, upgrade
from daemon.db import health as health_table
from daemon.models import CaseStatus, OutboxState
from daemon.office import digest
from daemon.office.reminders import send_reminders
from daemon.routing import rules as rules_module
from daemon.service import Daemon
from tests.conftest import CORPUS, RULES, Office

VN = ZoneInfo("Asia/Ho_Chi_Minh")
DIRECTOR = "giamdoc.sxd@example.gov.vn"
T = TypeVar("T")


def _enable(office: Office, times: str = '["06:00", "12:00", "18:00"]') -> None:
    office.config_path.write_text(office.config_path.read_text().replace(
        "[digest]\nto = []", f'[digest]\nto = ["giam_doc", "vanphong@example.gov.vn"]\n'
                             f"times = {times}"))


def _digest_rows(office: Office) -> list[str]:
    engine = office.engine()
    with engine.connect() as conn:
        rows = list(conn.scalars(select(outbox.c.header_message_id)
                                 .where(outbox.c.action == "digest")))
    engine.dispose()
    return rows


@pytest.mark.db
def test_each_period_is_sent_once_across_restarts(office: Office) -> None:
    """Two daemons (or a restart) asking at the same moment queue one digest per period."""
    _enable(office)
    cfg = office.cfg
    ruleset = rules_module.load(cfg.rules.dir)
    engine = office.engine()
    morning = datetime(2026, 11, 23, 6, 0, 30, tzinfo=VN)
    noon = datetime(2026, 11, 23, 12, 0, 5, tzinfo=VN)

    first = digest.send_due(engine, cfg, ruleset, morning)
    again = digest.send_due(engine, cfg, ruleset, morning.replace(minute=45))
    later = digest.send_due(engine, cfg, ruleset, noon)

    assert (first, again, later) == ("2026-11-23T06:00", None, "2026-11-23T12:00")
    assert len(_digest_rows(office)) == 2
    with engine.connect() as conn:
        recipients = conn.scalar(select(outbox.c.recipients))
    assert recipients == ["vanphong@example.gov.vn", "giamdoc.sxd@example.gov.vn"]


def test_latest_period_wraps_to_yesterday() -> None:
    """Before the first time of the day, the latest period is yesterday's last one."""
    from daemon import config

    cfg = config.load(None)

    period = digest.latest_period(cfg, datetime(2026, 11, 23, 5, 59, tzinfo=VN))

    assert period == datetime(2026, 11, 22, 18, 0, tzinfo=VN)


@pytest.mark.db
def test_missed_period_is_sent_on_start_and_reports_the_day(office: Office) -> None:
    """A daemon starting after a digest time sends that period's digest once; it lists what
    arrived, urgent first, a confidential document without its summary, and the quarantine."""
    _enable(office)
    office.deliver(*[(CORPUS / n).read_bytes() for n in ("008.eml", "006.eml", "012.eml",
                                                          "015.eml")])

    def sent_digest() -> bool:
        return any(b"X-Vanthu-Action: digest" in m.data for m in office.smtp.messages())

    office.run_daemon(until=lambda: sent_digest() and len(office.smtp.messages()) >= 7)
    office.run_daemon(until=lambda: True)

    digests = [message_from_bytes(m.data, policy=policy.default)
               for m in office.smtp.messages() if b"X-Vanthu-Action: digest" in m.data]
    assert len(digests) == 1
    # The digest ran at start, before these mails were processed; ask for a fresh one.
    cfg = office.cfg
    engine = office.engine()
    now = datetime.now(VN)
    report = digest.build(engine, cfg, rules_module.load(cfg.rules.dir),
                          now.replace(year=now.year - 1), now)
    text = report.text
    assert "Văn bản đến: 4" in text
    urgent = text.index("[THƯỢNG KHẨN] số đến")
    secret = text.index("MẬT số đến 1/")
    ordinary = text.index("402/TB-SNV")
    assert urgent < secret < ordinary
    assert "Phương án bảo vệ công trình quốc phòng" not in text
    assert "THƯ ĐANG GIỮ LẠI" in text and "không qua được kiểm tra xác thực" in text
    assert "agency/INBOX: nhận thư bình thường, lần cuối" in text
    assert "<h3>Văn bản, hồ sơ đã vào sổ" in report.html


def test_scheduler_fires_at_the_configured_hours(office: Office) -> None:
    """The jobs' triggers fire at each configured time in the agency's time zone."""
    _enable(office, '["06:00", "12:00", "18:00"]')
    cfg = office.cfg
    daemon = Daemon(cfg, rules_module.load(cfg.rules.dir))
    daemon.pool.close()  # its readers start with it; only the schedule is looked at here
    daemon.engine.dispose()
    scheduler = daemon._scheduler()
    now = datetime(2026, 11, 23, 7, 0, tzinfo=VN)

    jobs = scheduler.get_jobs()
    fires = sorted(job.trigger.get_next_fire_time(None, now) for job in jobs
                   if job.id.startswith("digest"))
    reminder = next(job for job in jobs if job.id == "reminders")

    assert [f.strftime("%d %H:%M") for f in fires] == ["23 12:00", "23 18:00", "24 06:00"]
    assert reminder.trigger.get_next_fire_time(None, now).strftime("%d %H:%M") == "23 07:30"


@pytest.mark.db
def test_digest_command_prints_and_sends(office: Office,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """`vanthu digest --dry-run` prints the Vietnamese digest; `--send` delivers it now."""
    _enable(office)
    config = str(office.config_path)
    assert main(["db", "upgrade", "--config", config]) == 0  # the daemon never ran here

    assert main(["digest", "--dry-run", "--config", config]) == 0
    assert "Báo cáo văn thư" in capsys.readouterr().out
    assert main(["digest", "--send", "--config", config]) == 0

    received = office.smtp.messages()
    assert len(received) == 1 and sorted(received[0].rcpt_tos) == [
        "giamdoc.sxd@example.gov.vn", "vanphong@example.gov.vn"]


@pytest.mark.db
def test_a_period_is_claimed_once(database: Engine) -> None:
    """The first claim of a period queues its digest; another claim of the same period, by a
    restart or a second daemon, queues nothing."""
    cfg = config.load(None)
    rules = rules_module.load(RULES)
    to = ["giamdoc.sxd@example.gov.vn"]
    email = digest.compose(cfg, digest.Digest("Báo cáo văn thư", "-", "<p>-</p>"), to,
                           "2026-11-23T06:00", datetime(2026, 11, 23, 6, 0, tzinfo=VN))

    first = digest.claim(database, cfg, rules, email, to, "2026-11-23T06:00")
    again = digest.claim(database, cfg, rules, email, to, "2026-11-23T06:00")

    assert first is email and again is None
    with database.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(outbox)) == 1
        assert conn.scalars(select(digests.c.period)).all() == ["2026-11-23T06:00"]


@pytest.mark.parametrize(("fetched", "failed", "shown"), [
    (None, None, True),  # never fetched: the error is all there is
    (0, 1, True),  # failed after the last good fetch
    (1, 0, False),  # a later fetch got past it
    (1, None, False),  # an error of unknown time, with a good fetch since
])
def test_a_mailbox_error_counts_while_newer_than_the_last_fetch(
        fetched: int | None, failed: int | None, shown: bool) -> None:
    """`status` and the digest share one rule: a folder's last error is a problem only while
    no successful fetch came after it."""
    start = datetime(2026, 11, 23, 6, 0, tzinfo=VN)

    def at(minutes: int | None) -> datetime | None:
        return None if minutes is None else start + timedelta(minutes=minutes)

    box = SimpleNamespace(last_error="LOGIN failed", last_fetch_at=at(fetched),
                          last_error_at=at(failed))

    assert health.mailbox_error(box) == ("LOGIN failed" if shown else None)
    assert health.mailbox_error(SimpleNamespace(last_error=None, last_fetch_at=None,
                                                last_error_at=None)) is None


# -- Outgoing trouble and faults in the digest ---------------------------------------------


def _outbox_row(n: int, *, created: datetime, **values: Any) -> Any:
    return insert(outbox).values(**{
        "header_message_id": f"<{n}.digest@sxd.example.gov.vn>", "action": "forward",
        "recipients": [DIRECTOR],
        "state": OutboxState.PENDING, "attempts": 0, "next_attempt_at": created,
        "created_at": created, **values})


@pytest.mark.db
def test_the_digest_names_failed_emails_refused_recipients_and_faults(
        database: Engine, tmp_path: Path) -> None:
    """The Chief of Office reads, in Vietnamese and local time: the email that failed, the one
    that may have arrived unconfirmed (do not resend blindly), the Director's copy the server
    refused while the others got theirs, SMTP failing and the disk running low; the faults
    come first, and the HTML stays a plain list a phone shows at its width."""
    cfg = dataclasses.replace(config.load(None), storage=StorageConfig(data_dir=tmp_path),
                              status=StatusConfig(min_free_mb=2**40))  # more than any disk
    rules = rules_module.load(RULES)
    start = datetime(2026, 11, 23, 6, 0, tzinfo=VN)
    end = datetime(2026, 11, 23, 12, 0, tzinfo=VN)
    at = datetime(2026, 11, 23, 8, 30, tzinfo=VN).astimezone(UTC)
    others = ["vanphong.sxd@example.gov.vn", "qlxd.sxd@example.gov.vn"]
    with database.begin() as conn:
        conn.execute(_outbox_row(1, created=at, state=OutboxState.FAILED, attempts=10,
                                 tries_begun=10, last_error="550 5.7.1 Thư bị từ chối"))
        conn.execute(_outbox_row(2, created=at, state=OutboxState.FAILED, attempts=0,
                                 tries_begun=2, action="result",
                                 last_error="không có trả lời sau DATA"))
        conn.execute(_outbox_row(3, created=at, state=OutboxState.SENT, attempts=1,
                                 recipients=[DIRECTOR, *others], delivered=others,
                                 sent_at=at + timedelta(minutes=1),
                                 refused={DIRECTOR: "550 5.1.1 Hộp thư không tồn tại"}))
        conn.execute(_outbox_row(4, created=start - timedelta(days=3), state=OutboxState.SENT,
                                 sent_at=start - timedelta(days=3),
                                 refused={"cu@example.gov.vn": "550 đã báo kỳ trước"}))
        conn.execute(insert(health_table).values(
            component="smtp", problem="421 4.3.2 Đang bảo trì", since=at,
            updated_at=at))

    report = digest.build(database, cfg, rules, start, end)

    lines = report.text.splitlines()
    assert lines[3] == "SỰ CỐ: VĂN THƯ ĐIỆN TỬ CẦN ĐƯỢC KIỂM TRA"
    trouble = lines[4:lines.index("", 4)]
    assert any(line.startswith("- Ổ đĩa chứa kho thư") for line in trouble)
    assert any("Máy chủ gửi thư (SMTP) lỗi liên tục từ 08:30 23/11/2026" in line
               and "421 4.3.2 Đang bảo trì" in line for line in trouble)
    failed = _section_lines(report.text, "THƯ KHÔNG GỬI ĐƯỢC")
    assert failed == [
        f"- Thư chuyển văn bản → {DIRECTOR} (tạo lúc 08:30 23/11/2026): 550 5.7.1 Thư bị từ "
        "chối",
        f"- Thư trả kết quả → {DIRECTOR} (tạo lúc 08:30 23/11/2026): không có trả lời sau "
        "DATA · CÓ THỂ ĐÃ ĐẾN NƠI (máy chủ không xác nhận): hỏi lại người nhận trước khi gửi "
        "lại"]
    refused = _section_lines(report.text, "NGƯỜI NHẬN BỊ MÁY CHỦ THƯ TỪ CHỐI")
    assert refused == [f"- {DIRECTOR}: thư chuyển văn bản lúc 08:31 23/11/2026 · 550 5.1.1 "
                       "Hộp thư không tồn tại"]  # not the refusal of an earlier period
    assert f"<li>{DIRECTOR}: thư chuyển văn bản lúc 08:31" in report.html
    assert "<table" not in report.html and "width=device-width" in report.html
    assert not re.search(r"(?<!max-)width:\s*\d", report.html)  # no fixed width


@pytest.mark.db
def test_the_december_digest_warns_that_next_years_days_off_are_not_announced(
        database: Engine, tmp_path: Path) -> None:
    cfg = dataclasses.replace(config.load(None), storage=StorageConfig(data_dir=tmp_path))
    rules = rules_module.load(RULES)

    def trouble(day: date) -> list[str]:
        start = datetime.combine(day, datetime.min.time(), VN).replace(hour=6)
        report = digest.build(database, cfg, rules, start, start + timedelta(hours=6))
        if not report.text.splitlines()[3].startswith("SỰ CỐ"):
            return []
        return _section_lines(report.text, "SỰ CỐ")

    [line] = trouble(date(2026, 12, 1))
    assert "Lịch nghỉ lễ, Tết năm 2027 chưa được cập nhật" in line
    assert trouble(date(2026, 11, 30)) == []


def _section_lines(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith(title)) + 1
    return lines[first:next((i for i in range(first, len(lines)) if not lines[i]), len(lines))]


# -- Once per period across daemons -----------------------------------------------------------


def _together(engines: list[Engine], job: Callable[[Engine], T]) -> list[T]:
    """Run `job` on each engine in its own thread, released at the same moment."""
    barrier = threading.Barrier(len(engines))

    def run(engine: Engine) -> T:
        barrier.wait(timeout=60)
        return job(engine)

    with ThreadPoolExecutor(len(engines)) as pool:
        return list(pool.map(run, engines))


def _digest_at(cfg: config.Config, rules: rules_module.RuleSet, moment: datetime,
               engine: Engine) -> str | None:
    return digest.send_due(engine, cfg, rules, moment)


def _remind_on(cfg: config.Config, rules: rules_module.RuleSet, day: date,
               engine: Engine) -> int:
    return send_reminders(engine, cfg, rules, day)


@pytest.mark.db
def test_two_daemons_queue_one_digest_per_period(tmp_path: Path, db_url: str) -> None:
    """Two daemons (two engines, two threads, one database) asking for each of six periods
    at the same moment: each period is queued once, by one of them."""
    engines = [make_engine(db_url) for _ in range(2)]
    upgrade(engines[0])
    cfg = dataclasses.replace(config.load(None), storage=StorageConfig(data_dir=tmp_path),
                              digest=DigestConfig(to=("giam_doc",)))
    rules = rules_module.load(RULES)
    try:
        for day in (23, 24):
            for hour in (6, 12, 18):
                moment = datetime(2026, 11, day, hour, 0, 20, tzinfo=VN)
                keys = _together(engines, functools.partial(_digest_at, cfg, rules, moment))
                assert sorted(keys, key=str) == [f"2026-11-{day}T{hour:02d}:00", None]
        with engines[0].connect() as conn:
            periods = list(conn.scalars(select(digests.c.period)))
            rows = list(conn.scalars(select(outbox.c.header_message_id)
                                     .where(outbox.c.action == "digest")))
    finally:
        for engine in engines:
            engine.dispose()
    assert len(periods) == len(set(periods)) == 6
    assert len(rows) == len(set(rows)) == 6


@pytest.mark.db
def test_two_daemons_send_one_reminder_per_case_per_day(tmp_path: Path, db_url: str) -> None:
    """Three open cases due within the reminder days, two daemons running the reminder job at
    the same moment on each of two days: one reminder per case per day, and the two jobs'
    counts add up to exactly that."""
    engines = [make_engine(db_url) for _ in range(2)]
    upgrade(engines[0])
    cfg = dataclasses.replace(config.load(None), storage=StorageConfig(data_dir=tmp_path))
    rules = rules_module.load(RULES)
    monday, tuesday = date(2026, 11, 23), date(2026, 11, 24)
    with engines[0].begin() as conn:
        for n, name in enumerate(["Nguyễn Thị Hoà", "Trần Văn Đức", "Lê Thị Ngọc Ánh"], 1):
            conn.execute(insert(cases).values(
                code=f"000.00.22.H56-261120-000{n}", opened_at=datetime.now(UTC),
                status=CaseStatus.IN_PROGRESS, applicant_name=name,
                applicant_email=f"nguoi{n}@example.com",
                procedure="Cấp giấy phép xây dựng", lead_department="qlxd",
                deadline=date(2026, 11, 25)))
    try:
        counts = [_together(engines, functools.partial(_remind_on, cfg, rules, day))
                  for day in (monday, tuesday)]
        with engines[0].connect() as conn:
            claimed = conn.execute(select(reminders.c.case_id, reminders.c.day)).all()
            sent = conn.scalar(select(func.count()).select_from(outbox)
                               .where(outbox.c.action == "reminder"))
    finally:
        for engine in engines:
            engine.dispose()
    assert [sum(c) for c in counts] == [3, 3]
    assert len(claimed) == len(set(claimed)) == 6 and sent == 6


@pytest.mark.db
def test_the_digest_names_people_shows_dossiers_and_urgent_apart(tmp_path: Path) -> None:
    """On a phone: the urgent document in its own section first, a dossier with its case code
    and procedure, the leaders by name and title instead of addresses, and no empty section."""
    from tests.desk import DOCUMENT, Desk
    from tests.desk import mail as desk_mail

    desk = Desk(tmp_path)
    urgent = DOCUMENT.replace("Số: 1000/UBND-KT", "HỎA TỐC\nSố: 1000/UBND-KT")
    desk.receive(desk_mail("vanthu@tayninh.gov.vn", "Công văn 1000/UBND-KT", urgent),
                 (CORPUS / "017.eml").read_bytes())
    desk.process()
    with desk.engine.connect() as conn:
        code = conn.scalar(select(cases.c.code))
    start = datetime.now(UTC) - timedelta(hours=1)

    report = digest.build(desk.engine, desk.cfg, desk.rules, start,
                          datetime.now(UTC) + timedelta(minutes=1))

    assert ", 1 KHẨN" in report.subject
    [first] = _section_lines(report.text, "VĂN BẢN KHẨN")
    assert first.startswith("- [HỎA TỐC] số đến 1/")
    assert "Nguyễn Văn An (Giám đốc)" in first and "giamdoc.sxd@" not in first
    [dossier] = _section_lines(report.text, "VĂN BẢN, HỒ SƠ ĐÃ VÀO SỔ")
    assert f"hồ sơ {code} · Cấp chứng chỉ hành nghề hoạt động xây dựng · hẹn trả" in dossier
    titles = [line for line in report.text.splitlines() if line.isupper()]
    assert "KẾT QUẢ ĐÃ GỬI" not in titles and "(không có)" not in report.text
    assert "THƯ KHÔNG GỬI ĐƯỢC" not in report.text


@pytest.mark.db
def test_a_digest_before_the_mail_was_read_says_so_and_overdue_comes_first(
        tmp_path: Path) -> None:
    from tests.desk import DOCUMENT, Desk
    from tests.desk import mail as desk_mail

    desk = Desk(tmp_path)
    desk.receive((CORPUS / "017.eml").read_bytes())
    desk.process()
    with desk.engine.begin() as conn:  # the dossier's deadline has passed
        conn.execute(update(cases).values(deadline=date(2026, 1, 5)))
    desk.receive(desk_mail("vanthu@tayninh.gov.vn", "Công văn", DOCUMENT))  # not read yet
    now = datetime.now(UTC)

    report = digest.build(desk.engine, desk.cfg, desk.rules, now - timedelta(hours=1),
                          now + timedelta(minutes=1))

    titles = [line for line in report.text.splitlines()[3:] if line and line.isupper()]
    assert titles[:2] == ["THƯ CHƯA XỬ LÝ XONG KHI LẬP BÁO CÁO",
                          "HẠN GIẢI QUYẾT HÔM NAY VÀ QUÁ HẠN"]
    [waiting] = _section_lines(report.text, "THƯ CHƯA XỬ LÝ XONG")
    assert waiting.startswith("- 1 thư đã nhận nhưng chưa được đọc")
    [late] = _section_lines(report.text, "HẠN GIẢI QUYẾT")
    assert late.startswith("- QUÁ HẠN 05/01/2026 · hồ sơ ")
