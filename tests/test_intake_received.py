"""The time of receipt is the server's (issue 12, item 8): a dossier the agency's server took
on Friday at 15:00 and vanthu fetched later (after a weekend outage, say) is registered, opened
and given its appointment date as of Friday 15:00, not as of the fetch; the fetch time is kept
beside it. An INTERNALDATE that cannot be a time of receipt falls back to the fetch time."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime, timedelta, timezone
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select

from daemon.cli import main
from daemon.db import cases, messages, register_entries
from daemon.intake.store import Fetched, received_time
from daemon.office import cases as cases_module
from daemon.office import digest
from daemon.routing import rules as rules_module
from tests.conftest import CORPUS, Office
from tests.test_intake_crashloop import document

DOSSIER = CORPUS / "017.eml"  # a dossier: a case, a procedure, an appointment, a receipt


def last_friday_at_three(office: Office) -> datetime:
    """Last Friday (a week ago when today is Friday) at 15:00 in the agency's time zone."""
    tz = office.cfg.agency.tz
    today = datetime.now(tz).date()
    back = (today.weekday() - 4) % 7 or 7
    day = today - timedelta(days=back)
    return datetime(day.year, day.month, day.day, 15, 0, tzinfo=tz)


def receipt_text(office: Office) -> str:
    """The plain text of the acknowledgement (the receipt slip) sent to the applicant."""
    for received in office.smtp.messages():
        if b"X-Vanthu-Action: acknowledge" in received.data:
            mail = message_from_bytes(received.data, policy=policy.default)
            assert isinstance(mail, EmailMessage)
            body = mail.get_body(("plain",))
            assert body is not None
            return str(body.get_content())
    raise AssertionError("no acknowledgement was sent")


def test_a_dossier_received_on_friday_is_dated_friday(
        office: Office, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str]) -> None:
    """Beside it, a document whose INTERNALDATE is before 2000 (Dovecot keeps a date in the
    past as given; one in the future it replaces by its own time, so that case is proved on
    `received_time` below) is dated by its fetch time, with a log line saying so."""
    friday = last_friday_at_three(office)
    client = office.imap()
    client.append("INBOX", DOSSIER.read_bytes(), msg_time=friday)
    client.append("INBOX", document(1, "old"), msg_time=datetime(1995, 3, 1, 9, 0, tzinfo=UTC))
    client.logout()
    started = datetime.now(UTC)

    with caplog.at_level(logging.WARNING, logger="vanthu.store"):
        office.run_daemon(until=lambda: office.settled(2))

    cfg = office.cfg
    engine = office.engine()
    with engine.connect() as conn:
        mail, old = conn.execute(select(messages).order_by(messages.c.id)).all()
        entry, old_entry = conn.execute(select(register_entries)
                                        .order_by(register_entries.c.message_id)).all()
        case = conn.execute(select(cases)).one()
    engine.dispose()
    assert mail.received_at == friday.astimezone(UTC)
    assert mail.stored_at >= started  # the fetch time is kept beside it
    assert entry.received_at == friday.astimezone(UTC)
    assert case.opened_at == friday.astimezone(UTC)
    assert friday.strftime("%y%m%d") in case.code  # the case code carries the day of receipt
    days = next(p.days for p in rules_module.load(cfg.rules.dir).procedures
                if p.id == case.procedure_id)
    calendar = cfg.calendar.work_calendar()
    assert case.deadline == cases_module.appointment(cfg.calendar, calendar, friday, days)
    assert entry.deadline in (None, case.deadline)
    slip = receipt_text(office)
    assert f"15 giờ 00 phút, ngày {friday:%d/%m/%Y}" in slip
    assert f"ngày {case.deadline:%d/%m/%Y}" in slip

    # The emails it caused are dated when vanthu took the mail (a forward made on Monday of a
    # Friday mail is not filed out of sight among Friday's mail) ...
    for received in office.smtp.messages():
        sent = message_from_bytes(received.data, policy=policy.default)
        assert parsedate_to_datetime(str(sent["Date"])) >= started.replace(microsecond=0)
    # ... and the entries are in the digest of the period they were written in, not in one
    # of Friday's digests, long sent.
    now = datetime.now(UTC) + timedelta(seconds=1)
    report = digest.build(office.engine(), cfg, rules_module.load(cfg.rules.dir), started, now)
    assert "2 văn bản, hồ sơ vào sổ" in report.text
    friday_window = digest.build(office.engine(), cfg, rules_module.load(cfg.rules.dir),
                                 friday - timedelta(hours=1), friday + timedelta(hours=6))
    assert "0 văn bản, hồ sơ vào sổ" in friday_window.text

    assert old.received_at == old.stored_at >= started
    assert old_entry.received_at == old.stored_at
    ignored = [r for r in caplog.records if r.getMessage() == "mail.internaldate_ignored"]
    assert [getattr(r, "internaldate", "")[:4] for r in ignored] == ["1995"]

    # The register shows both: the server's time of receipt, and when vanthu took the mail.
    year = ["--year", str(friday.year), "--config", str(office.config_path)]
    assert main(["register", "list", "--json", *year]) == 0
    listed = {e["mail_id"]: e for e in json.loads(capsys.readouterr().out)}
    assert listed[mail.id]["received_at"] == friday.astimezone(UTC).isoformat()
    assert listed[mail.id]["stored_at"] == mail.stored_at.isoformat()
    assert main(["register", "list", *year]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if f"(thư #{mail.id})" in x)
    assert f"{friday:%d/%m/%Y} 15:00" in line
    assert f"(lấy về {mail.stored_at.astimezone(cfg.agency.tz):%d/%m/%Y %H:%M})" in line


FETCHED_AT = datetime(2026, 11, 23, 8, 30, tzinfo=UTC)  # a Monday morning


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1),
                    timezones=st.sampled_from([UTC, timezone(timedelta(hours=7)),
                                               timezone(timedelta(hours=-5))])))
def test_received_time_takes_only_a_plausible_internaldate(when: datetime) -> None:
    """Kept when between 2000 and a few minutes past the fetch; else the fetch time."""
    got = received_time(Fetched(1, b"x", internaldate=when), FETCHED_AT, {})
    plausible = datetime(2000, 1, 1, tzinfo=UTC) <= when <= FETCHED_AT + timedelta(minutes=5)
    assert got == (when if plausible else FETCHED_AT)
    assert got.utcoffset() == timedelta(0)


def test_received_time_without_a_usable_internaldate_is_the_fetch_time() -> None:
    assert received_time(Fetched(1, b"x"), FETCHED_AT, {}) == FETCHED_AT
    naive = Fetched(1, b"x", internaldate=datetime(2026, 11, 20, 15, 0))
    assert received_time(naive, FETCHED_AT, {}) == FETCHED_AT
