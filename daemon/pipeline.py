"""Take stored messages through understand → register → route → outbox.

Reading (parsing) is pure and runs outside any transaction, in worker processes when a pool
is given. Then a batch of messages is applied
in one transaction (a savepoint each, so one bad message cannot spoil the others): the
registration, the case, the outbox rows and the new state commit together or not at all. A
crash before the commit leaves the messages `stored`, to be done again with the same numbers
free and the same Message-IDs; after it, everything they caused is durable.
"""

from __future__ import annotations

import contextvars
import logging
import os
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, func, insert, select, update

from daemon import faults
from daemon.config import Config
from daemon.db import cases, messages, new_id, reading, register_entries, utcnow
from daemon.errors import BadMessage, PermanentError, SystemicFault
from daemon.intake.store import MailStore
from daemon.intake.workers import ReadPool, read_guarded
from daemon.models import (
    Action,
    Assignment,
    Decision,
    Hold,
    Kind,
    Move,
    ParsedMail,
    State,
    Tagging,
    Understanding,
)
from daemon.office import cases as cases_module
from daemon.office.register import DbCases, case_id_of, link_thread, register, trust_of
from daemon.outbound import compose
from daemon.outbound.outbox import enqueue
from daemon.outbound.recipients import Allowed, Answering, Purpose, refusal
from daemon.routing.route import decide
from daemon.routing.rules import RuleSet
from daemon.understand import Reading, dkim_check, judge

log = logging.getLogger("vanthu.pipeline")

# True while the canary runs: its registration is rolled back, so it must not be logged as one.
_in_canary: contextvars.ContextVar[bool] = contextvars.ContextVar("in_canary", default=False)
log.addFilter(lambda record: not _in_canary.get())

REGISTERED_KINDS = (Kind.DOCUMENT, Kind.DOSSIER)
EVENT_OF_ACTION = {"acknowledge": "acknowledged", "forward": "forwarded", "notify": "notified",
                   "assign": "assigned"}


@dataclass(frozen=True)
class Work:
    """One stored message and what the pure stages made of it (or why they could not)."""

    pk: int
    sha256: str
    stored_at: datetime
    attempts: int
    mail: ParsedMail | None = None
    understanding: Understanding | None = None
    decision: Decision | None = None
    error: str | None = None
    permanent: bool = False


def _think(cfg: Config, rules: RuleSet, conn: Connection, row: Any,
           reading: Reading | BadMessage | Exception) -> Work:
    base = Work(row.id, row.sha256, row.stored_at, row.attempts)
    if isinstance(reading, BadMessage):
        return replace(base, error=str(reading), permanent=True)
    if isinstance(reading, Exception):
        return replace(base, error=f"{type(reading).__name__}: {reading}")
    try:
        und = judge(reading, cfg, DbCases(conn))
        own = cfg.own_addresses
        decision = decide(und, reading.mail, rules, row.stored_at.astimezone(cfg.agency.tz),
                          own, cfg.calendar.work_calendar())
    except Exception as err:  # bulkhead: one message's failure must not stop the others
        log.exception("pipeline.failed", extra={"mail": row.id})
        return replace(base, error=f"{type(err).__name__}: {err}")
    return replace(base, mail=reading.mail, understanding=und, decision=decision)


