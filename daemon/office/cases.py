"""Cases (hồ sơ): the appointment date, the append-only event log, supplements that stop and
restart the clock, assignment, reminders, the apology for lateness and the result returned.

The only writer of `cases`, `case_events` and `case_threads`: every change of a case is made
here with the event that records it, and the case letters are queued from here. The date
arithmetic is pure; the rest runs inside the caller's transaction, so a change, its event and
its letter commit together or not at all.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from daemon.config import AgencyConfig, CalendarConfig, Config
from daemon.db import (
    case_events,
    case_threads,
    cases,
    counters,
    messages,
    new_id,
    next_number,
    utcnow,
)
from daemon.models import CaseStatus, Understanding
from daemon.office import letters
from daemon.office.calendar import WorkCalendar
from daemon.outbound.recipients import Allowed
from daemon.routing.rules import Department, Procedure

# The portal's statuses, as the clerk reads them.
STATUS_NAMES = {
    CaseStatus.RECEIVED: "Đã tiếp nhận", CaseStatus.NEEDS_REVIEW: "Chờ văn thư kiểm tra",
    CaseStatus.NOT_ACCEPTED: "Không tiếp nhận",
    CaseStatus.IN_PROGRESS: "Đang giải quyết",
    CaseStatus.SUPPLEMENTS_REQUESTED: "Yêu cầu bổ sung",
    CaseStatus.FINANCIAL_OBLIGATION: "Chờ thực hiện nghĩa vụ tài chính",
    CaseStatus.WITHDRAWN: "Rút hồ sơ", CaseStatus.STOPPED: "Dừng xử lý",
    CaseStatus.DONE: "Đã giải quyết xong", CaseStatus.RESULT_RETURNED: "Đã trả kết quả",
}
# The statuses whose deadline runs: reminded before it, listed in the digest when due.
OPEN = (CaseStatus.RECEIVED, CaseStatus.IN_PROGRESS)


class CaseEvent(enum.StrEnum):
    """What a case's history records (the `event` of `case_events`)."""

    RECEIVED = "received"
    STATUS = "status"  # moved to another portal status
    ASSIGNED = "assigned"
    ACKNOWLEDGED = "acknowledged"  # an email of the pipeline about the case's mail
    FORWARDED = "forwarded"
    NOTIFIED = "notified"
    SUPPLEMENT_REQUESTED = "supplement_requested"
    SUPPLEMENT_RECEIVED = "supplement_received"
    APOLOGY_SENT = "apology_sent"
    REMINDER_SENT = "reminder_sent"
    RESULT_SENT = "result_sent"
    HELD_FOR_REVIEW = "held_for_review"  # completeness uncertain: the clerk decides
    ACCEPTED = "accepted"  # the clerk found the held dossier complete: the receipt slip goes


# A case's history as the clerk reads it (`vanthu case show`).
EVENT_NAMES = {
    CaseEvent.RECEIVED: "Tiếp nhận hồ sơ", CaseEvent.STATUS: "Chuyển trạng thái",
    CaseEvent.ASSIGNED: "Giao xử lý", CaseEvent.ACKNOWLEDGED: "Gửi thư cho người nộp",
    CaseEvent.FORWARDED: "Chuyển tiếp hồ sơ", CaseEvent.NOTIFIED: "Gửi thông báo",
    CaseEvent.SUPPLEMENT_REQUESTED: "Yêu cầu bổ sung hồ sơ",
    CaseEvent.SUPPLEMENT_RECEIVED: "Nhận hồ sơ bổ sung",
    CaseEvent.APOLOGY_SENT: "Gửi văn bản xin lỗi, hẹn lại", CaseEvent.REMINDER_SENT: "Nhắc hạn",
    CaseEvent.RESULT_SENT: "Trả kết quả", CaseEvent.HELD_FOR_REVIEW: "Chờ văn thư kiểm tra",
    CaseEvent.ACCEPTED: "Văn thư tiếp nhận hồ sơ",
}


