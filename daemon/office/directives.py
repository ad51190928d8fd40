"""The leader's directive by reply (bút phê): a Director, a Deputy or the Chief of Office
answers a forward of vanthu with an instruction ("Giao phòng QLXD chủ trì, Văn phòng phối hợp,
hạn 10/12"); vanthu reads it, writes it on the register entry, sends the document to the
departments named and confirms to the leader. An instruction it cannot read goes to the Chief
of Office with the leader's own words, and the leader is told so.

Reading is pure (`own_text`, `read_directive`); `take` is the pipeline's step. Only the mail
of a person of the rules with one of `DIRECTING_ROLES`, authenticated for their own domain,
answering an email vanthu sent about a registered mail, is a directive.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from email.message import EmailMessage
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, Row, select

from daemon.config import Config
from daemon.db import cases, messages, outbox, register_entries
from daemon.errors import BadMessage
from daemon.intake.store import MailStore
from daemon.intake.workers import read_guarded
from daemon.models import Action, Assignment, Hold, Kind, ParsedMail, Understanding
from daemon.office import cases as cases_module
from daemon.office.calendar import WorkCalendar
from daemon.office.cases import CaseEvent
from daemon.office.digest import ROLE_NAMES
from daemon.office.register import DbCases, record_directive
from daemon.outbound import compose
from daemon.outbound.outbox import enqueue
from daemon.outbound.recipients import Allowed, Purpose
from daemon.routing.route import announced
from daemon.routing.rules import Department, Person, RuleSet
from daemon.textnorm import fold, nfc
from daemon.understand import _FORWARD_MARK, answered_ids, judge

if TYPE_CHECKING:
    from daemon.pipeline import Ready

log = logging.getLogger("vanthu.directives")

DIRECTING_ROLES = ("giam_doc", "pho_giam_doc", "chanh_van_phong")
CHIEF_OF_OFFICE = "chanh_van_phong"
# Kinds a leader's answer may be judged as: never a machine's, a list's or spam.
ANSWER_KINDS = frozenset({Kind.OTHER, Kind.REPLY, Kind.DOCUMENT, Kind.DOSSIER})
# Our emails about a registered mail that a leader answers.
ANSWERED_ACTIONS = ("forward", "notify", "assign", "release")
OWN_TEXT = 2000  # characters of the reply's own text read and kept
READ_BODY = 64 * 1024  # characters of the body looked at to find its own text
MAX_DAYS = 366  # a longer deadline in days is a slip of the keyboard
THREAD_LOOKUPS = 50

# ---------------------------------------------------------------------------------------------
# The reply's own text.

# Where the reply stops and the mail it answers begins, besides the marks of mail programs:
# the titles of vanthu's own emails quoted without ">", and a signature separator ("-- ").
_COVER_TITLES = re.compile(r"^[ \t]*(?:phiếu chuyển văn bản|thông báo văn bản|"
                           r"xác nhận ý kiến chỉ đạo|ý kiến chỉ đạo chưa đọc được)[ \t]*$|"
                           r"^-- ?$", re.I | re.M)
# The reply header of a mail program folded over two lines ("Vào Th 5, 26 thg 11, 2026 lúc
# 10:00 Văn thư <" / "vanthu@…> đã viết:"): its lines are not the leader's.
_WROTE = re.compile(r"(?:đã viết|viết|wrote)[ \t]*:[ \t]*$", re.I)
_REPLY_HEAD = re.compile(r"[ \t]*(?:vào|on)\b", re.I)


def own_text(body: str) -> str:
    """The reply's own text: before the quoted or forwarded mail, without lines quoted with
    ">" or the reply header of a mail program; at most `OWN_TEXT` characters."""
    text = nfc(body[:READ_BODY]).replace("\r\n", "\n")
    for mark in (_FORWARD_MARK.search(text), _COVER_TITLES.search(text)):
        if mark:
            text = text[:mark.start()]
    lines = [line for line in text.split("\n") if not line.lstrip().startswith(">")]
    while lines and (not lines[-1].strip() or _WROTE.search(lines[-1])):
        last = lines.pop()
        if _WROTE.search(last) and lines and _REPLY_HEAD.match(lines[-1]):
            lines.pop()  # the first half of a reply header folded over two lines
    return "\n".join(lines).strip()[:OWN_TEXT]


# ---------------------------------------------------------------------------------------------
# Reading the directive.

_WORD = re.compile(r"[a-z0-9]+")
# A clause ends at a comma, a semicolon, a line break, or a full stop followed by a space
# ("P.QLXD", "P. QLXD" and "10.12" stay whole).
_CLAUSE = re.compile(r"[,;\n]|(?<!\b[Pp])\.(?=\s)|\.$")
# Words leading a department's name, dropped for its short names ("Phòng Quản lý xây dựng"
# is also "Quản lý xây dựng" and "QLXD"), and the agency's own name at its end ("Văn phòng
# Sở" is also "Văn phòng").
_LEADING = ("phong", "ban")
_TRAILING = ("so",)
# Short names the agencies write for some names: "VP" for Văn phòng.
_SHORT: dict[tuple[str, ...], str] = {("van", "phong"): "vp"}
_NOT_IN_INITIALS = frozenset({"va"})
_LEAD_WORDS = (("chu", "tri"), ("xu", "ly"), ("tham", "muu"), ("giai", "quyet"),
               ("thuc", "hien"), ("nghien", "cuu"), ("de", "xuat"), ("theo", "doi"))
_COOPERATE_WORDS = (("phoi", "hop"),)
# Words saying a date or a count of days in the same clause is a deadline.
_DEADLINE_CUES = frozenset({"han", "truoc", "cham", "hoan", "xong", "trong", "bao", "den",
                            "toi", "viec"})
_DATE = re.compile(r"(?<![\d/.-])(\d{1,2})\s*([/.-])\s*(\d{1,2})(?:\s*\2\s*(\d{4}|\d{2}))?"
                   r"(?![\d/.-]*\d)")
_DATE_WORDS = re.compile(r"\bngay\s+(\d{1,2})\s+thang\s+(\d{1,2})(?:\s*(?:nam|/|,)?\s*(\d{4}))?")
_DAYS = re.compile(r"\b(\d{1,6})\s+ngay(\s+lam\s+viec)?\b")


@dataclass(frozen=True)
class Directive:
    """What vanthu understood of a leader's instruction; readable when `problems` is empty."""

    text: str  # the leader's own words, as written
    lead: str | None = None  # department ids of the rules
    cooperate: tuple[str, ...] = ()
    deadline: date | None = None
    days: int | None = None  # the deadline was said as this many (working) days
    problems: tuple[str, ...] = ()  # why it cannot be read, in Vietnamese

    @property
    def readable(self) -> bool:
        return not self.problems


