"""The digest: a Vietnamese report to the leaders at fixed hours (default 06:00, 12:00, 18:00).

A period is sent once: `claim` inserts its key in the `digests` table in the same transaction
as its outbox row, so a restart or a second daemon finds it taken (a digest sent by hand is
claimed the same way, under a key of its own). At start the
latest due period is sent if it was missed while the daemon was down. Building is read-only.
"""

from __future__ import annotations

import html
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from email.message import EmailMessage
from typing import Any

from sqlalchemy import Engine, and_, func, or_, select

from daemon import health
from daemon.config import Config
from daemon.db import (
    cases,
    digests,
    insert_new,
    messages,
    outbox,
    outgoing_entries,
    reading,
    register_entries,
    rejected_results,
    utcnow,
)
from daemon.models import CaseStatus, OutboxState, State
from daemon.office.cases import OPEN
from daemon.office.quarantine import held_reason
from daemon.office.register import DOUBT_NOTE, Book
from daemon.outbound.compose import PAGE_HEAD, envelope
from daemon.outbound.outbox import enqueue
from daemon.outbound.recipients import Allowed, Purpose
from daemon.routing.route import resolve
from daemon.routing.rules import RuleSet, Targets
from daemon.textnorm import nfc
from daemon.understand import ocr
from daemon.understand.signatures import digest_note

KIND_NAMES = {"document": "Văn bản đến", "dossier": "Hồ sơ", "reply": "Thư trả lời hồ sơ",
              "auto": "Thư trả lời tự động", "bounce": "Thư báo lỗi", "bulk": "Thư hàng loạt",
              "spam": "Thư rác", "other": "Thư khác"}


def _times(cfg: Config) -> list[time]:
    return sorted(time(int(t[:2]), int(t[3:])) for t in cfg.digest.times)


def latest_period(cfg: Config, now: datetime) -> datetime:
    """The most recent scheduled digest time at or before `now`, in the agency's zone."""
    local = now.astimezone(cfg.agency.tz)
    for day in (local.date(), local.date() - timedelta(days=1)):
        for moment in reversed(_times(cfg)):
            candidate = datetime.combine(day, moment, cfg.agency.tz)
            if candidate <= local:
                return candidate
    raise ValueError("no digest time configured")


def previous_period(cfg: Config, period: datetime) -> datetime:
    return latest_period(cfg, period - timedelta(seconds=1))


def period_key(period: datetime) -> str:
    return period.strftime("%Y-%m-%dT%H:%M")


@dataclass(frozen=True)
class Digest:
    subject: str
    text: str
    html: str


ROLE_NAMES = {"giam_doc": "Giám đốc", "pho_giam_doc": "Phó Giám đốc",
              "chanh_van_phong": "Chánh Văn phòng", "van_thu": "Văn thư",
              "truong_phong": "Trưởng phòng"}
URGENCY_ORDER = {"Hỏa tốc": 0, "Thượng khẩn": 1, "Khẩn": 2}


def _section(title: str, lines: list[str]) -> tuple[str, list[str]]:
    return title, lines


def names(rules: RuleSet) -> dict[str, str]:
    """Address -> how people know its owner: 'Nguyễn Văn An (Giám đốc)', 'Phòng Quản lý xây
    dựng'."""
    known = {d.email.lower(): d.name for d in rules.departments.values()}
    for person in rules.people.values():
        roles = ", ".join(ROLE_NAMES.get(r, r) for r in person.roles)
        known[person.email.lower()] = f"{person.name} ({roles})" if roles else person.name
    return known


