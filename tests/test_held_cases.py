"""Dossiers held for the clerk's decision ("Chờ văn thư kiểm tra"): listed in the digest and
reminded each working day until decided; `case accept CODE --procedure ID` names the
procedure vanthu did not recognise; a supplement asked on a held dossier pauses the clock from
the day of the command. And NFD department names in people.yaml still match directives."""

from __future__ import annotations

import shutil
import unicodedata
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Literal

import pytest
from sqlalchemy import select

from daemon.cli import main
from daemon.db import case_events, cases, outbox, outbox_bodies
from daemon.office import cases as cases_module
from daemon.office import digest
from daemon.office.directives import read_directive
from daemon.office.reminders import send_reminders
from daemon.routing import rules as rules_module
from tests.conftest import RULES
from tests.desk import FORM, Desk, mail
from tests.test_completeness import _config, _dossier

MONDAY = date(2026, 11, 30)  # a working day
SUNDAY = date(2026, 11, 29)


def _held_unknown(desk: Desk) -> Any:
    """A dossier of a procedure vanthu does not know: held, its applicant told it arrived."""
    desk.receive(mail("hoanganh.le@gmail.com", "Nộp hồ sơ công nhận văn bằng nước ngoài",
                      "Kính gửi Sở, tôi tên là Lê Hoàng Anh, xin nộp hồ sơ đề nghị công nhận "
                      "văn bằng do cơ sở giáo dục nước ngoài cấp. Hồ sơ đính kèm.",
                      attachment=FORM))
    desk.process()
    with desk.engine.connect() as conn:
        case = conn.execute(select(cases)).one()
    assert case.status == "needs_review" and case.procedure_id is None
    return case


def _emails(desk: Desk, action: str) -> list[EmailMessage]:
    with desk.engine.connect() as conn:
        rows = conn.execute(select(outbox_bodies.c.raw).join_from(outbox, outbox_bodies)
                            .where(outbox.c.action == action)
                            .order_by(outbox.c.id)).all()
    return [message_from_bytes(r.raw, policy=policy.default) for r in rows]


def _text(message: EmailMessage) -> str:
    return str(message.get_body(("plain",)).get_content())  # type: ignore[union-attr]