def _words(text: str) -> tuple[str, ...]:
    return tuple(_WORD.findall(fold(text, accents=False)))


@lru_cache(maxsize=16)
def _aliases(departments: tuple[Department, ...]) -> dict[tuple[str, ...], str]:
    """Every way of writing each department, as folded words: its id, its name, the name
    without its leading 'Phòng'/'Ban' or the agency at its end, the initials of that (three
    letters or more, with or without 'P'), and the agency's short names ('VP')."""
    found: dict[tuple[str, ...], str] = {}
    for unit in departments:
        name = _words(unit.name)
        cores = {name, _words(unit.id.replace("_", " "))}
        core = name[1:] if name[:1] and name[0] in _LEADING and len(name) > 1 else name
        cores.add(core)
        if core[-1:] and core[-1] in _TRAILING and len(core) > 1:
            cores.add(core[:-1])
        for words in list(cores):
            initials = "".join(w[0] for w in words if w not in _NOT_IN_INITIALS)
            if len(words) > 1 and len(initials) >= 3:
                cores |= {(initials,), ("p" + initials,)}
            if short := _SHORT.get(words):
                cores.add((short,))
        for alias in cores:
            if alias:
                found.setdefault(alias, unit.id)
    return found


def _mentions(words: Sequence[str], aliases: Mapping[tuple[str, ...], str]
              ) -> list[tuple[int, int, str]]:
    """(start, end, department id) of every department named in `words`, longest first."""
    longest = max((len(a) for a in aliases), default=0)
    out: list[tuple[int, int, str]] = []
    at = 0
    while at < len(words):
        for size in range(min(longest, len(words) - at), 0, -1):
            if unit := aliases.get(tuple(words[at:at + size])):
                out.append((at, at + size, unit))
                at += size
                break
        else:
            at += 1
    return out


def _markers(words: Sequence[str]) -> list[tuple[int, str]]:
    """(position, 'lead' or 'cooperate') of every word of a role in `words`."""
    out = []
    for at in range(len(words)):
        pair = tuple(words[at:at + 2])
        if pair in _LEAD_WORDS:
            out.append((at, "lead"))
        elif pair in _COOPERATE_WORDS:
            out.append((at, "cooperate"))
    return out


