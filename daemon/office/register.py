"""The incoming register (sổ đăng ký văn bản đến) and the confidential register.

The only writer of `register_entries` (and of the attachments of registered mail). Runs inside
the caller's transaction. Numbers come from a counter row incremented in that transaction, so
a rolled-back registration gives its number back and two writers are serialised by the row
(PostgreSQL) or by BEGIN IMMEDIATE (SQLite): consecutive, no gap, no duplicate. A document seen
before is linked to its first entry, never numbered twice.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from daemon.config import AgencyConfig
from daemon.db import (
    attachments,
    case_threads,
    cases,
    messages,
    new_id,
    next_number,
    outbox,
    register_entries,
    utcnow,
)
from daemon.models import Assignment, Kind, ParsedMail, Understanding
from daemon.office.cases import link_thread, open_case
from daemon.office.closing import open_year
from daemon.routing.rules import Procedure


class Book(enum.StrEnum):
    """The registers (sổ) of the agency; a register entry is in one of the first two."""

    INCOMING = "incoming"  # sổ đăng ký văn bản đến, documents and dossiers
    CONFIDENTIAL = "confidential"  # documents marked Mật, Tối mật or Tuyệt mật
    OUTGOING = "outgoing"  # sổ văn bản đi: the signed results sent (office/results.py)


@dataclass(frozen=True)
class Registration:
    entry_id: int | None
    book: Book
    year: int
    number: int | None
    case_id: int | None
    case_code: str | None
    duplicate_of: int | None = None
    duplicate_why: str = ""


def doc_key(understanding: Understanding) -> str | None:
    """Issuer, number, symbol and date of a document: equal keys mean the same document."""
    doc = understanding.document
    if doc is None or not doc.number or not doc.symbol or not doc.issuer or not doc.date:
        return None
    return f"{doc.issuer.lower()}|{doc.number.lstrip('0')}|{doc.symbol}|{doc.date.isoformat()}"


class Trust(enum.IntEnum):
    """How far the sender of a registered mail is proven, from least to most."""

    UNPROVEN = 0  # authentication failed or nothing trusted could tell
    AUTHENTICATED = 1  # its domain passed DMARC or aligned DKIM (any domain, free mail too)
    OFFICIAL = 2  # authenticated, and the domain is one of [security] trusted_domains


def trust_of(understanding: Understanding, mail: ParsedMail,
             trusted_domains: tuple[str, ...]) -> Trust:
    if understanding.authenticated is not True:
        return Trust.UNPROVEN
    domain = mail.sender.email.rpartition("@")[2]
    # A broken or untrusted signature on what claims to be a government document: its domain
    # is proven, the document is not.
    if understanding.signature_warning:
        return Trust.AUTHENTICATED
    if any(domain == d or domain.endswith("." + d) for d in trusted_domains):
        return Trust.OFFICIAL
    return Trust.AUTHENTICATED


# The first entry at least as well proven as a mail (`trust`) that it repeats, by what it
# repeats; built once (daemon/db.py says why).
_PROVEN = func.coalesce(register_entries.c.trust, 0) >= bindparam("trust")
_SAME_MESSAGE_ID = (
    select(register_entries.c.id)
    .join(messages, messages.c.id == register_entries.c.message_id)
    .where(messages.c.header_message_id == bindparam("header_id"),
           messages.c.id != bindparam("mail_pk"), _PROVEN)
    .order_by(register_entries.c.id).limit(1))
_SAME_DOSSIER = _SAME_MESSAGE_ID.where(register_entries.c.sender_email == bindparam("sender"))
_SAME_DOCUMENT = (select(register_entries.c.id)
                  .where(register_entries.c.doc_key == bindparam("key"), _PROVEN)
                  .order_by(register_entries.c.id).limit(1))
_SAME_ATTACHMENT = (
    select(register_entries.c.id)
    .join(attachments, attachments.c.message_id == register_entries.c.message_id)
    .where(attachments.c.sha256.in_(bindparam("hashes", expanding=True)),
           attachments.c.message_id != bindparam("mail_pk"),
           register_entries.c.kind == Kind.DOCUMENT.value, _PROVEN)
    .order_by(register_entries.c.id).limit(1))


def _duplicate(conn: Connection, message_pk: int, mail: ParsedMail, understanding: Understanding,
               key: str | None, trust: Trust) -> tuple[int | None, str]:
    """The register entry this mail repeats, if any, and why.

    Trust orders the comparison: only an entry at least as well proven as this mail makes it
    a duplicate (a forger who sends "1000/UBND-KT" from free mail first must not bury the
    genuine document from the issuer's own authenticated domain). A dossier is its
    applicant's own: only the same mail again (same Message-ID from the same sender) repeats
    it; a blank form shared by many applicants never does.
    """
    def first(query: Any, **values: Any) -> int | None:
        # An unproven mail compares with every entry (trust >= 0 holds for all of them).
        found = conn.scalar(query, {"trust": int(trust), **values})
        return None if found is None else int(found)

    if mail.message_id:
        if understanding.kind is Kind.DOSSIER:
            found = first(_SAME_DOSSIER, header_id=mail.message_id, mail_pk=message_pk,
                          sender=mail.sender.email)
        else:
            found = first(_SAME_MESSAGE_ID, header_id=mail.message_id, mail_pk=message_pk)
        if found is not None:
            return found, f"same Message-ID {mail.message_id}"
    if understanding.kind is Kind.DOSSIER:
        return None, ""
    if key and (found := first(_SAME_DOCUMENT, key=key)) is not None:
        return found, "same issuer, number, symbol and date"
    hashes = [a.sha256 for a in mail.attachments if a.size > 1024 and not a.withheld]
    if hashes and (found := first(_SAME_ATTACHMENT, hashes=hashes,
                                  mail_pk=message_pk)) is not None:
        return found, "same attachment content"
    return None, ""


# Opens the register's note of a mail that may be confidential: the digest shows no summary.
DOUBT_NOTE = "Chưa xác định độ mật"


def notes(understanding: Understanding) -> list[str]:
    """The register's column 10 for a mail: doubts about its sender and its secrecy."""
    found = list(understanding.trust_notes)
    if understanding.secrecy_doubts:
        found.insert(0, f"{DOUBT_NOTE} ({'; '.join(understanding.secrecy_doubts)})")
    return found


# Built once (daemon/db.py says why).
_MESSAGE = update(messages).where(messages.c.id == bindparam("mail_pk"))


def register(conn: Connection, agency: AgencyConfig, message_pk: int, mail: ParsedMail,
             understanding: Understanding, received_at: datetime,
             procedure: Procedure | None = None, deadline: date | None = None,
             trust: Trust = Trust.UNPROVEN, queue: str | None = None) -> Registration:
    """Give a document or dossier its số đến (or link it to its first entry); a dossier also
    opens its case (`queue`: its queue number and half-day slot)."""
    if mail.attachments:  # one statement for all of them
        conn.execute(insert(attachments), [
            {"message_id": message_pk, "name": item.name, "content_type": item.content_type,
             "size": item.size, "sha256": item.sha256} for item in mail.attachments])
    book = Book.CONFIDENTIAL if understanding.confidential else Book.INCOMING
    received_year = received_at.astimezone(agency.tz).year
    year = open_year(conn, book, received_year)  # a closed year's book never changes
    key = doc_key(understanding)
    first, why = _duplicate(conn, message_pk, mail, understanding, key, trust)
    if first is not None:
        conn.execute(_MESSAGE, {"mail_pk": message_pk, "duplicate_of": first})
        return Registration(None, book, year, None, None, None, first, why)
    case_id = case_code = None
    if understanding.kind is Kind.DOSSIER:
        case_id, case_code = open_case(conn, agency, message_pk, understanding, received_at,
                                       procedure, deadline, queue)
        if mail.message_id:
            link_thread(conn, mail.message_id, case_id)
    number = next_number(conn, f"{book}:{year}")
    entry_id = new_id(conn.execute(insert(register_entries), {
        "book": book, "year": year, "number": number, "message_id": message_pk,
        "received_at": received_at, "registered_at": utcnow(),
        "sender": f"{mail.sender.name} <{mail.sender.email}>".strip(),
        "sender_email": mail.sender.email or None, "trust": int(trust),
        "kind": understanding.kind.value,
        "document": understanding.document.as_json() if understanding.document else None,
        "doc_key": key, "case_id": case_id, "deadline": deadline,
        # Column 10 (Ghi chú): doubts about the sender (the issuer printed in the document
        # against the domain it came from) and about its secrecy (a part no one could read).
        "note": "; ".join([*notes(understanding), *([
            f"Nhận ngày {received_at.astimezone(agency.tz):%d/%m/%Y}; sổ năm {received_year} "
            f"đã khóa nên vào sổ năm {year}"] if year != received_year else [])]) or None,
    }))
    return Registration(int(entry_id), book, year, number, case_id, case_code)


# Built once (daemon/db.py says why).
_ENTRY = update(register_entries).where(register_entries.c.id == bindparam("entry_pk"))


def record_assignment(conn: Connection, entry_id: int, assignment: Assignment) -> None:
    """The lead department (chủ trì), the cooperating ones (phối hợp) and the deadline."""
    conn.execute(_ENTRY, {"entry_pk": entry_id, "lead_department": assignment.lead,
                          "cooperating": list(assignment.cooperate),
                          "deadline": assignment.deadline})


def record_directive(conn: Connection, entry_id: int, history: list[dict[str, Any]],
                     assignment: Assignment | None = None,
                     recipients: Sequence[str] = ()) -> None:
    """A leader's directive on an entry (ý kiến phân phối, chỉ đạo): the whole history, oldest
    first; when it could be read, its assignment and the departments it went to as well."""
    values: dict[str, Any] = {"directives": history}
    if assignment is not None:
        values |= {"lead_department": assignment.lead,
                   "cooperating": list(assignment.cooperate), "deadline": assignment.deadline}
    if recipients:
        values |= {"recipients": list(dict.fromkeys(recipients)), "forwarded_at": utcnow()}
    conn.execute(update(register_entries).where(register_entries.c.id == entry_id)
                 .values(**values))


# Built once (daemon/db.py says why).
_HANDOVER = update(register_entries).where(register_entries.c.message_id == bindparam("mail_pk"))


def record_handover(conn: Connection, message_pk: int, recipients: Sequence[str]) -> None:
    """Columns 7-8 of the mail's entry, if it has one: who received it, and when."""
    if recipients:
        conn.execute(_HANDOVER, {"mail_pk": message_pk, "forwarded_at": utcnow(),
                                 "recipients": list(dict.fromkeys(recipients))})


_CASE_OF_CODE = select(cases.c.id).where(cases.c.code == bindparam("code"))
_CASE_OF_THREAD = (select(cases.c.code)
                   .join(case_threads, case_threads.c.case_id == cases.c.id)
                   .where(case_threads.c.header_message_id == bindparam("header_id")))


def case_id_of(conn: Connection, code: str) -> int | None:
    return conn.scalar(_CASE_OF_CODE, {"code": code})


# Built once (daemon/db.py says why): whether a Message-ID is one vanthu sent.
_OURS = select(outbox.c.id).where(outbox.c.header_message_id == bindparam("header_id")).limit(1)


class DbCases:
    """The CaseLookup of the understand stage, backed by the database."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def case_exists(self, code: str) -> bool:
        return case_id_of(self.conn, code) is not None

    def case_of_message_id(self, message_id: str) -> str | None:
        return self.conn.scalar(_CASE_OF_THREAD, {"header_id": message_id})

    def is_our_message(self, message_id: str) -> bool:
        return self.conn.scalar(_OURS, {"header_id": message_id}) is not None

    def case_secrecy(self, code: str) -> str | None:
        entry = self.conn.execute(
            select(register_entries.c.book, register_entries.c.document)
            .join(cases, cases.c.id == register_entries.c.case_id)
            .where(cases.c.code == code)).first()
        if entry is None or entry.book != Book.CONFIDENTIAL:
            return None
        return str((entry.document or {}).get("confidentiality") or "Mật")