def test_held_dossiers_wait_in_the_digest_and_in_reminders(tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    case = _held_unknown(desk)
    now = datetime.now(UTC)

    text = digest.build(desk.engine, desk.cfg, desk.rules, now - timedelta(days=1), now).text
    assert "HỒ SƠ CHỜ VĂN THƯ KIỂM TRA" in text
    assert f"hồ sơ {case.code} · Lê Hoàng Anh · chưa xác định thủ tục" in text
    assert f"vanthu case accept {case.code}" in text

    assert send_reminders(desk.engine, desk.cfg, desk.rules, SUNDAY) == 0  # a rest day
    assert send_reminders(desk.engine, desk.cfg, desk.rules, MONDAY) == 1
    assert send_reminders(desk.engine, desk.cfg, desk.rules, MONDAY) == 0  # once a day
    [reminder] = _emails(desk, "reminder")
    assert str(reminder["Subject"]).startswith(f"[{case.code}] Hồ sơ chờ văn thư kiểm tra")
    to = {a.strip() for a in str(reminder["To"]).split(",")}
    assert {"cvp.sxd@example.gov.vn", "vanthu1.sxd@example.gov.vn"} <= to
    body = _text(reminder)
    assert "Chờ văn thư kiểm tra" in body and "needs_review" not in body
    assert "chưa có ngày hẹn" in body and "--procedure" in body


def test_accept_names_the_procedure_and_counts_from_receipt(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    desk = Desk(tmp_path)
    case = _held_unknown(desk)
    config = _config(desk, tmp_path)
    procedure = next(p for p in desk.rules.procedures if p.id == "gpxd-nha-o")

    assert main(["case", "accept", case.code, "--procedure", "không-có", "--config",
                 config]) == 1
    err = capsys.readouterr().err
    assert "không có thủ tục «không-có»" in err and "gpxd-nha-o" in err
    with desk.engine.connect() as conn:
        assert conn.execute(select(cases.c.status)).scalar() == "needs_review"

    assert main(["case", "accept", case.code, "--procedure", "gpxd-nha-o", "--config", config,
                 "--actor", "Đặng Thị Mỹ Duyên"]) == 0
    with desk.engine.connect() as conn:
        after = conn.execute(select(cases)).one()
        [accepted] = conn.execute(select(case_events).where(
            case_events.c.event == "accepted")).all()
    received = case.opened_at.astimezone(desk.cfg.agency.tz)
    expected = cases_module.appointment(desk.cfg.calendar, desk.cfg.calendar.work_calendar(),
                                        received, procedure.days)
    assert (after.status, after.procedure_id, after.procedure, after.deadline) == (
        "received", "gpxd-nha-o", procedure.name, expected)
    assert accepted.detail["procedure"] == "gpxd-nha-o"
    assert accepted.actor == "Đặng Thị Mỹ Duyên"
    slip = _emails(desk, "acknowledge")[-1]
    assert "Giấy tiếp nhận hồ sơ và hẹn trả kết quả" in str(slip["Subject"])
    body = " ".join(_text(slip).split())
    assert procedure.name in body and f"{expected:%d/%m/%Y}" in body
    # once: accepted already, the procedure is not changed again
    assert main(["case", "accept", case.code, "--procedure", "cchn", "--config", config]) == 0
    with desk.engine.connect() as conn:
        assert conn.execute(select(cases.c.procedure_id)).scalar() == "gpxd-nha-o"


def test_a_supplement_on_a_held_dossier_pauses_from_the_day_of_the_command(
        tmp_path: Path) -> None:
    desk = Desk(tmp_path)
    case = _dossier(desk, "039")  # held: two files withheld for their names
    assert case.status == "needs_review" and case.deadline is not None
    calendar = desk.cfg.calendar.work_calendar()
    asked = date(2026, 12, 3)  # days after the receipt: the agency's own checking time
    back = date(2026, 12, 10)
    with desk.engine.begin() as conn:
        cases_module.request_supplement(conn, desk.cfg, case, ["Bản vẽ thiết kế"], asked,
                                        "Văn thư")
    with desk.engine.connect() as conn:
        paused = conn.execute(select(cases)).one()
    assert (paused.status, paused.paused_at) == ("supplements_requested", asked)
    with desk.engine.begin() as conn:
        moved = cases_module.resume(conn, case.id, back, calendar, "vanthu")
    stood = cases_module.working_days_between(calendar, asked, back)
    assert stood == 5
    assert moved == calendar.add_working_days(case.deadline, stood)


def _nfd_rules(tmp_path: Path) -> Path:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    people = rules / "people.yaml"
    people.write_text(unicodedata.normalize("NFD", people.read_text(encoding="utf-8")),
                      encoding="utf-8")
    return rules


@pytest.mark.parametrize("form", ["NFC", "NFD"])
def test_nfd_department_names_still_match_directives(tmp_path: Path,
                                                     form: Literal["NFC", "NFD"]) -> None:
    rules = _nfd_rules(tmp_path)
    assert not unicodedata.is_normalized("NFC", (rules / "people.yaml").read_text("utf-8"))
    ruleset = rules_module.load(rules)
    calendar = Desk(tmp_path / "d").cfg.calendar.work_calendar()
    text = unicodedata.normalize(form, "Giao Phòng Quản lý xây dựng chủ trì, Văn phòng Sở "
                                       "phối hợp, hạn 10/12")
    found = read_directive(text, ruleset.departments, date(2026, 11, 26), calendar)
    assert (found.lead, found.cooperate, found.deadline) == (
        "qlxd", ("van_phong",), date(2026, 12, 10))
    assert found.problems == ()