def event_line(event: str, detail: Any) -> str:
    """One event of a case's history in Vietnamese: its name, and for a change of status the
    status it moved to."""
    name = EVENT_NAMES.get(CaseEvent(event), event) if event in set(CaseEvent) else event
    status = detail.get("status") if isinstance(detail, dict) else None
    if status in set(CaseStatus):
        return f"{name}: {STATUS_NAMES.get(CaseStatus(status), status)}"
    return name


def start_day(settings: CalendarConfig, calendar: WorkCalendar, received: datetime) -> date:
    """The day the clock starts from: receipt after the cut-off counts from the next working
    day (and a dossier received on a rest day from the next working day too)."""
    day = received.date()
    if received.strftime("%H:%M") >= settings.cutoff or not calendar.is_working_day(day):
        day += timedelta(days=1)
        while not calendar.is_working_day(day):
            day += timedelta(days=1)
    return day  # the day of receipt itself is not counted


def appointment(settings: CalendarConfig, calendar: WorkCalendar, received: datetime,
                days: int, start: date | None = None) -> date:
    """The date the result will be returned: `days` working days after receipt (the day of
    receipt not counted; `start` when a capacity slot moved it), moved to the fixed return
    weekday when the agency has one."""
    due = calendar.add_working_days(start or start_day(settings, calendar, received), days)
    if settings.result_weekday is not None:
        while due.weekday() != settings.result_weekday or not calendar.is_working_day(due):
            due += timedelta(days=1)
    return due


@dataclass(frozen=True)
class Slot:
    """The half-day a dossier is taken in, and its queue number in that half-day."""

    day: date
    half: str  # "sáng" (morning) or "chiều" (afternoon)
    number: int

    def __str__(self) -> str:
        return f"số thứ tự {self.number}, buổi {self.half} ngày {self.day:%d/%m/%Y}"


# Built once (daemon/db.py says why).
_COUNTER = select(counters.c.value).where(counters.c.name == bindparam("counter"))


def take_slot(conn: Connection, settings: CalendarConfig, calendar: WorkCalendar,
              received: datetime) -> Slot:
    """Give the dossier its queue number; past the daily intake capacity per half-day
    (`[calendar] capacity_per_half_day`, 0 = none), the next half-day with room."""
    day = start_day(settings, calendar, received)
    half = "sáng" if day == received.date() and received.hour < 12 else "chiều"
    if day != received.date():
        half = "sáng"
    capacity = settings.capacity_per_half_day
    while True:
        name = f"slot:{day.isoformat()}:{'am' if half == 'sáng' else 'pm'}"
        taken = conn.scalar(_COUNTER, {"counter": name}) or 0
        if capacity <= 0 or taken < capacity:
            return Slot(day, half, next_number(conn, name))
        if half == "sáng":
            half = "chiều"
            continue
        half = "sáng"
        day += timedelta(days=1)
        while not calendar.is_working_day(day):
            day += timedelta(days=1)


def working_days_between(calendar: WorkCalendar, start: date, end: date) -> int:
    """Working days after `start` up to and including `end`."""
    count, day = 0, start
    while day < end:
        day += timedelta(days=1)
        count += calendar.is_working_day(day)
    return count


def event(conn: Connection, case_id: int, name: CaseEvent, actor: str,
          detail: dict[str, Any] | None = None) -> None:
    """Append one event to the case's history."""
    conn.execute(insert(case_events), {"case_id": case_id, "at": utcnow(), "event": name,
                                       "actor": actor, "detail": detail})


# Built once (daemon/db.py says why).
_UPDATE_CASE = update(cases).where(cases.c.id == bindparam("case_pk"))
_THREAD_CASE = select(case_threads.c.case_id).where(
    case_threads.c.header_message_id == bindparam("header_id"))


def _update(conn: Connection, case_id: int, **values: Any) -> None:
    conn.execute(_UPDATE_CASE, {"case_pk": case_id, **values})