def process_pending(engine: Engine, cfg: Config, store: MailStore, rules: RuleSet,
                    pool: ReadPool | None = None, limit: int = 100) -> int:
    """Process up to `limit` stored messages; return how many were looked at.

    With a `pool` the mails are read in worker processes, else in this one.
    """
    with reading(engine) as conn:
        rows = conn.execute(
            select(messages.c.id, messages.c.sha256, messages.c.stored_at, messages.c.attempts)
            .where(messages.c.state == State.STORED).order_by(messages.c.id).limit(limit)
        ).all()
        conn.rollback()
    if not rows:
        return 0
    raws: list[bytes | OSError] = []
    for row in rows:
        try:
            raws.append(store.read(row.sha256))
        except OSError as err:  # retried; a lasting fault of the store trips the canary
            raws.append(err)
    readable = [raw for raw in raws if isinstance(raw, bytes)]
    found: list[Reading | BadMessage | Exception | None] = []
    if pool is not None:
        found.extend(pool.read_all(readable))
    else:
        found.extend(read_guarded(raw, cfg.limits, dkim_check(cfg)) for raw in readable)
    results = iter(found)
    readings: list[Reading | BadMessage | Exception | None] = [
        raw if isinstance(raw, OSError) else next(results) for raw in raws]
    with reading(engine) as conn:
        work = [_think(cfg, rules, conn, row, reading)
                for row, reading in zip(rows, readings, strict=True) if reading is not None]
        conn.rollback()
    fault: str | None = None
    with engine.begin() as conn:
        for item in work:
            # Another daemon may have taken it meanwhile: only move it from `stored`.
            state = conn.scalar(select(messages.c.state).where(messages.c.id == item.pk))
            if state != State.STORED:
                continue
            if item.error is None:
                try:
                    with conn.begin_nested():
                        _apply(conn, cfg, rules, item)
                    continue
                except Exception as err:  # bulkhead: this mail's savepoint is rolled back alone
                    log.exception("pipeline.apply_failed", extra={"mail": item.pk})
                    # A PermanentError (e.g. an email that can never be sent) is the mail's own:
                    # no retry, no probe of the system.
                    item = replace(item, error=f"{type(err).__name__}: {err}",
                                   permanent=isinstance(err, PermanentError))
            if not item.permanent and (fault := canary(conn, cfg, rules, store)):
                break  # the system is at fault: this mail and the rest stay `stored`, untouched
            _apply(conn, cfg, rules, item)
    if fault is not None:
        raise SystemicFault(f"{fault} (last mail: {item.error})")
    faults.crashpoint("after_register")
    return len(work)


CANARY = Path(__file__).parent / "samples" / "017.eml"  # a dossier: receipt, PDF, case, forward


def canary(conn: Connection, cfg: Config, rules: RuleSet, store: MailStore) -> str | None:
    """Take a known-good sample mail through the whole of `_apply` in a savepoint that is then
    rolled back; return what failed, or None when the system works and a failing mail is
    failing for reasons of its own.

    Called when a mail fails with an error that is not about its content. If the sample
    fails too, the fault is the system's (an identity vanthu cannot compose with, a full disk,
    a broken database, an unreadable store): quarantining mail after mail would be wrong.
    """
    try:
        os.listdir(store.root)
        sample = read_guarded(CANARY.read_bytes(), cfg.limits)
        if isinstance(sample, BadMessage):
            return f"the built-in sample mail cannot be read: {sample}"
        now = utcnow()
        quiet = _in_canary.set(True)
        try:
            return _canary_apply(conn, cfg, rules, sample, now)
        finally:
            _in_canary.reset(quiet)
    except Exception as err:  # anything at all: this is the probe for faults of the system
        return f"{type(err).__name__}: {err}"


def _canary_apply(conn: Connection, cfg: Config, rules: RuleSet, sample: Reading,
                  now: datetime) -> str | None:
    with conn.begin_nested() as savepoint:
        pk = new_id(conn.execute(insert(messages).values(
            sha256=f"canary-{now.timestamp()}", size=0, mailbox="", state=State.STORED,
            stored_at=now, updated_at=now, attempts=0)))
        item = _think(cfg, rules, conn, _Row(pk, "0" * 64, now, 0), sample)
        if item.error is None:
            _apply(conn, cfg, rules, item)
        savepoint.rollback()
    return item.error


@dataclass(frozen=True)
class _Row:
    """The columns of a `messages` row that `_think` reads."""

    id: int
    sha256: str
    stored_at: datetime
    attempts: int


def backlog(engine: Engine) -> tuple[int, int]:
    """How many mails are stored in all, and how many still wait to be processed or sent."""
    with reading(engine) as conn:
        total = conn.scalar(select(func.count()).select_from(messages)) or 0
        busy = conn.scalar(select(func.count()).select_from(messages).where(
            messages.c.state.in_([State.STORED, State.ROUTED]))) or 0
    return int(total), int(busy)


