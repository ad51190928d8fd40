"""The digest: content in Vietnamese, once per period across restarts, sent on start when
missed, scheduled at the configured hours (a controllable clock, never sleeps)."""

from __future__ import annotations

from datetime import datetime, timedelta
from email import message_from_bytes, policy
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Engine, func, select

from daemon import config, health
from daemon.cli import main
from daemon.db import digests, outbox
from daemon.office import digest
from daemon.routing import rules as rules_module
from daemon.service import Daemon
from tests.conftest import CORPUS, RULES, Office

VN = ZoneInfo("Asia/Ho_Chi_Minh")


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
    assert "THƯ ĐANG GIỮ LẠI" in text and "failed authentication" in text
    assert "agency/INBOX: nhận thư lần cuối" in text
    assert "<h3>Văn bản, hồ sơ đã vào sổ" in report.html


def test_scheduler_fires_at_the_configured_hours(office: Office) -> None:
    """The jobs' triggers fire at each configured time in the agency's time zone."""
    _enable(office, '["06:00", "12:00", "18:00"]')
    cfg = office.cfg
    daemon = Daemon(cfg, rules_module.load(cfg.rules.dir))
    scheduler = daemon._scheduler()
    now = datetime(2026, 11, 23, 7, 0, tzinfo=VN)

    jobs = scheduler.get_jobs()
    fires = sorted(job.trigger.get_next_fire_time(None, now) for job in jobs
                   if job.id.startswith("digest"))
    reminder = next(job for job in jobs if job.id == "reminders")

    assert [f.strftime("%d %H:%M") for f in fires] == ["23 12:00", "23 18:00", "24 06:00"]
    assert reminder.trigger.get_next_fire_time(None, now).strftime("%d %H:%M") == "23 07:30"


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
