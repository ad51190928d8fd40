"""Dossiers and deadlines: the receipt slip with its appointment date, the working-day
calendar, supplements that stop and restart the clock, reminders and the one apology."""

from __future__ import annotations

import io
import json
import shutil
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from zoneinfo import ZoneInfo

import pypdf
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, select, update

from daemon import config
from daemon.cli import main
from daemon.config import CalendarConfig
from daemon.db import case_events, cases, register_entries
from daemon.errors import ConfigError
from daemon.models import CaseStatus
from daemon.office import cases as cases_module
from daemon.office.calendar import WorkCalendar
from daemon.office.reminders import send_reminders
from daemon.routing import rules as rules_module
from tests.conftest import CORPUS, RULES, Office

VN = ZoneInfo("Asia/Ho_Chi_Minh")
CAL = WorkCalendar()


@pytest.mark.parametrize("year,days", [
    (2025, [date(2025, 1, 27), date(2025, 1, 28), date(2025, 1, 29), date(2025, 1, 30),
            date(2025, 1, 31), date(2025, 4, 7), date(2025, 4, 30), date(2025, 5, 1),
            date(2025, 5, 2), date(2025, 9, 1), date(2025, 9, 2)]),
    (2026, [date(2026, 1, 1), date(2026, 2, 16), date(2026, 2, 17), date(2026, 2, 18),
            date(2026, 2, 19), date(2026, 2, 20), date(2026, 4, 27), date(2026, 4, 30),
            date(2026, 5, 1), date(2026, 8, 31), date(2026, 9, 1), date(2026, 9, 2)]),
    (2027, [date(2027, 1, 1), date(2027, 2, 4), date(2027, 2, 5), date(2027, 2, 8),
            date(2027, 2, 9), date(2027, 2, 10), date(2027, 4, 16), date(2027, 4, 30),
            date(2027, 5, 3), date(2027, 9, 2), date(2027, 9, 3)]),
])
def test_public_holidays_are_rest_days(year: int, days: list[date]) -> None:
    """Tết, Hùng Kings' day, 30/4, 1/5, 2/9 and substitute days are not worked (Culture Day,
    24/11, is only proposed: see test_calendar_official.py)."""
    assert [d for d in days if CAL.is_working_day(d)] == []
    assert CAL.is_working_day(date(2026, 8, 22))  # a Saturday swapped into work


def test_agency_overrides() -> None:
    """Extra days off and worked Saturdays from config change the count."""
    calendar = WorkCalendar(days_off=[date(2026, 6, 1)], working_days=[date(2026, 6, 6)])

    assert not calendar.is_working_day(date(2026, 6, 1))
    assert calendar.is_working_day(date(2026, 6, 6))


@given(start=st.dates(date(2025, 1, 1), date(2027, 12, 1)), count=st.integers(0, 40))
def test_deadlines_never_land_on_a_rest_day_and_grow(start: date, count: int) -> None:
    """Adding working days is monotonic and always ends on a working day."""
    due = CAL.add_working_days(start, count)
    later = CAL.add_working_days(start, count + 1)

    assert CAL.is_working_day(due)
    assert due >= start and later >= due
    assert later > due or count == 0  # from a rest day, 0 and 1 both give the next working day
    assert cases_module.working_days_between(CAL, start, due) >= count


@pytest.mark.parametrize("received,days,settings,expected", [
    (datetime(2026, 5, 7, 10, 0), 1, {}, date(2026, 5, 8)),      # Thursday morning
    (datetime(2026, 5, 7, 16, 30), 1, {}, date(2026, 5, 11)),    # after the 16:00 cut-off
    (datetime(2026, 5, 9, 9, 0), 1, {}, date(2026, 5, 12)),      # a Saturday: from Monday
    (datetime(2027, 2, 3, 9, 0), 3, {}, date(2027, 2, 15)),      # across Tết 2027
    (datetime(2026, 5, 7, 10, 0), 1, {"result_weekday": 3}, date(2026, 5, 14)),  # Thursdays
])
def test_appointment_dates(received: datetime, days: int, settings: dict[str, int],
                           expected: date) -> None:
    """The appointment skips weekends and holidays, honours the cut-off and return weekday."""
    config = CalendarConfig(**settings)  # type: ignore[arg-type]

    assert cases_module.appointment(config, CAL, received.replace(tzinfo=VN), days) == expected


def test_every_status_has_its_vietnamese_name() -> None:
    """Each portal status has the name `case list` and the printed registers show."""
    assert set(cases_module.STATUS_NAMES) == set(CaseStatus)


def _case(office: Office) -> object:
    engine = office.engine()
    with engine.connect() as conn:
        row = conn.execute(select(cases)).one()
    engine.dispose()
    return row


def _sent(office: Office, action: str) -> list[object]:
    return [message_from_bytes(m.data, policy=policy.default) for m in office.smtp.messages()
            if f"X-Vanthu-Action: {action}".encode() in m.data]


