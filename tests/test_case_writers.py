"""The one writer of each table: `daemon.office.cases` changes cases with their events, threads
and letters; `daemon.office.register` writes the register; nothing else in the daemon does."""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import Connection, func, select, update

from daemon.cli import main
from daemon.db import (
    case_events,
    case_threads,
    cases,
    messages,
    outbox,
    outbox_bodies,
    register_entries,
)
from daemon.models import Assignment, CaseStatus
from daemon.office import cases as cases_module
from daemon.office import register as register_module
from daemon.office.cases import CaseEvent
from daemon.outbound.recipients import Allowed
from daemon.routing.rules import Department
from tests.conftest import AUTHSERV_ID, RULES
from tests.desk import FORM, Desk
from tests.desk import mail as _mail
from tests.test_inspect import AGENCY_CONFIG

APPLICANT = "an.nguyen@gmail.com"
TODAY = date(2026, 11, 23)
QLXD = Department("qlxd", "Phòng Quản lý xây dựng", "qlxd.sxd@example.gov.vn", None)
VAN_PHONG = Department("van_phong", "Văn phòng Sở", "vanphong.sxd@example.gov.vn", None)
DAEMON = Path(__file__).resolve().parent.parent / "daemon"


def _desk_with_case(tmp_path: Path, deadline: date | None = TODAY + timedelta(days=10)) -> Desk:
    """A desk whose pipeline opened one case from an authenticated applicant's dossier."""
    desk = Desk(tmp_path)
    desk.receive(_mail(APPLICANT, "Hồ sơ xin cấp giấy phép xây dựng",
                       "Tôi tên là Nguyễn Văn An, xin nộp hồ sơ đề nghị cấp giấy phép xây dựng "
                       "nhà ở riêng lẻ.", attachment=FORM, message_id="<ho-so-1@gmail.com>"))
    desk.process()
    with desk.engine.begin() as conn:
        conn.execute(update(cases).values(deadline=deadline))
    return desk


def _case(conn: Connection) -> Any:
    return conn.execute(select(cases)).one()


def _events(conn: Connection) -> list[str]:
    return list(conn.scalars(select(case_events.c.event).order_by(case_events.c.id)))


def _letters(conn: Connection, action: str) -> list[Any]:
    return [message_from_bytes(raw, policy=policy.default) for raw in conn.scalars(
        select(outbox_bodies.c.raw).join_from(outbox, outbox_bodies)
        .where(outbox.c.action == action))]


def _threaded(conn: Connection, letter: Any) -> bool:
    return conn.scalar(select(func.count()).select_from(case_threads).where(
        case_threads.c.header_message_id == str(letter["Message-ID"]))) == 1


@pytest.mark.db
def test_postpone_sends_one_apology_before_the_deadline(tmp_path: Path) -> None:
    """The apology with a new date goes once: the new date becomes the deadline, the letter is
    queued to the applicant and threaded to the case; a second one is refused with the
    reason and changes nothing."""
    desk = _desk_with_case(tmp_path)
    new_date = TODAY + timedelta(days=20)

    with desk.engine.begin() as conn:
        first = cases_module.postpone(conn, desk.cfg, _case(conn), new_date, "cần thẩm định",
                                      TODAY, "clerk", allowed=Allowed.nobody())
        second = cases_module.postpone(conn, desk.cfg, _case(conn), new_date, "lần nữa",
                                       TODAY, "clerk", allowed=Allowed.nobody())
        case, events, apologies = _case(conn), _events(conn), _letters(conn, "apology")
        threaded = _threaded(conn, apologies[0])

    assert first is None and second == "the apology with a new date was already sent once"
    assert case.deadline == new_date and case.apology_sent_at is not None
    assert events.count(CaseEvent.APOLOGY_SENT) == 1
    assert len(apologies) == 1 and str(apologies[0]["To"]) == APPLICANT
    assert str(apologies[0]["In-Reply-To"]) == "<ho-so-1@gmail.com>" and threaded


def test_postpone_after_the_deadline_is_refused(tmp_path: Path) -> None:
    """Once the deadline has passed, no apology goes and the case is untouched."""
    desk = _desk_with_case(tmp_path, deadline=TODAY - timedelta(days=1))

    with desk.engine.begin() as conn:
        why = cases_module.postpone(conn, desk.cfg, _case(conn), TODAY + timedelta(days=5),
                                    "muộn", TODAY, "clerk", allowed=Allowed.nobody())
        case, apologies = _case(conn), _letters(conn, "apology")

    assert why == "the deadline has passed: the apology must go before it"
    assert case.deadline == TODAY - timedelta(days=1) and apologies == []