def _role(start: int, end: int, markers: Sequence[tuple[int, str]]) -> str | None:
    """The role of a department named at [start, end): the first role word after it in its
    clause ('QLXD chủ trì'), else the last one before it ('phối hợp với VP'), else none."""
    after = [role for at, role in markers if at >= end]
    before = [role for at, role in markers if at < start]
    return after[0] if after else before[-1] if before else None


def _units(clauses: Sequence[tuple[str, ...]], aliases: Mapping[tuple[str, ...], str]
           ) -> tuple[str | None, tuple[str, ...], list[str]]:
    """(lead, cooperating, problems) of the departments named in the clauses. Unmarked
    departments: the first leads when no one is said to, the others cooperate."""
    leads: list[str] = []
    cooperating: list[str] = []
    unmarked: list[str] = []
    named: list[str] = []  # in the order they are named
    for words in clauses:
        markers = _markers(words)
        for start, end, unit in _mentions(words, aliases):
            role = _role(start, end, markers)
            named.append(unit)
            (leads if role == "lead" else cooperating if role == "cooperate"
             else unmarked).append(unit)
    leads = list(dict.fromkeys(leads))
    if not leads and unmarked:
        leads, unmarked = [unmarked[0]], unmarked[1:]
    problems = []
    if not leads and not cooperating:
        problems.append("không nhận ra phòng, đơn vị nào được giao")
    elif not leads:
        problems.append("không rõ đơn vị chủ trì")
    elif len(leads) > 1:
        problems.append("nhiều đơn vị cùng được giao chủ trì")
    lead = leads[0] if len(leads) == 1 else None
    others = [u for u in dict.fromkeys(named) if u not in leads]
    return lead, tuple(others), problems


def _day(day: int, month: int, year: str | None, today: date) -> date | str:
    """A date said as day, month and maybe year; a problem (str) when there is no such day.
    Without a year it is the next such day, or one less than half a year past (a slip)."""
    if year is None:
        candidates = [today.year, today.year + 1]
    else:
        candidates = [int(year) + (2000 if len(year) == 2 else 0)]
    for on in candidates:
        try:
            found = date(on, month, day)
        except ValueError:
            return f"không có ngày {day:02d}/{month:02d}"
        if year is not None or found >= today or today - found < timedelta(days=183):
            return found
    return found


def _deadlines(words: str, today: date, calendar: WorkCalendar
               ) -> tuple[list[date], int | None, list[str]]:
    """The deadlines said in one clause of folded text (dates or counts of days, only where a
    word of time says it is a deadline), the count of working days if one was said, and the
    problems."""
    if not _DEADLINE_CUES & set(_WORD.findall(words)):
        return [], None, []
    found: list[date | str] = []
    days = None
    taken = _DATE_WORDS.sub(" ", words)
    for d, m, y in _DATE_WORDS.findall(words):
        found.append(_day(int(d), int(m), y or None, today))
    for d, _, m, y in _DATE.findall(taken):
        found.append(_day(int(d), int(m), y or None, today))
    for count, working in _DAYS.findall(_DATE.sub(" ", taken)):
        n = int(count)
        if not 0 < n <= MAX_DAYS:
            found.append(f"thời hạn {n} ngày không hợp lệ")
            continue
        days = n if working else days
        found.append(calendar.add_working_days(today, n) if working
                     else today + timedelta(days=n))
    problems = [p for p in found if isinstance(p, str)]
    dates = [d for d in found if isinstance(d, date)]
    problems += [f"thời hạn {d:%d/%m/%Y} đã qua" for d in dates if d < today]
    return dates, days, problems


def read_directive(text: str, departments: Mapping[str, Department], today: date,
                   calendar: WorkCalendar) -> Directive:
    """Read a leader's instruction (the reply's own text): the lead and cooperating
    departments by their names, short names or ids, the deadline as a date ('10/12',
    '15/12/2026', 'ngày 10 tháng 12') or a count of days ('5 ngày làm việc' counted on the
    agency's calendar from `today`, '7 ngày' on the calendar), the text kept as it is."""
    text = nfc(text[:OWN_TEXT]).strip()
    pieces = [p for p in _CLAUSE.split(text) if p.strip()]
    aliases = _aliases(tuple(departments.values()))
    lead, cooperate, problems = _units([_words(p) for p in pieces], aliases)
    dates: list[date] = []
    days = None
    for piece in pieces:
        found, said, wrong = _deadlines(fold(piece, accents=False), today, calendar)
        dates += found
        days = said or days
        problems += wrong
    distinct = sorted(set(dates))
    if len(distinct) > 1:
        problems.append("có nhiều thời hạn khác nhau ("
                        + ", ".join(f"{d:%d/%m/%Y}" for d in distinct) + ")")
    if not text:
        problems = ["thư trả lời không có nội dung ý kiến"]
    deadline = distinct[0] if len(distinct) == 1 else None
    return Directive(text, lead, cooperate, deadline,
                     days if deadline and days else None, tuple(dict.fromkeys(problems)))