def test_dossier_gets_a_receipt_with_code_and_appointment(office: Office) -> None:
    """On the real servers a dossier's acknowledgement is the receipt slip, in the mail and as
    a PDF, with the case code, procedure, documents, and a working-day appointment date."""
    office.deliver((CORPUS / "017.eml").read_bytes())

    office.run_daemon(until=lambda: office.settled(1))

    case = _case(office)
    receipt = _sent(office, "acknowledge")[0]
    subject = str(receipt["Subject"])  # type: ignore[index]
    assert subject == f"[{case.code}] Giấy tiếp nhận hồ sơ và hẹn trả kết quả"  # type: ignore[attr-defined]
    text = receipt.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    assert case.procedure == "Cấp chứng chỉ hành nghề hoạt động xây dựng"  # type: ignore[attr-defined]
    expected = cases_module.appointment(office.cfg.calendar, CAL,
                                        case.opened_at.astimezone(VN), 20)  # type: ignore[attr-defined]
    assert case.deadline == expected  # type: ignore[attr-defined]
    assert f"ngày {expected:%d/%m/%Y}" in text and "20 ngày làm việc" in text
    assert "Thành phần hồ sơ nộp gồm:" in text and "Số lượng hồ sơ: 01 bộ" in text
    assert "Bằng Kiến trúc sư.jpg (bản điện tử, 01 tệp)" in text
    pdf = next(receipt.iter_attachments())  # type: ignore[attr-defined]
    pdf_text = pypdf.PdfReader(io.BytesIO(pdf.get_content())).pages[0].extract_text()
    assert case.code in pdf_text and "GIẤY TIẾP NHẬN HỒ SƠ" in pdf_text  # type: ignore[attr-defined]
    assert "CỘNG HÒA XÃ HỘI CHỦ NGHĨA VIỆT NAM" in pdf_text and "Bằng Kiến trúc sư.jpg" in pdf_text


@pytest.mark.parametrize("cutoff,counted_from", [("15:00", date(2026, 11, 20)),
                                                  (None, date(2026, 11, 19))])
def test_a_procedure_has_its_own_cut_off_hour(office: Office, cutoff: str | None,
                                              counted_from: date) -> None:
    """A dossier received at 15:30 on Thursday 19/11/2026: with its procedure's cut-off at
    15:00 it counts from Friday (the next working day); with none, the agency's 16:00
    counts it from Thursday (the day of receipt is never counted itself)."""
    rules = office.dir / "rules"
    shutil.copytree(RULES, rules, ignore=shutil.ignore_patterns("tests"))
    catalogue = (rules / "procedures.yaml").read_text(encoding="utf-8")
    if cutoff:
        catalogue = catalogue.replace("    keywords: [\"chứng chỉ hành nghề\", \"cchn\"]\n",
                                      "    keywords: [\"chứng chỉ hành nghề\", \"cchn\"]\n"
                                      f"    cutoff: \"{cutoff}\"\n")
        assert f'cutoff: "{cutoff}"' in catalogue
    (rules / "procedures.yaml").write_text(catalogue, encoding="utf-8")
    office.config_path.write_text(office.config_path.read_text().replace(
        f'dir = "{RULES}"', f'dir = "{rules}"'))
    received = datetime(2026, 11, 19, 15, 30, tzinfo=VN)
    client = office.imap()
    client.append("INBOX", (CORPUS / "017.eml").read_bytes(), msg_time=received)
    client.logout()

    office.run_daemon(until=lambda: office.settled(1))

    case = _case(office)
    assert case.procedure == "Cấp chứng chỉ hành nghề hoạt động xây dựng"  # type: ignore[attr-defined]
    assert case.deadline == CAL.add_working_days(counted_from, 20)  # type: ignore[attr-defined]


WRONG_TIMES = ["25:00", "3pm", "15h00", "", "1500", "15:00:00", "１５:００", "1５:00", "7:30"]