def open_case(conn: Connection, agency: AgencyConfig, message_pk: int,
              understanding: Understanding, received_at: datetime,
              procedure: Procedure | None = None, deadline: date | None = None,
              queue: str | None = None) -> tuple[int, str]:
    """Open a case for a dossier with a code in the configured format; `queue` is its queue
    number and half-day slot when it has one."""
    local = received_at.astimezone(agency.tz)
    yymmdd = local.strftime("%y%m%d")
    seq = next_number(conn, f"case:{yymmdd}")
    code = agency.case_code_format.format(code=agency.code, yymmdd=yymmdd,
                                          yyyy=local.year, seq=seq)
    person = understanding.applicant
    case_id = new_id(conn.execute(insert(cases), {
        "code": code, "opened_at": received_at, "status": CaseStatus.RECEIVED,
        "applicant_name": person.name if person else None,
        "applicant_email": person.email if person else None,
        "applicant_phone": person.phone if person else None,
        "message_id": message_pk,
        "procedure": procedure.name if procedure else None,
        "procedure_id": procedure.id if procedure else None,
        "deadline": deadline,
        "queue": queue,
    }))
    event(conn, case_id, CaseEvent.RECEIVED, "vanthu",
          {"code": code, "deadline": deadline.isoformat() if deadline else None})
    return case_id, code


def link_thread(conn: Connection, header_message_id: str, case_id: int) -> None:
    """Remember that a Message-ID belongs to a case, so replies to it join the case."""
    exists = conn.scalar(_THREAD_CASE, {"header_id": header_message_id})
    if exists is None:
        conn.execute(insert(case_threads),
                     {"header_message_id": header_message_id, "case_id": case_id})


def find(conn: Connection, code: str) -> Any:
    """The case row with this code, or None."""
    return conn.execute(select(cases).where(cases.c.code == code)).first()


def listing(conn: Connection, status: CaseStatus | None = None) -> list[Any]:
    """Every case (or those in `status`), oldest first."""
    query = select(cases).order_by(cases.c.id)
    if status:
        query = query.where(cases.c.status == status)
    return list(conn.execute(query).all())


def history(conn: Connection, case_id: int) -> list[Any]:
    """Every event of a case, oldest first."""
    return list(conn.execute(select(case_events).where(case_events.c.case_id == case_id)
                             .order_by(case_events.c.id)).all())


def _origin(conn: Connection, case: Any) -> str | None:
    """The Message-ID of the dossier's mail, which the case's letters thread to."""
    if not case.message_id:
        return None
    found: str | None = conn.scalar(select(messages.c.header_message_id)
                                    .where(messages.c.id == case.message_id))
    return found


def set_status(conn: Connection, case_id: int, status: CaseStatus, actor: str,
               **values: Any) -> None:
    """Move the case to a portal status (with the other columns that change with it), and
    record it."""
    _update(conn, case_id, status=status, **values)
    event(conn, case_id, CaseEvent.STATUS, actor, {"status": status})


def set_handler(conn: Connection, case_id: int, lead: str, deadline: date | None) -> None:
    """A routing rule's assignment: the lead department and the deadline, no letter."""
    _update(conn, case_id, lead_department=lead, deadline=deadline)


def assign(conn: Connection, cfg: Config, case: Any, lead: Department,
           cooperate: list[Department], days: int | None, today: date, actor: str,
           allowed: Allowed | None = None) -> date | None:
    """The clerk hands the case to a lead department (and cooperating ones), with a deadline
    of `days` working days from today (else the case's own); the case is in progress and the
    units get the assignment notice. Returns the deadline."""
    deadline = (cfg.calendar.work_calendar().add_working_days(today, days)
                if days else case.deadline)
    set_handler(conn, case.id, lead.id, deadline)
    set_status(conn, case.id, CaseStatus.IN_PROGRESS, actor)
    event(conn, case.id, CaseEvent.ASSIGNED, actor,
          {"lead": lead.id, "cooperate": [u.id for u in cooperate], "deadline": str(deadline)})
    header_id = letters.assignment(conn, cfg, case, [u.email for u in (lead, *cooperate)],
                                   lead.name, deadline, utcnow(), allowed=allowed)
    link_thread(conn, header_id, case.id)
    return deadline