def build(engine: Engine, cfg: Config, rules: RuleSet, start: datetime,
          end: datetime) -> Digest:
    """What happened between `start` and `end`, and what needs attention now."""
    tz = cfg.agency.tz
    today = end.astimezone(tz).date()
    # Entries by when they were written, not when the server took the mail: a Friday mail
    # fetched on Monday is in Monday's digest, not in a window already sent.
    registered = func.coalesce(register_entries.c.registered_at, register_entries.c.received_at)
    with reading(engine) as conn:
        # Old mail (archived, or imported quietly by `vanthu backlog import`) has no line.
        kinds = Counter(conn.scalars(select(messages.c.kind).where(
            messages.c.stored_at >= start, messages.c.stored_at < end,
            messages.c.state != State.ARCHIVED, messages.c.quiet.is_(None))))
        # Mail fetched but not processed yet (a digest due at start, before the pipeline ran).
        waiting = conn.scalar(select(func.count()).select_from(messages).where(
            messages.c.state == State.STORED, messages.c.stored_at < end)) or 0
        arrived = conn.execute(
            select(register_entries, messages.c.understanding)
            .join(messages, messages.c.id == register_entries.c.message_id)
            .where(registered >= start, registered < end, messages.c.quiet.is_(None))
            .order_by(register_entries.c.book, register_entries.c.number)).all()
        case_ids = {e.case_id for e in arrived if e.case_id is not None}
        case_of = {c.id: c for c in conn.execute(
            select(cases.c.id, cases.c.code, cases.c.procedure.label("procedure_name"),
                   cases.c.deadline).where(cases.c.id.in_(case_ids))).all()} if case_ids else {}
        # Dossiers held for the clerk's decision (completeness uncertain): what waits for them.
        reviews = conn.execute(
            select(cases.c.code, cases.c.applicant_name, cases.c.procedure, cases.c.opened_at,
                   cases.c.deadline)
            .where(cases.c.status == CaseStatus.NEEDS_REVIEW).order_by(cases.c.opened_at)).all()
        results_sent = conn.execute(select(outgoing_entries).where(
            outgoing_entries.c.sent_at >= start, outgoing_entries.c.sent_at < end)).all()
        refused = conn.execute(select(rejected_results).where(
            rejected_results.c.rejected_at >= start, rejected_results.c.rejected_at < end)).all()
        begun = func.coalesce(outbox.c.tries_begun, outbox.c.attempts)
        failed = conn.execute(select(outbox.c.action, outbox.c.recipients, outbox.c.last_error,
                                     outbox.c.created_at,
                                     (begun - outbox.c.attempts).label("doubts"))
                              .where(outbox.c.state == OutboxState.FAILED)
                              .order_by(outbox.c.id)).all()
        # Recipients the server refused for good while the others got the email (or wait):
        # each is a copy someone did not receive, reported in the period it was queued or sent.
        refusals = conn.execute(
            select(outbox.c.action, outbox.c.refused, outbox.c.created_at, outbox.c.sent_at)
            .where(outbox.c.refused.is_not(None), outbox.c.created_at < end,
                   or_(outbox.c.created_at >= start, outbox.c.sent_at >= start))
            .order_by(outbox.c.id)).all()
        held = conn.execute(select(messages.c.id, messages.c.sender, messages.c.subject,
                                   messages.c.last_error, messages.c.hold_kinds,
                                   messages.c.understanding)
                            .where(messages.c.state == State.QUARANTINED,
                                   messages.c.quiet.is_(None))).all()
        due_cases = conn.execute(
            select(cases.c.code, cases.c.deadline, cases.c.lead_department,
                   cases.c.applicant_name)
            .where(cases.c.deadline.is_not(None), cases.c.deadline <= today,
                   cases.c.status.in_(OPEN))
            .order_by(cases.c.deadline)).all()
        due_documents = conn.execute(
            select(register_entries.c.number, register_entries.c.year,
                   register_entries.c.deadline, register_entries.c.lead_department)
            .where(register_entries.c.deadline.is_not(None), register_entries.c.deadline <= today,
                   register_entries.c.case_id.is_(None))
            .order_by(register_entries.c.deadline)).all()
        boxes = health.mailboxes(conn)
        faults = health.faults(conn)
        conn.rollback()
    sections: list[tuple[str, list[str]]] = []
    found = health.fault_causes(cfg, faults, end)
    trouble = [*health.disks(cfg), *found.problems, *found.warnings,
               *health.calendar_causes(cfg, end)]
    if trouble:  # first: while it lasts, mail waits or does not go out
        sections.append(_section("SỰ CỐ: văn thư điện tử cần được kiểm tra",
                                 [c.vi for c in trouble]))

    if waiting:
        sections.append(_section("Thư chưa xử lý xong khi lập báo cáo", [
            f"{waiting} thư đã nhận nhưng chưa được đọc và vào sổ lúc lập báo cáo này; các thư "
            "này sẽ có trong báo cáo sau."]))
    counts = [f"{KIND_NAMES.get(k or 'other', k)}: {n}" for k, n in sorted(
        kinds.items(), key=lambda kv: -kv[1])]
    sections.append(_section("Thư nhận được", counts or ["Không có thư mới trong kỳ."]))

    known = names(rules)

    def line(entry: Any) -> str:
        doc = entry.document or {}
        book = "MẬT " if entry.book == Book.CONFIDENTIAL else ""
        number = f"{book}số đến {entry.number}/{entry.year}"
        symbol = f"{doc.get('number') or '...'}/{doc.get('symbol')}" if doc.get("symbol") \
            else ""
        hidden = entry.book == Book.CONFIDENTIAL or (entry.note or "").startswith(DOUBT_NOTE)
        summary = "" if hidden else (doc.get("summary") or "")
        urgency = f"[{doc['urgency'].upper()}] " if doc.get("urgency") else ""
        who = doc.get("issuer") or entry.sender
        case = case_of.get(entry.case_id)
        dossier = (f"hồ sơ {case.code} · {case.procedure_name or 'chưa xác định thủ tục'}"
                   + (f" · hẹn trả {case.deadline:%d/%m/%Y}" if case.deadline else "")
                   ) if case else ""
        to = ", ".join(known.get(a.lower(), a) for a in entry.recipients or [])
        forwarded = f" → {to}" if to else ""
        doubt = f" · LƯU Ý: {entry.note}" if entry.note else ""
        if broken := digest_note(entry.understanding, tz):  # (no file names of a secret)
            doubt += " · CHỮ KÝ SỐ KHÔNG HỢP LỆ" + ("" if hidden else f": {broken}")
        if unsure := doc.get("unsure"):
            doubt += f" · CẦN KIỂM TRA: {ocr.check_note(unsure)}"
        parts = [f"{urgency}{number}", dossier, who, symbol, summary]
        return nfc(" · ".join(p for p in parts if p) + forwarded + doubt)

    def weight(entry: Any) -> int:
        """Hỏa tốc, Thượng khẩn, Khẩn first (in that order), then confidential, then the rest."""
        doc = entry.document or {}
        return URGENCY_ORDER.get(doc.get("urgency") or "",
                                 3 if entry.book == Book.CONFIDENTIAL else 4)

    ordered = sorted(arrived, key=weight)
    urgent = [e for e in ordered if weight(e) < 3]
    sections.append(_section("VĂN BẢN KHẨN: cần xử lý ngay", [line(e) for e in urgent]))
    sections.append(_section("Văn bản, hồ sơ đã vào sổ",
                             [line(e) for e in ordered if weight(e) >= 3]))
    sections.append(_section("Kết quả đã gửi", [
        f"số đi {r.number}/{r.year} · {r.file_name} → {', '.join(r.recipients)}"
        for r in results_sent]))
    sections.append(_section("Kết quả bị từ chối (không gửi)", [
        f"{r.file_name}: {r.reason}" for r in refused]))
    def action(name: str) -> str:
        return health.ACTION_NAMES.get(name, name)

    sections.append(_section("Thư không gửi được", [
        f"Thư {action(r.action)} → {', '.join(r.recipients)} (tạo lúc "
        f"{r.created_at.astimezone(tz):%H:%M %d/%m/%Y}): {r.last_error}"
        + (" · CÓ THỂ ĐÃ ĐẾN NƠI (máy chủ không xác nhận): hỏi lại người nhận trước khi gửi lại"
           if (r.doubts or 0) >= 1 else "") for r in failed]))
    sections.append(_section("Người nhận bị máy chủ thư từ chối (không nhận được bản sao)", [
        f"{address}: thư {action(r.action)} lúc "
        f"{(r.sent_at or r.created_at).astimezone(tz):%H:%M %d/%m/%Y} · {why}"
        for r in refusals for address, why in dict(r.refused).items()]))
    sections.append(_section("Thư đang giữ lại chờ văn thư xem (cách ly)", [
        f"#{r.id} {r.sender} · {r.subject}: {held_reason(r)}" for r in held]))
    sections.append(_section("Hồ sơ chờ văn thư kiểm tra (chưa gửi giấy tiếp nhận)", [
        f"hồ sơ {r.code} · {r.applicant_name or 'chưa rõ người nộp'} · "
        f"{r.procedure or 'chưa xác định thủ tục'} · nhận lúc "
        f"{r.opened_at.astimezone(tz):%H:%M %d/%m/%Y}"
        + (f" · hẹn trả {r.deadline:%d/%m/%Y}" if r.deadline else "")
        + f" · quyết định: vanthu case accept {r.code} hoặc case request-supplement {r.code}"
        for r in reviews]))
    def when(deadline: Any) -> str:
        return f"{'QUÁ HẠN' if deadline < today else 'Đến hạn'} {deadline:%d/%m/%Y}"

    sections.append(_section("Hạn giải quyết hôm nay và quá hạn", [
        *(f"{when(r.deadline)} · hồ sơ {r.code} · {r.applicant_name or ''} · "
          f"chủ trì: {r.lead_department or 'chưa phân công'}" for r in due_cases),
        *(f"{when(r.deadline)} · số đến {r.number}/{r.year} · chủ trì: {r.lead_department}"
          for r in due_documents)]))
    away = [a for a in rules.absences if a.start <= today <= a.end]
    absences = []
    for absence in away:
        person = rules.people[absence.person]
        _, notes = resolve(rules, Targets(people=(absence.person,)), today, "")
        absences.append(f"{person.name} vắng ({absence.reason}) đến hết "
                        f"{absence.end:%d/%m/%Y}: {'; '.join(notes)}")
    sections.append(_section("Lãnh đạo vắng mặt và người nhận thay", absences))
    mailboxes, broken = [], False
    for box in boxes:
        last = box.last_fetch_at.astimezone(tz).strftime("%H:%M %d/%m/%Y") \
            if box.last_fetch_at else "chưa lần nào"
        failing = health.mailbox_error(box)
        broken = broken or bool(failing) or box.last_fetch_at is None
        error = f" · LỖI: {failing}" if failing else ""
        mailboxes.append(f"{box.mailbox}/{box.folder}: nhận thư lần cuối {last}{error}")
    if mailboxes and not broken:  # all well: one line, not one per folder
        newest = max(b.last_fetch_at for b in boxes).astimezone(tz)
        which = f"{boxes[0].mailbox}/{boxes[0].folder}" if len(boxes) == 1 else \
            f"Cả {len(boxes)} hộp thư"
        mailboxes = [f"{which}: nhận thư bình thường, lần cuối {newest:%H:%M %d/%m/%Y}"]
    sections.append(_section("Tình trạng hộp thư", mailboxes))

    # What needs someone now comes first: faults, mail not yet read, deadlines, urgent mail.
    first = ("SỰ CỐ", "Thư chưa xử lý", "Hạn giải quyết", "VĂN BẢN KHẨN")
    sections.sort(key=lambda section: next(
        (i for i, head in enumerate(first) if section[0].startswith(head)), len(first)))
    window = (f"từ {start.astimezone(tz):%H:%M %d/%m/%Y} "
              f"đến {end.astimezone(tz):%H:%M %d/%m/%Y}")
    subject = (f"Báo cáo văn thư {end.astimezone(tz):%H:%M %d/%m/%Y}: "
               f"{len(arrived)} văn bản, hồ sơ vào sổ"
               + (f", {len(urgent)} KHẨN" if urgent else ""))
    text = [subject, window, ""]
    markup = [f"<h2>{html.escape(subject)}</h2><p>{html.escape(window)}</p>"]
    for title, items in sections:
        if not items:  # an empty section is left out: the report is read on phones
            continue
        text += [title.upper(), *(f"- {i}" for i in items), ""]
        markup.append(f"<h3>{html.escape(title)}</h3><ul>"
                      + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>")
    return Digest(nfc(subject), nfc("\n".join(text)),
                  nfc(PAGE_HEAD + "".join(markup) + "</body></html>"))


def recipients(cfg: Config, rules: RuleSet, on: datetime) -> list[str]:
    """`[digest] to`: addresses as given; roles, people and departments resolved, stand-ins
    applied."""
    addresses = [t.lower() for t in cfg.digest.to if "@" in t]
    people = tuple(t for t in cfg.digest.to if t in rules.people)
    departments = tuple(t for t in cfg.digest.to if t in rules.departments)
    roles = tuple(t for t in cfg.digest.to
                  if "@" not in t and t not in rules.people and t not in rules.departments)
    resolved, _ = resolve(rules, Targets(roles=roles, people=people, departments=departments),
                          on.date(), "")
    return list(dict.fromkeys([*addresses, *resolved]))


def compose(cfg: Config, digest: Digest, to: list[str], key: str,
            when: datetime) -> EmailMessage:
    msg = envelope(cfg, purpose=Purpose.DIGEST, to=to, subject=digest.subject, date=when,
                   message_id=f"<digest.{key.replace(':', '')}@{cfg.agency.message_id_domain}>")
    msg.set_content(digest.text)
    msg.add_alternative(digest.html, subtype="html")
    return msg


def send_due(engine: Engine, cfg: Config, rules: RuleSet, now: datetime) -> str | None:
    """Queue the digest of the latest due period unless it was already sent; its key or None.

    The report is built from a read snapshot first; the period is then claimed and its
    outbox row written in one transaction, so it is queued once whoever asks.
    """
    period = latest_period(cfg, now)
    key = period_key(period)
    with reading(engine) as conn:
        if conn.scalar(select(digests.c.period).where(digests.c.period == key)):
            return None
        last = conn.scalar(select(digests.c.period).where(digests.c.period.not_like("manual%"))
                           .order_by(digests.c.period.desc()))
    start = (datetime.strptime(last, "%Y-%m-%dT%H:%M").replace(tzinfo=cfg.agency.tz)
             if last else previous_period(cfg, period))
    report = build(engine, cfg, rules, start, period)
    to = recipients(cfg, rules, period)
    if claim(engine, cfg, rules, compose(cfg, report, to, key, period), to, key) is None:
        return None  # another daemon claimed it meanwhile
    return key


def claim(engine: Engine, cfg: Config, rules: RuleSet, email: EmailMessage, to: list[str],
          key: str, now: datetime | None = None) -> EmailMessage | None:
    """Claim the digest period `key` and queue its email to `to`, in one transaction; None
    (nothing queued) when the period was claimed before, by a restart or another daemon.

    `now` is when it is queued (default: the clock), for a digest sent at once by hand.
    """
    with engine.begin() as conn:
        # Two daemons at once: one inserts, the other's insert waits for it and does nothing.
        if not insert_new(conn, digests, period=key, sent_at=now or utcnow()):
            return None
        if to:
            enqueue(conn, cfg, email=email, purpose=Purpose.DIGEST, recipients=to,
                    allowed=Allowed.of(rules, cfg), now=now)
    return email


def since_last(engine: Engine, cfg: Config, now: datetime) -> datetime:
    """Start of the window a manual digest covers: the last period sent, else a day ago."""
    with reading(engine) as conn:
        last = conn.scalar(select(digests.c.period).where(
            and_(digests.c.period.not_like("manual%"))).order_by(digests.c.period.desc()))
        conn.rollback()
    if last:
        return datetime.strptime(last, "%Y-%m-%dT%H:%M").replace(tzinfo=cfg.agency.tz)
    return now - timedelta(days=1)