def test_cannot_postpone_is_the_rule_alone() -> None:
    """The rule reads only the case: once per case, on or before the deadline day."""
    sent = SimpleNamespace(apology_sent_at=TODAY, deadline=TODAY)
    due_today = SimpleNamespace(apology_sent_at=None, deadline=TODAY)
    no_deadline = SimpleNamespace(apology_sent_at=None, deadline=None)

    assert cases_module.cannot_postpone(sent, TODAY) is not None
    assert cases_module.cannot_postpone(due_today, TODAY) is None
    assert cases_module.cannot_postpone(no_deadline, TODAY) is not None


@pytest.mark.db
def test_assign_hands_the_case_to_its_units(tmp_path: Path) -> None:
    """The lead and the deadline in working days from today are set, the case is in progress,
    the history says who assigned it, and the lead and cooperating units get the notice."""
    desk = _desk_with_case(tmp_path)
    allowed = Allowed.of(desk.rules, desk.cfg)

    with desk.engine.begin() as conn:
        deadline = cases_module.assign(conn, desk.cfg, _case(conn), QLXD, [VAN_PHONG], 5, TODAY,
                                       "clerk", allowed=allowed)
        case, events, notices = _case(conn), _events(conn), _letters(conn, "assign")
        threaded = _threaded(conn, notices[0])

    assert deadline == desk.cfg.calendar.work_calendar().add_working_days(TODAY, 5)
    assert (case.status, case.lead_department, case.deadline) == (CaseStatus.IN_PROGRESS,
                                                                   "qlxd", deadline)
    assert events[-2:] == [CaseEvent.STATUS, CaseEvent.ASSIGNED]
    assert sorted(str(notices[0]["To"]).split(", ")) == [QLXD.email, VAN_PHONG.email]
    assert threaded


@pytest.mark.db
def test_request_supplement_stops_the_clock_with_one_letter(tmp_path: Path) -> None:
    """Every missing item goes to the applicant in one letter and the clock stops today."""
    desk = _desk_with_case(tmp_path)

    with desk.engine.begin() as conn:
        cases_module.request_supplement(conn, desk.cfg, _case(conn), ["Bản vẽ", "Sổ đỏ"],
                                        TODAY, "clerk", allowed=Allowed.nobody())
        case, events, requests = _case(conn), _events(conn), _letters(conn, "supplement")

    assert (case.status, case.paused_at) == (CaseStatus.SUPPLEMENTS_REQUESTED, TODAY)
    assert events[-2:] == [CaseEvent.STATUS, CaseEvent.SUPPLEMENT_REQUESTED]
    assert len(requests) == 1 and str(requests[0]["To"]) == APPLICANT
    text = requests[0].get_body(("plain",)).get_content()
    assert "1. Bản vẽ" in text and "2. Sổ đỏ" in text


def test_set_handler_changes_the_case_without_a_letter(tmp_path: Path) -> None:
    """A routing rule's assignment sets the lead and deadline and sends nothing."""
    desk = _desk_with_case(tmp_path)

    with desk.engine.begin() as conn:
        before = conn.scalar(select(func.count()).select_from(outbox))
        cases_module.set_handler(conn, _case(conn).id, "qlxd", TODAY)
        after = conn.scalar(select(func.count()).select_from(outbox))
        case = _case(conn)

    assert (case.lead_department, case.deadline) == ("qlxd", TODAY) and before == after


def test_remind_queues_the_reminder_with_its_event(tmp_path: Path) -> None:
    """A reminder goes to the handler and is recorded with the working days left."""
    desk = _desk_with_case(tmp_path)

    with desk.engine.begin() as conn:
        cases_module.remind(conn, desk.cfg, _case(conn), [QLXD.email], 2, TODAY)
        events, reminders = _events(conn), _letters(conn, "reminder")
        detail = conn.scalar(select(case_events.c.detail).order_by(case_events.c.id.desc()))

    assert events[-1] == CaseEvent.REMINDER_SENT and detail == {"to": [QLXD.email],
                                                         "working_days_left": 2}
    assert len(reminders) == 1 and str(reminders[0]["To"]) == QLXD.email


