"""Signed results out: a PDF the clerk drops in the results folder (or gives to
`vanthu send-result`) is verified, matched to its case, queued for the case's sender and
written in the outgoing register, in one transaction; only then is the file moved to sent/.

A PDF is sent only if every signature validates against the configured trust roots, the last
signature covers the whole file, and its case is not confidential. Anything else moves to
rejected/ with a reason in Vietnamese and English. Killed after the commit, the restart finds
the PDF's sha256 already in the outgoing register and only moves the file: nothing twice.
"""

from __future__ import annotations

import hashlib
import io
import logging
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pypdf
from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import Connection, Engine, insert, select

from daemon.config import Config
from daemon.db import (
    cases,
    messages,
    next_number,
    outgoing_entries,
    reading,
    register_entries,
    rejected_results,
    utcnow,
)
from daemon.errors import ConfigError, EmailRefused, Problem
from daemon.office.cases import record_result
from daemon.office.register import Book
from daemon.outbound.compose import message_id, result
from daemon.outbound.outbox import enqueue
from daemon.outbound.recipients import Allowed, Answering, Purpose
from daemon.textnorm import fold
from daemon.understand import extract

log = logging.getLogger("vanthu.results")
for _noisy in ("pyhanko", "pyhanko_certvalidator"):  # they log tracebacks for every refusal
    logging.getLogger(_noisy).setLevel(logging.CRITICAL)

SETTLE_SECONDS = 2.0  # a file younger than this may still be being copied in
_REGISTER_NUMBER = re.compile(r"(?i)\bSD[-_ ]?(\d+)[-_/](\d{4})\b")


@dataclass(frozen=True)
class Verdict:
    valid: bool
    en: str
    vi: str
    signer: str | None = None


def load_roots(paths: tuple[str, ...]) -> list[Any]:
    """The trust roots of [results] trust_roots; an unreadable one is a configuration error."""
    roots = []
    for path in paths:
        try:
            # pyHanko's key helpers carry no type annotations.
            roots.append(load_cert_from_pemder(path))  # type: ignore[no-untyped-call]
        except (OSError, ValueError) as err:
            raise ConfigError([Problem(path, None, f"cannot load trust root: {err}")]) from err
    return roots


async def verify(data: bytes, roots: list[Any]) -> Verdict:
    """Validate every signature of a PDF (pyHanko); any exception means invalid."""
    try:
        signatures = PdfFileReader(io.BytesIO(data)).embedded_signatures
    except Exception as err:  # a broken PDF may raise anything inside the reader
        return Verdict(False, f"not a readable PDF: {err}", f"không đọc được tệp PDF: {err}")
    if not signatures:
        return Verdict(False, "unsigned: the PDF carries no digital signature",
                       "chưa ký số: tệp PDF không có chữ ký số")
    if not roots:
        return Verdict(False, "no trust roots configured ([results] trust_roots)",
                       "chưa cấu hình chứng thư gốc tin cậy ([results] trust_roots)")
    signer = None
    for index, signature in enumerate(signatures, 1):
        try:
            context = ValidationContext(trust_roots=roots, allow_fetching=False)
            status = await async_validate_pdf_signature(signature, context)
        except Exception as err:  # a corrupted signature blob raises instead of reporting
            return Verdict(False, f"signature {index} cannot be validated: {err}",
                           f"chữ ký số thứ {index} không kiểm tra được: {err}")
        signer = status.signing_cert.subject.human_friendly
        if not status.intact:
            return Verdict(False, f"signature {index}: the signed content was changed after "
                                  "signing (digest mismatch)",
                           f"chữ ký số thứ {index}: nội dung đã bị sửa sau khi ký", signer)
        if not status.trusted:
            return Verdict(False, f"signature {index}: the signer does not chain to a "
                                  "configured trust root",
                           f"chữ ký số thứ {index}: chứng thư số không thuộc tổ chức chứng "
                           "thực tin cậy", signer)
        # bottom_line is True even with bytes appended after signing: coverage must be
        # checked on its own.
        if index == len(signatures) and status.coverage != SignatureCoverageLevel.ENTIRE_FILE:
            return Verdict(False, "content was added after the last signature (an incremental "
                                  "update not covered by any signature)",
                           "tệp có nội dung được thêm sau chữ ký số cuối cùng", signer)
        if not status.bottom_line:
            return Verdict(False, f"signature {index} is not valid",
                           f"chữ ký số thứ {index} không hợp lệ", signer)
    return Verdict(True, "valid", "hợp lệ", signer)