def _set_state(conn: Connection, pk: int, state: State, **values: Any) -> None:
    conn.execute(update(messages).where(messages.c.id == pk)
                 .values(state=state, updated_at=utcnow(), **values))


def _apply(conn: Connection, cfg: Config, rules: RuleSet, item: Work) -> None:
    if item.error is not None:
        attempts = item.attempts + 1
        if item.permanent or attempts >= cfg.limits.max_attempts:
            _set_state(conn, item.pk, State.QUARANTINED, attempts=attempts,
                       last_error=item.error)
            log.warning("mail.quarantined", extra={"mail": item.pk, "reason": item.error})
        else:
            _set_state(conn, item.pk, State.STORED, attempts=attempts, last_error=item.error)
        return
    assert item.mail and item.understanding and item.decision
    mail, und, decision = item.mail, item.understanding, item.decision
    tags = [t for e in decision.effects if isinstance(e, Tagging) for t in e.tags]
    moves = [e.folder for e in decision.effects if isinstance(e, Move)]
    record: dict[str, Any] = {
        "kind": und.kind.value,
        "understanding": und.as_json(),
        "decision": {"rules": [t.__dict__ for t in decision.rules],
                     "actions": decision.as_json()},
        "tags": tags or None,
        "move_to": moves[-1] if moves else None,
    }
    held = [e.reason for e in decision.effects if isinstance(e, Hold)]
    if und.quarantine or held:
        reasons = [*und.quarantine_reasons, *held]
        _set_state(conn, item.pk, State.QUARANTINED, last_error="; ".join(reasons), **record)
        log.warning("mail.quarantined", extra={"mail": item.pk, "reason": reasons[0]})
        return
    if und.kind is Kind.REPLY and und.case_ref and (
            stranger := _stranger_to_case(conn, und, mail)):
        _set_state(conn, item.pk, State.QUARANTINED, last_error=stranger, **record)
        log.warning("mail.quarantined", extra={"mail": item.pk, "reason": stranger})
        return
    ctx = compose.Context(sha256=item.sha256, received_at=item.stored_at)
    case_id = None
    calendar = cfg.calendar.work_calendar()
    procedure = next((p for p in rules.procedures if p.id == decision.procedure), None)
    if und.kind in REGISTERED_KINDS:
        received = item.stored_at.astimezone(cfg.agency.tz)
        slot = cases_module.take_slot(conn, cfg.calendar, calendar, received) \
            if und.kind is Kind.DOSSIER else None
        appointment = cases_module.appointment(
            cfg.calendar, calendar, received, procedure.days, slot.day if slot else None
        ) if procedure and slot else None
        reg = register(conn, cfg.agency, item.pk, mail, und, item.stored_at, procedure,
                       appointment, trust_of(und, mail, cfg.security.trusted_domains))
        if reg.case_id is not None and slot is not None:
            conn.execute(update(cases).where(cases.c.id == reg.case_id)
                         .values(queue=str(slot)))
        if reg.duplicate_of is not None:
            # The same document again: linked to its first entry and flagged, nothing sent.
            _set_state(conn, item.pk, State.DONE, last_error=f"duplicate: {reg.duplicate_why}",
                       **record)
            log.info("mail.duplicate", extra={"mail": item.pk, "entry": reg.duplicate_of})
            return
        ctx = compose.Context(item.sha256, item.stored_at, reg.book, reg.number, reg.year,
                              reg.case_code, procedure, appointment,
                              str(slot) if slot and reg.case_id else None)
        case_id = reg.case_id
        for assignment in (e for e in decision.effects if isinstance(e, Assignment)):
            conn.execute(update(register_entries).where(register_entries.c.id == reg.entry_id)
                         .values(lead_department=assignment.lead,
                                 cooperating=list(assignment.cooperate),
                                 deadline=assignment.deadline))
            if case_id is not None:
                conn.execute(update(cases).where(cases.c.id == case_id).values(
                    lead_department=assignment.lead, deadline=assignment.deadline))
        log.info("mail.registered", extra={"mail": item.pk, "book": reg.book,
                                           "number": reg.number, "year": reg.year})
    actions = list(decision.actions)
    if und.kind is Kind.REPLY and und.case_ref:
        case_id = case_id_of(conn, und.case_ref)
        ctx = compose.Context(item.sha256, item.stored_at, case_code=und.case_ref)
        if case_id is not None:
            # A supplement restarts the clock; it goes to whoever handles the case now.
            cases_module.resume(conn, case_id, item.stored_at.astimezone(cfg.agency.tz).date(),
                                calendar, mail.sender.email)
            actions = _to_handler(conn, rules, case_id, actions)
    queued = 0
    for action in actions:
        # Whether a sender is acknowledged is the recipient policy's: authenticated, not spam,
        # within the daily reply limits (daemon/outbound/recipients.py).
        if action.action == "acknowledge" and (why := refusal(
                conn, cfg, purpose=Purpose.ACKNOWLEDGE, address=action.to[0],
                allowed=Allowed.of(rules, cfg),
                answering=Answering.of_mail(mail, und, item.stored_at))):
            log.info("ack.skipped", extra={"mail": item.pk, "why": why})
            continue
        email = compose.COMPOSERS[action.action](cfg, ctx, action, mail, und)
        header_id = str(email["Message-ID"])
        enqueue(conn, cfg, email=email, purpose=Purpose(action.action), recipients=action.to,
                allowed=Allowed.of(rules, cfg), message_pk=item.pk,
                answering=Answering.of_mail(mail, und, item.stored_at))
        if case_id is not None:
            link_thread(conn, header_id, case_id)
            cases_module.event(conn, case_id, EVENT_OF_ACTION[action.action], "vanthu",
                               {"to": list(action.to)})
        queued += 1
    handed = [a for action in actions if action.action != "acknowledge"
              for a in action.to]
    if handed:  # register columns 7-8: who received it, and when
        conn.execute(update(register_entries).where(
            register_entries.c.message_id == item.pk).values(
            recipients=list(dict.fromkeys(handed)), forwarded_at=utcnow()))
    _set_state(conn, item.pk, State.ROUTED if queued else State.DONE, case_id=case_id, **record)


