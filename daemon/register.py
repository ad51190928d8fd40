"""The incoming register (sổ đăng ký văn bản đến), the confidential register, and cases.

Runs inside the caller's transaction. Numbers come from a counter row incremented in that
transaction, so a rolled-back registration gives its number back and two writers are
serialised by the row (PostgreSQL) or by BEGIN IMMEDIATE (SQLite): consecutive, no gap, no
duplicate. A document seen before is linked to its first entry, never numbered twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, and_, insert, select, update

from daemon.cases import event
from daemon.config import AgencyConfig
from daemon.db import (
    attachments,
    case_threads,
    cases,
    messages,
    new_id,
    next_number,
    register_entries,
)
from daemon.models import Kind, ParsedMail, Understanding
from daemon.rules import Procedure


@dataclass(frozen=True)
class Registration:
    entry_id: int | None
    book: str
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


def _duplicate(conn: Connection, message_pk: int, mail: ParsedMail,
               key: str | None) -> tuple[int | None, str]:
    if mail.message_id:
        row = conn.execute(
            select(register_entries.c.id).join(
                messages, messages.c.id == register_entries.c.message_id)
            .where(messages.c.header_message_id == mail.message_id,
                   messages.c.id != message_pk)).first()
        if row:
            return row[0], f"same Message-ID {mail.message_id}"
    if key:
        row = conn.execute(select(register_entries.c.id).where(
            register_entries.c.doc_key == key)).first()
        if row:
            return row[0], "same issuer, number, symbol and date"
    hashes = [a.sha256 for a in mail.attachments if a.size > 1024 and not a.withheld]
    if hashes:
        row = conn.execute(
            select(register_entries.c.id).join(
                attachments, attachments.c.message_id == register_entries.c.message_id)
            .where(attachments.c.sha256.in_(hashes), attachments.c.message_id != message_pk)
        ).first()
        if row:
            return row[0], "same attachment content"
    return None, ""


def open_case(conn: Connection, agency: AgencyConfig, message_pk: int,
              understanding: Understanding, received_at: datetime,
              procedure: Procedure | None = None,
              deadline: date | None = None) -> tuple[int, str]:
    """Open a case for a dossier with a code in the configured format (DOMAIN.md §2)."""
    local = received_at.astimezone(agency.tz)
    yymmdd = local.strftime("%y%m%d")
    seq = next_number(conn, f"case:{yymmdd}")
    code = agency.case_code_format.format(code=agency.code, yymmdd=yymmdd,
                                          yyyy=local.year, seq=seq)
    person = understanding.applicant
    case_id: int = new_id(conn.execute(insert(cases).values(
        code=code, opened_at=received_at, status="received",
        applicant_name=person.name if person else None,
        applicant_email=person.email if person else None,
        applicant_phone=person.phone if person else None,
        message_id=message_pk,
        procedure=procedure.name if procedure else None,
        procedure_id=procedure.id if procedure else None,
        deadline=deadline,
    )))
    event(conn, case_id, "received", "vanthu",
          {"code": code, "deadline": deadline.isoformat() if deadline else None})
    return int(case_id), code


def register(conn: Connection, agency: AgencyConfig, message_pk: int, mail: ParsedMail,
             understanding: Understanding, received_at: datetime,
             procedure: Procedure | None = None, deadline: date | None = None) -> Registration:
    """Give a document or dossier its số đến (or link it to its first entry)."""
    for item in mail.attachments:
        conn.execute(insert(attachments).values(
            message_id=message_pk, name=item.name, content_type=item.content_type,
            size=item.size, sha256=item.sha256))
    book = "confidential" if understanding.confidential else "incoming"
    year = received_at.astimezone(agency.tz).year
    key = doc_key(understanding)
    first, why = _duplicate(conn, message_pk, mail, key)
    if first is not None:
        conn.execute(update(messages).where(messages.c.id == message_pk)
                     .values(duplicate_of=first))
        return Registration(None, book, year, None, None, None, first, why)
    case_id = case_code = None
    if understanding.kind is Kind.DOSSIER:
        case_id, case_code = open_case(conn, agency, message_pk, understanding, received_at,
                                       procedure, deadline)
        if mail.message_id:
            link_thread(conn, mail.message_id, case_id)
    number = next_number(conn, f"{book}:{year}")
    entry_id = new_id(conn.execute(insert(register_entries).values(
        book=book, year=year, number=number, message_id=message_pk, received_at=received_at,
        sender=f"{mail.sender.name} <{mail.sender.email}>".strip(),
        kind=understanding.kind.value,
        document=understanding.document.as_json() if understanding.document else None,
        doc_key=key, case_id=case_id, deadline=deadline,
    )))
    return Registration(int(entry_id), book, year, number, case_id, case_code)


def link_thread(conn: Connection, header_message_id: str, case_id: int) -> None:
    """Remember that a Message-ID belongs to a case, so replies to it join the case."""
    exists = conn.scalar(select(case_threads.c.case_id).where(
        case_threads.c.header_message_id == header_message_id))
    if exists is None:
        conn.execute(insert(case_threads).values(header_message_id=header_message_id,
                                                 case_id=case_id))


def case_id_of(conn: Connection, code: str) -> int | None:
    return conn.scalar(select(cases.c.id).where(cases.c.code == code))


class DbCases:
    """The CaseLookup of the understand stage, backed by the database."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def case_exists(self, code: str) -> bool:
        return case_id_of(self.conn, code) is not None

    def case_of_message_id(self, message_id: str) -> str | None:
        return self.conn.scalar(select(cases.c.code).join(
            case_threads, and_(case_threads.c.case_id == cases.c.id))
            .where(case_threads.c.header_message_id == message_id))