@dataclass(frozen=True)
class Target:
    """Whom a result goes to, what it answers, and what the PDF must name to be sent there."""

    to: str
    case_id: int | None
    case_code: str | None
    entry_id: int | None
    in_reply_to: str | None
    confidential: bool
    # The PDF's text must contain one of these (the case code, the applicant's name, the
    # answered document's number/symbol or its issuer): a result is sent only where the
    # document itself says it belongs.
    names: tuple[str, ...] = ()
    # The registered sender never passed authentication: its address is only a claim.
    unproven: bool = False


def match(conn: Connection, cfg: Config, file_name: str, case_code: str | None) -> Target | None:
    """Find the case (code in the name, or given) or register entry (SD<n>-<year>).

    The result goes to the address vanthu registered (the applicant of the case, or the
    strictly parsed sender of the entry), never to one read from a display name.
    """
    if case_code is None:
        found = re.search(rf"({cfg.agency.case_ref_pattern})", file_name)
        case_code = found.group(1) if found else None
    if case_code:
        case = conn.execute(select(cases).where(cases.c.code == case_code)).first()
        if case is None or not case.applicant_email:
            return None
        entry = conn.execute(select(register_entries.c.id, register_entries.c.book)
                             .where(register_entries.c.case_id == case.id)).first()
        origin = conn.scalar(select(messages.c.header_message_id)
                             .where(messages.c.id == case.message_id)) if case.message_id \
            else None
        return Target(case.applicant_email, case.id, case.code, entry.id if entry else None,
                      origin or None, bool(entry and entry.book == Book.CONFIDENTIAL),
                      tuple(n for n in (case.code, case.applicant_name) if n))
    if number := _REGISTER_NUMBER.search(file_name):
        row = conn.execute(
            select(register_entries.c.id, register_entries.c.book, register_entries.c.case_id,
                   register_entries.c.sender_email, register_entries.c.document,
                   register_entries.c.trust, messages.c.header_message_id)
            .join(messages, messages.c.id == register_entries.c.message_id)
            .where(register_entries.c.number == int(number.group(1)),
                   register_entries.c.year == int(number.group(2)),
                   register_entries.c.book == Book.INCOMING)).first()
        if row is None or not row.sender_email:
            return None
        document = row.document or {}
        names = [document.get("issuer")]
        if document.get("symbol"):
            names.append(f"{document.get('number') or ''}/{document['symbol']}".lstrip("/"))
        return Target(row.sender_email, row.case_id, None, row.id,
                      row.header_message_id or None, False, tuple(n for n in names if n),
                      unproven=not row.trust)
    return None


def _squeezed(text: str) -> str:
    """Folded without accents or spaces, so "HS-2026-000123" and "Bùi Văn Toàn" are found
    however the PDF's text extraction spaced them."""
    return re.sub(r"\s+", "", fold(text, accents=False))


def mismatch(cfg: Config, target: Target, text: str) -> tuple[str, str] | None:
    """Why the PDF's own text does not support sending it to `target` (English, Vietnamese),
    or None when it names the case, the applicant or the answered document, and no other
    case."""
    for found in re.finditer(rf"({cfg.agency.case_ref_pattern})", text):
        if found.group(1) != target.case_code:
            return (f"the PDF names case {found.group(1)}, not the one it was sent for",
                    f"văn bản ghi mã hồ sơ {found.group(1)}, không phải hồ sơ được gửi đến")
    squeezed = _squeezed(text)
    if not any(_squeezed(name) in squeezed for name in target.names):
        wanted = ", ".join(target.names) or "(nothing to compare)"
        return (f"the PDF names neither the case nor its applicant or document ({wanted}): "
                "it may belong to someone else",
                f"văn bản không ghi mã hồ sơ, tên người nộp hoặc văn bản được trả lời "
                f"({wanted}); có thể là kết quả của hồ sơ khác")
    return None


TEXT_PAGES = 10  # pages of a result read to check whom it names; the header is on page one


def _text(data: bytes) -> str:
    """The text of the first pages of a PDF that already passed signature validation (so it
    is the agency's own document, not attacker input)."""
    try:
        pages = pypdf.PdfReader(io.BytesIO(data)).pages
        return "\n".join(page.extract_text() or "" for page in pages[:TEXT_PAGES])
    except Exception:  # a reader error leaves no text: the name check then refuses
        return ""


@dataclass(frozen=True)
class Outcome:
    sent: bool
    reason_en: str
    reason_vi: str
    outgoing_number: str | None = None