# ---------------------------------------------------------------------------------------------
# The pipeline's step.


@dataclass(frozen=True)
class Taken:
    """A leader's answer handled as a directive: how many emails it queued."""

    queued: int


@dataclass(frozen=True)
class Answered:
    """The register entry a leader's answer is about, and our email it answers."""

    entry: Row[Any]
    our_email: str


def leader_of(rules: RuleSet, address: str) -> Person | None:
    """The person of the rules who may give directives, by their address."""
    address = address.lower()
    return next((p for p in rules.people.values() if p.email.lower() == address
                 and set(p.roles) & set(DIRECTING_ROLES)), None)


def answered_entry(conn: Connection, mail: ParsedMail) -> Answered | None:
    """The register entry of the mail our answered email was about, or None."""
    ids = answered_ids(mail)[:THREAD_LOOKUPS]
    if not ids:
        return None
    rows = conn.execute(select(outbox.c.header_message_id, outbox.c.message_id).where(
        outbox.c.header_message_id.in_(ids), outbox.c.action.in_(ANSWERED_ACTIONS),
        outbox.c.message_id.is_not(None))).all()
    for our_id in sorted((r.header_message_id for r in rows), key=ids.index):
        pk = next(r.message_id for r in rows if r.header_message_id == our_id)
        entry = conn.execute(select(register_entries)
                             .where(register_entries.c.message_id == pk)).first()
        if entry is not None:
            return Answered(entry, our_id)
    return None


def take(conn: Connection, cfg: Config, rules: RuleSet, item: Ready) -> Taken | None:
    """Handle `item` as a leader's directive if it is one (see the module); None otherwise,
    and the pipeline goes on with it as usual."""
    mail, und = item.mail, item.understanding
    leader = leader_of(rules, mail.sender.email)
    if leader is None or und.kind not in ANSWER_KINDS:
        return None
    answered = answered_entry(conn, mail)
    if answered is None:
        return None
    if (und.authenticated is not True or und.quarantine or mail.sender_problems
            or any(isinstance(e, Hold) for e in item.decision.effects)):
        log.warning("directive.not_authenticated", extra={"mail": item.stored.pk})
        return None  # a forged leader assigns nothing: the mail goes on as any other
    key = mail.message_id or item.stored.sha256
    history = list(answered.entry.directives or [])
    if any(d.get("message_id") == key for d in history):
        log.info("directive.duplicate", extra={"mail": item.stored.pk})
        return Taken(0)
    received = item.stored.received_at.astimezone(cfg.agency.tz)
    directive = read_directive(own_text(mail.body), rules.departments, received.date(),
                               cfg.calendar.work_calendar())
    desk = _Desk(conn, cfg, rules, item, leader, answered)
    sent = desk.carry_out(directive) if directive.readable else desk.escalate(directive)
    history.append({
        "message_id": key, "by": leader.email, "by_name": leader.name,
        "role": _role_name(leader), "at": item.stored.received_at.isoformat(),
        "text": directive.text, "read": directive.readable, "lead": directive.lead,
        "cooperate": list(directive.cooperate),
        "deadline": directive.deadline.isoformat() if directive.deadline else None,
        "days": directive.days, "problems": list(directive.problems), "sent_to": sent})
    record_directive(conn, answered.entry.id, history, desk.assignment, desk.recipients)
    log.info("directive.recorded", extra={"mail": item.stored.pk, "entry": answered.entry.id,
                                          "read": directive.readable})
    return Taken(desk.queued)


def _role_name(person: Person) -> str:
    return next((ROLE_NAMES[r] for r in DIRECTING_ROLES if r in person.roles), "")