def test_record_result_returns_the_case(tmp_path: Path) -> None:
    """A result queued marks the case returned and records where it went, as one event."""
    desk = _desk_with_case(tmp_path)

    with desk.engine.begin() as conn:
        before = _events(conn)
        cases_module.record_result(conn, _case(conn).id, APPLICANT, "1/2026", "ket qua.pdf")
        case, events = _case(conn), _events(conn)

    assert case.status == CaseStatus.RESULT_RETURNED
    assert events == [*before, CaseEvent.RESULT_SENT]


@pytest.mark.db
def test_register_records_assignment_and_handover_on_the_entry(tmp_path: Path) -> None:
    """The register's own writers fill the assignment columns and columns 7-8; a handover to
    nobody leaves the entry as it was."""
    desk = _desk_with_case(tmp_path)
    with desk.engine.connect() as conn:
        entry_id, message_pk = conn.execute(
            select(register_entries.c.id, register_entries.c.message_id)).one()
        forwarded = conn.scalar(select(register_entries.c.forwarded_at))

    with desk.engine.begin() as conn:
        register_module.record_handover(conn, message_pk, [])
        unchanged = conn.scalar(select(register_entries.c.forwarded_at))
        register_module.record_assignment(conn, entry_id, Assignment("qlxd", ("van_phong",),
                                                                     TODAY))
        register_module.record_handover(conn, message_pk, ["a@x.vn", "b@x.vn", "a@x.vn"])
        entry = conn.execute(select(register_entries)).one()

    assert unchanged == forwarded
    assert (entry.lead_department, entry.cooperating, entry.deadline) == (
        "qlxd", ["van_phong"], TODAY)
    assert entry.recipients == ["a@x.vn", "b@x.vn"] and entry.forwarded_at is not None
    with desk.engine.connect() as conn:
        assert conn.scalar(select(messages.c.case_id)) is not None


@pytest.mark.db
def test_the_case_commands_parse_call_and_print(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """`case close` takes a portal status (done by default) and names the valid ones when
    given another; `case postpone` prints the rule's refusal; `case list` filters by status."""
    desk = _desk_with_case(tmp_path, deadline=datetime.now(ZoneInfo("Asia/Ho_Chi_Minh")).date()
                           - timedelta(days=1))
    path = tmp_path / "config.toml"
    path.write_text(AGENCY_CONFIG.format(authserv_id=AUTHSERV_ID, rules=RULES)
                    + desk.storage_toml, encoding="utf-8")
    config = ["--config", str(path)]
    with desk.engine.connect() as conn:
        code = str(conn.scalar(select(cases.c.code)))
    capsys.readouterr()

    bogus = main(["case", "close", code, "--status", "bogus", *config])
    bogus_err = capsys.readouterr().err
    late = main(["case", "postpone", code, "--to", "2027-01-05", *config])
    late_err = capsys.readouterr().err
    closed = main(["case", "close", code, *config])
    capsys.readouterr()
    listed = main(["case", "list", "--status", "done", "--json", *config])
    rows = json.loads(capsys.readouterr().out)

    assert bogus == 1 and "done" in bogus_err and "result_returned" in bogus_err
    assert late == 1 and "the deadline has passed" in late_err
    assert (closed, listed) == (0, 0)
    assert [(r["code"], r["status"]) for r in rows] == [(code, CaseStatus.DONE)]


# insert(t), update(t), delete(t), and db.insert_new(conn, t, …) (an insert claiming a key).
WRITES = re.compile(r"\b(insert|update|delete|insert_new)\((?:\w+, )?(\w+)[,)]")
OWNERS = {"cases": "office/cases.py", "case_events": "office/cases.py",
          "case_threads": "office/cases.py", "register_entries": "office/register.py",
          "digests": "office/digest.py"}
# The self-check composes a case letter against a case it inserts into a scratch in-memory
# database and rolls back; no real case is ever written there.
SCRATCH = {("cases", "selfcheck.py")}


def test_each_table_has_one_writer() -> None:
    """Cases, their events and threads, the register and the digest claims are each written
    by one module of the daemon."""
    writers = {(table, str(path.relative_to(DAEMON)))
               for path in DAEMON.rglob("*.py")
               for _, table in WRITES.findall(path.read_text(encoding="utf-8"))
               if table in OWNERS}

    assert writers - SCRATCH == set(OWNERS.items())