def _reject(cfg: Config, engine: Engine, path: Path, en: str, vi: str,
            move: bool) -> Outcome:
    with engine.begin() as conn:
        conn.execute(insert(rejected_results).values(file_name=path.name, reason=en,
                                                     rejected_at=utcnow()))
    if move:
        target = cfg.results.inbox_dir / "rejected"
        target.mkdir(parents=True, exist_ok=True)
        (target / f"{path.name}.reason.txt").write_text(
            f"Không gửi: {vi}\nNot sent: {en}\n", encoding="utf-8")
        shutil.move(str(path), target / path.name)
    log.warning("result.rejected", extra={"file": path.name, "reason": en})
    return Outcome(False, en, vi)


async def send_result(cfg: Config, engine: Engine, path: Path, case_code: str | None = None,
                      move: bool = True) -> Outcome:
    """Verify, match and queue one result PDF; move it to sent/ or rejected/ (when `move`)."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    with reading(engine) as conn:
        done = conn.execute(select(outgoing_entries.c.number, outgoing_entries.c.year)
                            .where(outgoing_entries.c.pdf_sha256 == digest)).first()
        conn.rollback()
    if done is None:
        verdict = await verify(data, load_roots(cfg.results.trust_roots))
        if not verdict.valid:
            return _reject(cfg, engine, path, verdict.en, verdict.vi, move)
        now = utcnow()
        text = _text(data)
        try:
            with engine.begin() as conn:
                target = match(conn, cfg, path.name, case_code)
                if target is None:
                    conn.rollback()
                    return _reject(cfg, engine, path,
                                   "no case or register entry matches the file name",
                                   "không tìm thấy hồ sơ hoặc số đến khớp với tên tệp", move)
                if target.unproven:
                    conn.rollback()
                    return _reject(cfg, engine, path,
                                   "the registered sender never passed authentication: its address "
                                   "is only a claim; send the answer by hand",
                                   "người gửi văn bản đến chưa được xác thực; đề nghị gửi văn bản "
                                   "trả lời theo cách khác", move)
                if reason := mismatch(cfg, target, text):
                    conn.rollback()
                    return _reject(cfg, engine, path, *reason, move)
                if target.confidential:
                    conn.rollback()
                    return _reject(cfg, engine, path,
                                   "the case is confidential: its result never goes by email",
                                   "hồ sơ mật: không gửi kết quả qua thư điện tử", move)
                year = now.astimezone(cfg.agency.tz).year
                number = next_number(conn, f"outgoing:{year}")
                document = extract.from_text(text, path.name)
                outgoing = (f"{document.number or number}/{document.symbol}"
                            if document and document.symbol else f"số đi {number}/{year}")
                email = result(cfg, pdf_sha256=digest, pdf_name=path.name, pdf=data, to=target.to,
                               case_code=target.case_code, in_reply_to=target.in_reply_to,
                               outgoing=outgoing, summary=document.summary if document else None,
                               sent_at=now)
                enqueue(conn, cfg, email=email, purpose=Purpose.RESULT, recipients=[target.to],
                        allowed=Allowed.nobody(), now=now,
                        answering=Answering.of_record(conn, case_id=target.case_id,
                                                      entry_id=target.entry_id))
                conn.execute(insert(outgoing_entries).values(
                    year=year, number=number, pdf_sha256=digest, file_name=path.name,
                    case_id=target.case_id, register_entry_id=target.entry_id,
                    document=document.as_json() if document else None, signer=verdict.signer,
                    recipients=[target.to], sent_at=now,
                    outbox_message_id=message_id(cfg, digest, "result")))
                if target.case_id is not None:
                    record_result(conn, target.case_id, target.to, f"{number}/{year}", path.name)
        except EmailRefused as err:  # the registered address cannot be written to
            return _reject(cfg, engine, path, f"the email cannot be sent: {err}",
                           f"không gửi được thư: {err}", move)
        log.info("result.queued", extra={"file": path.name, "to": target.to,
                                         "outgoing": number})
        done_number = f"{number}/{year}"
    else:
        done_number = f"{done.number}/{done.year}"
    if move:
        sent = cfg.results.inbox_dir / "sent"
        sent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), sent / path.name)
    return Outcome(True, "sent", "đã gửi", done_number)


async def scan_inbox(cfg: Config, engine: Engine) -> int:
    """Handle every settled PDF in the results folder; return how many were handled."""
    folder = cfg.results.inbox_dir
    if not folder.is_dir():
        return 0
    handled = 0
    for path in sorted(folder.glob("*.pdf")) + sorted(folder.glob("*.PDF")):
        if time.time() - path.stat().st_mtime < SETTLE_SECONDS:
            continue
        try:
            await send_result(cfg, engine, path)
        except OSError as err:
            log.error("result.io_error", extra={"file": path.name, "error": str(err)})
            continue
        handled += 1
    return handled