def _stranger_to_case(conn: Connection, und: Understanding, mail: ParsedMail) -> str | None:
    """Why a mail claiming to belong to a case may not join it, or None when it may.

    A case code in a subject or a Message-ID in References is easy to copy: only the case's
    applicant (the address the dossier came from) joins it, and not when its own domain says
    the mail is forged. Anyone else is held for the clerk, who can attach it by hand.
    """
    applicant = conn.scalar(select(cases.c.applicant_email).where(cases.c.code == und.case_ref))
    if und.authenticated is False:
        return (f"reply to case {und.case_ref} failed sender authentication "
                f"({mail.sender.email or 'no address'}); held for the clerk")
    if not applicant or mail.sender.email != applicant.lower():
        return (f"reply to case {und.case_ref} comes from {mail.sender.email or 'no address'}, "
                "not from the case's applicant; held for the clerk")
    return None


def _to_handler(conn: Connection, rules: RuleSet, case_id: int,
                actions: list[Action]) -> list[Action]:
    """Add the case's lead department to the forward of a reply in that case."""
    lead = conn.scalar(select(cases.c.lead_department).where(cases.c.id == case_id))
    unit = rules.departments.get(lead) if lead else None
    if unit is None:
        return actions
    out = []
    for action in actions:
        if action.action == "forward" and unit.email not in action.to:
            action = Action("forward", (*action.to, unit.email), action.note)
        out.append(action)
    if not any(a.action == "forward" for a in out):
        out.append(Action("forward", (unit.email,), f"chuyển {unit.name} đang giải quyết"))
    return out