def pause(conn: Connection, case_id: int, on: date, actor: str, items: list[str]) -> None:
    """Supplements requested: the clock stops today."""
    set_status(conn, case_id, CaseStatus.SUPPLEMENTS_REQUESTED, actor, paused_at=on)
    event(conn, case_id, CaseEvent.SUPPLEMENT_REQUESTED, actor, {"items": items})


def request_supplement(conn: Connection, cfg: Config, case: Any, items: list[str], on: date,
                       actor: str, allowed: Allowed | None = None) -> None:
    """Ask the applicant for every missing item in one letter; the clock stops today."""
    pause(conn, case.id, on, actor, items)
    header_id = letters.supplement_request(conn, cfg, case, items, on, _origin(conn, case),
                                           allowed=allowed)
    link_thread(conn, header_id, case.id)


def resume(conn: Connection, case_id: int, on: date, calendar: WorkCalendar,
           actor: str) -> date | None:
    """The supplement arrived: the clock restarts and the deadline moves by the days it stood
    still. Returns the new deadline (None when the case was not waiting)."""
    row = conn.execute(select(cases.c.status, cases.c.paused_at, cases.c.deadline)
                       .where(cases.c.id == case_id)).one()
    event(conn, case_id, CaseEvent.SUPPLEMENT_RECEIVED, actor)
    if row.status != CaseStatus.SUPPLEMENTS_REQUESTED or row.paused_at is None:
        return None
    deadline = row.deadline
    if deadline is not None:
        stood = working_days_between(calendar, row.paused_at, on)
        deadline = calendar.add_working_days(deadline, stood) if stood else deadline
    set_status(conn, case_id, CaseStatus.IN_PROGRESS, actor, paused_at=None, deadline=deadline)
    return deadline  # type: ignore[no-any-return]


def cannot_postpone(case: Any, today: date) -> str | None:
    """Why the apology with a new date may not go (it goes once per case, and only before the
    deadline passes), or None when it may."""
    if case.apology_sent_at is not None:
        return "the apology with a new date was already sent once"
    if case.deadline is None or case.deadline < today:
        return "the deadline has passed: the apology must go before it"
    return None


def postpone(conn: Connection, cfg: Config, case: Any, new_date: date, reason: str,
             today: date, actor: str, allowed: Allowed | None = None) -> str | None:
    """Send the applicant the apology with a new date, which becomes the deadline. Returns
    why it may not go (nothing is done), or None."""
    if why := cannot_postpone(case, today):
        return why
    header_id = letters.apology(conn, cfg, case, new_date, reason, _origin(conn, case),
                                allowed=allowed)
    link_thread(conn, header_id, case.id)
    _update(conn, case.id, deadline=new_date, apology_sent_at=utcnow())
    event(conn, case.id, CaseEvent.APOLOGY_SENT, actor,
          {"new_date": new_date.isoformat(), "reason": reason})
    return None


def remind(conn: Connection, cfg: Config, case: Any, to: list[str], left: int,
           today: date) -> None:
    """Remind the handler that the deadline is `left` working days away."""
    header_id = letters.reminder(conn, cfg, case, to, left, today)
    link_thread(conn, header_id, case.id)
    event(conn, case.id, CaseEvent.REMINDER_SENT, "vanthu",
          {"to": to, "working_days_left": left})


def remind_review(conn: Connection, cfg: Config, case: Any, to: list[str], left: int | None,
                  today: date) -> None:
    """Remind the clerks that a held dossier still waits for their decision."""
    header_id = letters.review_reminder(conn, cfg, case, to, left, today)
    link_thread(conn, header_id, case.id)
    event(conn, case.id, CaseEvent.REMINDER_SENT, "vanthu",
          {"to": to, "working_days_left": left, "held_for_review": True})


def record_result(conn: Connection, case_id: int, to: str, outgoing: str, file: str) -> None:
    """The signed result was queued for the applicant: the case is returned."""
    _update(conn, case_id, status=CaseStatus.RESULT_RETURNED)
    event(conn, case_id, CaseEvent.RESULT_SENT, "vanthu",
          {"to": to, "outgoing": outgoing, "file": file})