class _Desk:
    """What a directive does: update the entry, send the document, tell the leader."""

    def __init__(self, conn: Connection, cfg: Config, rules: RuleSet, item: Ready,
                 leader: Person, answered: Answered) -> None:
        self.conn, self.cfg, self.rules, self.item = conn, cfg, rules, item
        self.leader, self.entry, self.our_email = leader, answered.entry, answered.our_email
        self.allowed = Allowed.of(rules, cfg)
        self.queued = 0
        # What the register entry takes when the directive is carried out (record_directive).
        self.assignment: Assignment | None = None
        self.recipients: list[str] = []

    @property
    def title(self) -> str:
        return f"{_role_name(self.leader)} {self.leader.name}".strip()

    def register_line(self) -> str:
        book = "Sổ văn bản mật" if self.entry.book == "confidential" else "Sổ văn bản đến"
        return f"{book}: số đến {self.entry.number}/{self.entry.year}"

    @property
    def subject_tail(self) -> str:
        book = "văn bản mật" if self.entry.book == "confidential" else "văn bản"
        return f"{book} số đến {self.entry.number}/{self.entry.year}"

    def document_rows(self) -> list[tuple[str, str]]:
        """The document the directive is about: its entry, and for one that is not
        confidential its number, symbol and summary."""
        rows = [("Văn bản", self.register_line())]
        doc = self.entry.document or {}
        if self.entry.book != "confidential" and not doc.get("confidentiality"):
            if doc.get("symbol"):
                rows.append(("Số, ký hiệu", f"{doc.get('number') or '...'}/{doc['symbol']}"))
            if doc.get("summary"):
                rows.append(("Trích yếu", str(doc["summary"])))
        return rows

    def carry_out(self, directive: Directive) -> list[str]:
        """Record the assignment, send the document to the departments, confirm."""
        assert directive.lead is not None
        units = [self.rules.departments[u] for u in (directive.lead, *directive.cooperate)]
        deadline = directive.deadline or self.entry.deadline
        recipients = list(dict.fromkeys([*(self.entry.recipients or []),
                                         *(u.email for u in units)]))
        self.assignment = Assignment(directive.lead, tuple(directive.cooperate), deadline)
        self.recipients = recipients
        if self.entry.case_id is not None:
            cases_module.set_handler(self.conn, self.entry.case_id, directive.lead, deadline)
            cases_module.event(self.conn, self.entry.case_id, CaseEvent.ASSIGNED,
                               self.leader.email, {"lead": directive.lead, "cooperate": list(
                                   directive.cooperate), "deadline": str(deadline)})
        to = tuple(dict.fromkeys(u.email for u in units))
        self.send_document(directive, units, deadline, to)
        self.confirm(directive, units, deadline)
        return list(to)

    def send_document(self, directive: Directive, units: list[Department],
                      deadline: date | None, to: tuple[str, ...]) -> None:
        doc_mail, doc_und = self.original()
        note = f"Đơn vị chủ trì: {units[0].name}"
        if units[1:]:
            note += "; đơn vị phối hợp: " + ", ".join(u.name for u in units[1:])
        if deadline:
            note += f"; hạn giải quyết: {deadline:%d/%m/%Y}"
        confidential = doc_und.withhold_content or self.entry.book == "confidential"
        if not confidential:  # a confidential document's notice carries no words about it
            note += f"; ý kiến chỉ đạo của đồng chí {self.title}: «{directive.text}»"
        action = Action(Purpose.NOTIFY.value, to, note) if confidential else announced(
            Action(Purpose.ASSIGN.value, to, note), doc_und)
        email = compose.COMPOSERS[action.action](self.cfg, self.context(), action, doc_mail,
                                                 doc_und)
        self.enqueue(email, Purpose(action.action), to)

    def original(self) -> tuple[ParsedMail, Understanding]:
        """The registered mail, read again from the store as the pipeline read it."""
        digest = str(self.conn.scalar(select(messages.c.sha256).where(
            messages.c.id == self.entry.message_id)))
        reading = read_guarded(MailStore(self.cfg.storage.data_dir).read(digest),
                               self.cfg.limits)
        if isinstance(reading, BadMessage):
            raise reading
        return reading.mail, judge(reading, self.cfg, DbCases(self.conn))

    def context(self) -> compose.Context:
        code = self.conn.scalar(select(cases.c.code).where(cases.c.id == self.entry.case_id)) \
            if self.entry.case_id is not None else None
        return compose.Context(sha256=self.item.stored.sha256,
                               received_at=self.entry.received_at,
                               stored_at=self.item.stored.stored_at, book=self.entry.book,
                               number=self.entry.number, year=self.entry.year, case_code=code)

    def enqueue(self, email: EmailMessage, purpose: Purpose, to: Sequence[str]) -> None:
        header_id = str(email["Message-ID"])
        enqueue(self.conn, self.cfg, email=email, purpose=purpose, recipients=to,
                allowed=self.allowed, message_pk=self.item.stored.pk)
        if self.entry.case_id is not None:
            cases_module.link_thread(self.conn, header_id, self.entry.case_id)
        self.queued += 1

    def note_email(self, to: Sequence[str], tag: str, subject: str, title: str,
                   intro: list[str], rows: list[tuple[str, str]], outro: list[str]) -> None:
        """A short notice about the directive, threaded to the leader's answer and to our
        email it answered (so an answer to it is read as a directive on the same entry)."""
        mail = self.item.mail
        msg = compose.envelope(
            self.cfg, purpose=Purpose.NOTIFY, to=to, subject=subject,
            date=self.item.stored.stored_at,
            message_id=compose.message_id(self.cfg, self.item.stored.sha256, f"notify.{tag}"),
            in_reply_to=mail.message_id if to == (self.leader.email,) else None)
        thread = [i for i in (self.our_email, compose.thread_id(mail.message_id)) if i]
        del msg["References"]
        msg["References"] = " ".join(dict.fromkeys(thread))
        text, markup = compose.render(title, intro, rows, outro)
        msg.set_content(text)
        msg.add_alternative(markup, subtype="html")
        self.enqueue(msg, Purpose.NOTIFY, to)

    def confirm(self, directive: Directive, units: list[Department],
                deadline: date | None) -> None:
        rows = [*self.document_rows(),
                ("Đơn vị chủ trì", f"{units[0].name} ({units[0].email})")]
        rows += [("Đơn vị phối hợp", f"{u.name} ({u.email})") for u in units[1:]]
        said = f" ({directive.days} ngày làm việc)" if directive.days else ""
        rows.append(("Hạn giải quyết", f"{deadline:%d/%m/%Y}{said}" if deadline
                     else "không nêu"))
        rows.append(("Ý kiến của đồng chí", directive.text))
        self.note_email(
            (self.leader.email,), "confirm", f"Xác nhận ý kiến chỉ đạo về {self.subject_tail}",
            "Xác nhận ý kiến chỉ đạo",
            [f"Văn thư đã nhận ý kiến chỉ đạo của đồng chí {self.title} và đã chuyển văn bản "
             "cho các đơn vị dưới đây."],
            rows, ["Nếu Văn thư hiểu chưa đúng, đồng chí trả lời thư này với ý kiến mới; ý kiến "
                   "sau cùng được thực hiện."])

    def escalate(self, directive: Directive) -> list[str]:
        """An instruction that cannot be read: to the Chief of Office, and the leader is
        told."""
        chiefs = [p for p in self.rules.people.values()
                  if CHIEF_OF_OFFICE in p.roles and p.email.lower() != self.leader.email.lower()]
        why = "; ".join(directive.problems)
        rows = [*self.document_rows(), ("Ý kiến của đồng chí", directive.text or "(không có)"),
                ("Lý do", why)]
        to = tuple(dict.fromkeys(p.email for p in chiefs))
        if to:
            self.note_email(
                to, "unread", f"Ý kiến chỉ đạo chưa đọc được về {self.subject_tail}",
                "Ý kiến chỉ đạo chưa đọc được",
                [f"Văn thư chưa đọc được ý kiến chỉ đạo của đồng chí {self.title} nên chưa "
                 "chuyển văn bản cho đơn vị nào. Đề nghị đồng chí Chánh Văn phòng phân "
                 "công."], rows,
                ["Đồng chí có thể trả lời thư này với ý kiến phân công, ví dụ: «Giao Phòng "
                 "Quản lý xây dựng chủ trì, Văn phòng phối hợp, hạn 10/12»."])
        where = ("đã được chuyển đồng chí " + ", ".join(
            f"{_role_name(p)} {p.name}" for p in chiefs) + " để phân công") if chiefs \
            else "chưa được chuyển cho đơn vị nào"
        self.note_email(
            (self.leader.email,), "unread.leader",
            f"Văn thư chưa đọc được ý kiến chỉ đạo về {self.subject_tail}",
            "Ý kiến chỉ đạo chưa đọc được",
            [f"Văn thư chưa đọc được ý kiến chỉ đạo của đồng chí; ý kiến {where}."], rows,
            ["Đồng chí có thể trả lời thư này với ý kiến rõ hơn, ví dụ: «Giao Phòng Quản lý "
             "xây dựng chủ trì, Văn phòng phối hợp, hạn 10/12»."])
        return list(to)
