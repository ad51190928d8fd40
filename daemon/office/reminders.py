"""The daily deadline job: remind the lead department and the Chief of Office a few working
days before a case's deadline (`[calendar] remind_days`). Idempotent: a reminder is claimed
per case and day in the `reminders` table with its outbox row, so it goes once whoever runs it.
"""

from __future__ import annotations

import logging
from datetime import date

from sqlalchemy import Engine, select

from daemon.config import Config
from daemon.db import cases, insert_new, reading, reminders
from daemon.models import CaseStatus
from daemon.office import cases as cases_module
from daemon.routing.route import resolve
from daemon.routing.rules import RuleSet, Targets

log = logging.getLogger("vanthu.reminders")

def send_reminders(engine: Engine, cfg: Config, rules: RuleSet, today: date) -> int:
    """Queue today's reminders; return how many."""
    calendar = cfg.calendar.work_calendar()
    with reading(engine) as conn:
        due = conn.execute(select(cases).where(cases.c.status.in_(cases_module.OPEN),
                                               cases.c.deadline.is_not(None),
                                               cases.c.deadline >= today)).all()
    queued = 0
    for case in due:
        left = cases_module.working_days_between(calendar, today, case.deadline)
        if left > cfg.calendar.remind_days:
            continue
        to, _ = resolve(rules, Targets(roles=("chanh_van_phong",)), today, "")
        unit = rules.departments.get(case.lead_department or "")
        if unit:
            to = [unit.email, *to]
        with engine.begin() as conn:
            # Claimed with its outbox row: a second daemon's insert waits and does nothing.
            if not insert_new(conn, reminders, case_id=case.id, day=today):
                continue
            cases_module.remind(conn, cfg, case, to, left, today)
        log.info("case.reminded", extra={"case": case.code, "left": left})
        queued += 1
    return queued + _held_for_review(engine, cfg, rules, today)


# Who decides on a dossier held for review.
REVIEWERS = ("van_thu", "chanh_van_phong")


def _held_for_review(engine: Engine, cfg: Config, rules: RuleSet, today: date) -> int:
    """Each working day, the dossiers still held for the clerk's decision are reminded to the
    clerks and the Chief of Office (one email per case and day, claimed like the others)."""
    calendar = cfg.calendar.work_calendar()
    if not calendar.is_working_day(today):
        return 0
    with reading(engine) as conn:
        held = conn.execute(select(cases).where(
            cases.c.status == CaseStatus.NEEDS_REVIEW)).all()
    to, _ = resolve(rules, Targets(roles=REVIEWERS), today, "")
    queued = 0
    for case in held if to else ():
        left = cases_module.working_days_between(calendar, today, case.deadline) \
            if case.deadline is not None else None
        with engine.begin() as conn:
            if not insert_new(conn, reminders, case_id=case.id, day=today):
                continue
            cases_module.remind_review(conn, cfg, case, list(to), left, today)
        log.info("case.review_reminded", extra={"case": case.code})
        queued += 1
    return queued