@pytest.mark.parametrize("bad", WRONG_TIMES)
def test_a_wrong_agency_cut_off_is_named(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.parse({"calendar": {"cutoff": bad}}, file="config.toml", text="",
                     base=tmp_path)
    assert any("cutoff" in str(p) for p in caught.value.problems)


@pytest.mark.parametrize("bad", WRONG_TIMES)
def test_a_wrong_procedure_cut_off_is_named(tmp_path: Path, bad: str) -> None:
    shutil.copytree(RULES, tmp_path / "rules", ignore=shutil.ignore_patterns("tests"))
    path = tmp_path / "rules" / "procedures.yaml"
    path.write_text(path.read_text(encoding="utf-8").replace(
        "    days: 20\n", f"    days: 20\n    cutoff: \"{bad}\"\n", 1), encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        rules_module.load(tmp_path / "rules")
    assert any("cutoff takes a time" in str(p) and "procedures.yaml:" in str(p)
               for p in caught.value.problems)


def test_supplement_request_stops_the_clock_and_the_supplement_restarts_it(
        office: Office) -> None:
    """request-supplement lists every item and pauses the case; the applicant's reply joins
    the case, restarts the clock (the deadline moves by the days it stood) and goes to the
    handler."""
    office.deliver((CORPUS / "017.eml").read_bytes())
    office.run_daemon(until=lambda: office.settled(1))
    case = _case(office)
    code = case.code  # type: ignore[attr-defined]
    config = str(office.config_path)
    assert main(["case", "assign", code, "--lead", "qlxd", "--config", config]) == 0
    assert main(["case", "request-supplement", code, "--items", "Bản sao văn bằng",
                 "Bản khai kinh nghiệm có xác nhận", "--config", config]) == 0
    paused_on = datetime.now(VN).date() - timedelta(days=7)
    engine = office.engine()
    with engine.begin() as conn:  # the request was made a week ago
        conn.execute(update(cases).values(paused_at=paused_on))
    engine.dispose()
    deadline_before = _case(office).deadline  # type: ignore[attr-defined]
    reply = (CORPUS / "017.eml").read_bytes().replace(
        b"Message-ID: <", b"Message-ID: <supplement.", 1)
    reply = reply.replace(b"Subject: ", f"Subject: [{code}] ".encode(), 1)

    office.deliver(reply)
    office.run_daemon(until=lambda: office.settled(2))

    case = _case(office)
    stood = cases_module.working_days_between(CAL, paused_on, datetime.now(VN).date())
    assert case.status == "in_progress"  # type: ignore[attr-defined]
    assert case.deadline == CAL.add_working_days(deadline_before, stood)  # type: ignore[attr-defined]
    engine = office.engine()
    with engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(cases)) == 1  # no new case
        assert conn.scalar(select(func.count()).select_from(register_entries)) == 1
        events = list(conn.scalars(select(case_events.c.event).order_by(case_events.c.id)))
    engine.dispose()
    assert "supplement_requested" in events and "supplement_received" in events
    request = _sent(office, "supplement")[0]
    body = request.get_body(("plain",)).get_content()  # type: ignore[attr-defined]
    assert "1. Bản sao văn bằng" in body and "2. Bản khai kinh nghiệm có xác nhận" in body
    forwards = [m for m in office.smtp.messages() if b"X-Vanthu-Action: forward" in m.data]
    assert "qlxd.sxd@example.gov.vn" in forwards[-1].rcpt_tos


def test_reminder_before_the_deadline_and_one_apology(office: Office,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """With a controllable day: a reminder goes N working days before the deadline, once;
    the apology with a new date goes once, and only before the deadline."""
    office.deliver((CORPUS / "017.eml").read_bytes())
    office.run_daemon(until=lambda: office.settled(1))
    case = _case(office)
    cfg = office.cfg
    ruleset = rules_module.load(cfg.rules.dir)
    engine = office.engine()
    deadline = case.deadline  # type: ignore[attr-defined]
    two_before = deadline
    for _ in range(2):
        two_before -= timedelta(days=1)
        while not CAL.is_working_day(two_before):
            two_before -= timedelta(days=1)

    early = send_reminders(engine, cfg, ruleset, two_before - timedelta(days=7))
    due = send_reminders(engine, cfg, ruleset, two_before)
    again = send_reminders(engine, cfg, ruleset, two_before)

    assert (early, due, again) == (0, 1, 0)
    config = str(office.config_path)
    new_date = (deadline + timedelta(days=10)).isoformat()
    assert main(["case", "postpone", case.code, "--to", new_date,  # type: ignore[attr-defined]
                 "--config", config]) == 0
    assert main(["case", "postpone", case.code, "--to", new_date,  # type: ignore[attr-defined]
                 "--config", config]) == 1
    office.run_daemon(until=lambda: len(_sent(office, "apology")) == 1
                      and len(_sent(office, "reminder")) == 1)
    assert _case(office).deadline.isoformat() == new_date  # type: ignore[attr-defined]
    capsys.readouterr()
    assert main(["case", "show", case.code, "--json", "--config", config]) == 0  # type: ignore[attr-defined]
    shown = json.loads(capsys.readouterr().out)
    assert [e["event"] for e in shown["events"]][:1] == ["received"]
    assert "reminder_sent" in [e["event"] for e in shown["events"]]
    assert "apology_sent" in [e["event"] for e in shown["events"]]


def test_intake_capacity_moves_dossiers_to_the_next_half_day(database: Engine) -> None:
    """With a capacity of two per half-day the third dossier of a morning gets the afternoon,
    and the fifth the next working morning, each with its queue number."""
    engine = database
    settings = CalendarConfig(capacity_per_half_day=2)
    friday_morning = datetime(2026, 5, 8, 9, 0, tzinfo=VN)

    with engine.begin() as conn:
        slots = [cases_module.take_slot(conn, settings, CAL, friday_morning) for _ in range(5)]

    assert [str(s) for s in slots] == [
        "số thứ tự 1, buổi sáng ngày 08/05/2026", "số thứ tự 2, buổi sáng ngày 08/05/2026",
        "số thứ tự 1, buổi chiều ngày 08/05/2026", "số thứ tự 2, buổi chiều ngày 08/05/2026",
        "số thứ tự 1, buổi sáng ngày 11/05/2026"]
    assert cases_module.appointment(settings, CAL, friday_morning, 1,
                                    slots[4].day) == date(2026, 5, 12)
