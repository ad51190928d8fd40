"""Cases (hồ sơ): the appointment date, the append-only event log, supplements that stop and
restart the clock, reminders and the apology for lateness.

The date arithmetic is pure; the rest runs inside the caller's transaction, so an event and
the state change it records commit together.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, insert, select, update

from daemon.config import CalendarConfig
from daemon.db import case_events, cases, counters, next_number, utcnow
from daemon.office.calendar import WorkCalendar

# The national portal's statuses.
STATUSES = ("received", "not_accepted", "in_progress", "supplements_requested",
            "financial_obligation", "withdrawn", "stopped", "done", "result_returned")
STATUS_NAMES = {
    "received": "Đã tiếp nhận", "not_accepted": "Không tiếp nhận",
    "in_progress": "Đang giải quyết", "supplements_requested": "Yêu cầu bổ sung",
    "financial_obligation": "Chờ thực hiện nghĩa vụ tài chính", "withdrawn": "Rút hồ sơ",
    "stopped": "Dừng xử lý", "done": "Đã giải quyết xong", "result_returned": "Đã trả kết quả",
}


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
        taken = conn.scalar(select(counters.c.value).where(counters.c.name == name)) or 0
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


def event(conn: Connection, case_id: int, name: str, actor: str,
          detail: dict[str, Any] | None = None) -> None:
    conn.execute(insert(case_events).values(case_id=case_id, at=utcnow(), event=name,
                                            actor=actor, detail=detail))


def set_status(conn: Connection, case_id: int, status: str, actor: str, **values: Any) -> None:
    conn.execute(update(cases).where(cases.c.id == case_id).values(status=status, **values))
    event(conn, case_id, "status", actor, {"status": status})


def pause(conn: Connection, case_id: int, on: date, actor: str, items: list[str]) -> None:
    """Supplements requested: the clock stops today."""
    set_status(conn, case_id, "supplements_requested", actor, paused_at=on)
    event(conn, case_id, "supplement_requested", actor, {"items": items})


def resume(conn: Connection, case_id: int, on: date, calendar: WorkCalendar,
           actor: str) -> date | None:
    """The supplement arrived: the clock restarts and the deadline moves by the days it stood
    still. Returns the new deadline (None when the case was not waiting)."""
    row = conn.execute(select(cases.c.status, cases.c.paused_at, cases.c.deadline)
                       .where(cases.c.id == case_id)).one()
    event(conn, case_id, "supplement_received", actor)
    if row.status != "supplements_requested" or row.paused_at is None:
        return None
    deadline = row.deadline
    if deadline is not None:
        stood = working_days_between(calendar, row.paused_at, on)
        deadline = calendar.add_working_days(deadline, stood) if stood else deadline
    set_status(conn, case_id, "in_progress", actor, paused_at=None, deadline=deadline)
    return deadline  # type: ignore[no-any-return]
