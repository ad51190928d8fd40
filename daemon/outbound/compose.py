"""Compose the emails vanthu sends: forwards with a Vietnamese cover note, content-free
notices for confidential documents, acknowledgements of receipt and signed results; and the
one envelope every email of vanthu (digest and letters too) is built on.

Pure: the same inputs give the same bytes but for the Date header. The Message-ID is derived
from the stored mail's sha256 and the action, so a transaction replayed after a crash
produces the same Message-ID and receivers can drop a duplicate.
"""

from __future__ import annotations

import base64
import functools
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from email.header import Header
from email.message import EmailMessage
from email.utils import format_datetime

from daemon.config import Config
from daemon.errors import EmailRefused, RecipientRefused
from daemon.models import Action, Attachment, Document, Kind, ParsedMail, Understanding
from daemon.office import completeness, receipt
from daemon.office.receipt import ReceiptFields, ReceivedDocument
from daemon.outbound import headers
from daemon.outbound.recipients import Purpose, mailbox_problem
from daemon.routing.rules import Procedure
from daemon.textnorm import fold, header_safe, nfc
from daemon.understand import ocr
from daemon.understand.postal import find_address
from daemon.understand.signatures import signature_lines

URGENCY_TAG = {"Hỏa tốc": "HỎA TỐC", "Thượng khẩn": "THƯỢNG KHẨN", "Khẩn": "KHẨN"}

# RFC 3834: our mail is machine-made, so well-behaved responders do not answer it; a signed
# result is the agency's real answer, and replies to it are welcome.
AUTO_SUBMITTED = {Purpose.ACKNOWLEDGE: "auto-replied", Purpose.RESULT: "no"}

# A msg-id as vanthu writes one and accepts one to thread to: ASCII, no spaces or brackets.
MSG_ID = re.compile(r"<[\x21-\x3b\x3d\x3f-\x7e]+@[\x21-\x3b\x3d\x3f-\x7e]+>")
# A display name that can stand in a header as it is: words of atext, single spaces.
_PLAIN_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?: [A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")


@dataclass(frozen=True)
class Context:
    """What a composed mail says about the registration."""

    sha256: str
    received_at: datetime  # when the agency's server took the mail (its legal time)
    book: str | None = None
    number: int | None = None
    year: int | None = None
    case_code: str | None = None
    procedure: Procedure | None = None
    appointment: date | None = None
    queue: str | None = None  # the dossier's queue number and half-day slot
    # When vanthu fetched the mail: the Date of the emails it causes (a forward made on Monday
    # of a mail taken on Friday is dated Monday, so it is not filed out of sight). None: the
    # received time.
    stored_at: datetime | None = None
    # A dossier's completeness check: one missing documents gets the request to complete it
    # instead of the receipt slip. None: not checked (the receipt slip).
    completeness: completeness.Verdict | None = None


_LEADING_MARK = re.compile(r"^\s*[\[(]?\s*(?P<mark>[^\W\d_]+(?:\s+[^\W\d_]+)?)\s*"
                           r"(?:[\])]\s*[:\-–—]?|[:\-–—])\s*")


def tagged(subject: str, tag: str) -> str:
    """`[TAG] subject`, without the same mark twice: a subject that already opens with it
    ("THƯỢNG KHẨN: …", "[Khẩn] …", "(Hỏa tốc) - …") keeps only the bracketed tag."""
    if not tag:
        return subject
    found = _LEADING_MARK.match(subject)
    if found and fold(found.group("mark"), accents=False) == fold(tag, accents=False):
        subject = subject[found.end():]
    return f"[{tag}] {subject}"


def message_id(cfg: Config, sha256: str, action: str) -> str:
    return f"<{sha256[:32]}.{action}@{cfg.agency.message_id_domain}>"


def _doc_lines(doc: Document | None, with_summary: bool) -> list[tuple[str, str]]:
    if doc is None:
        return []
    lines = [
        ("Cơ quan ban hành", doc.issuer or ""),
        ("Số, ký hiệu", f"{doc.number or '...'}/{doc.symbol}" if doc.symbol else ""),
        ("Ngày văn bản", f"{doc.date:%d/%m/%Y}" if doc.date else ""),
        ("Loại văn bản", doc.type or ""),
    ]
    if with_summary:
        lines.append(("Trích yếu", doc.summary or ""))
    lines += [("Độ khẩn", doc.urgency or ""), ("Độ mật", doc.confidentiality or "")]
    return [(k, v) for k, v in lines if v]


# Read on phones: the page takes the screen's width, each field is its own line (a two-column
# table squeezes long values into a narrow column), and text keeps its line breaks.
PAGE_HEAD = ("<!DOCTYPE html><html lang='vi'><head><meta charset='utf-8'><meta name='viewport' "
         "content='width=device-width, initial-scale=1'></head>"
         "<body style='font-family:sans-serif;line-height:1.45;max-width:42em;margin:0 auto;"
         "padding:8px;overflow-wrap:anywhere'>")


def paragraphs(text: str) -> str:
    """Plain text as HTML paragraphs: a blank line separates paragraphs, a line break stays
    a line break, everything escaped."""
    blocks = [b.strip("\n") for b in re.split(r"\n(?:[ \t]*\n)+", text.strip())]
    return "".join("<p>" + "<br>".join(html.escape(line) for line in b.splitlines()) + "</p>"
                   for b in blocks if b.strip())


def render(title: str, intro: list[str], rows: list[tuple[str, str]],
            outro: list[str]) -> tuple[str, str]:
    text = "\n".join([title, "", *intro, "", *(f"- {k}: {v}" for k, v in rows), "", *outro])
    fields = "".join(f"<p style='margin:0 0 6px'><b>{html.escape(k)}:</b> "
                     f"{html.escape(v)}</p>" for k, v in rows)
    body = "".join(paragraphs(p) for p in intro)
    tail = "".join(paragraphs(p) for p in outro)
    markup = (f"{PAGE_HEAD}<h3>{html.escape(title)}</h3>{body}<div>{fields}</div>{tail}"
              "</body></html>")
    return nfc(text), nfc(markup)


def set_text_header(msg: EmailMessage, name: str, value: str) -> None:
    """Set a header that may hold Vietnamese text, RFC 2047-encoded by `email.header`.

    The modern policy's own folder drops the space between two encoded words
    ("KHẨN: Thông" becomes "KHẨN:Thông"), so the header is encoded here and stored raw.
    ASCII text that looks like an encoded word is encoded too: set as it is, a reader would
    decode it (into anything, line breaks included).
    """
    del msg[name]
    if value.isascii() and "=?" not in value:
        msg[name] = value
    else:
        msg.set_raw(name, Header(value, "utf-8", header_name=name).encode(linesep="\r\n"))


def _replace(msg: EmailMessage, name: str, value: str) -> None:
    del msg[name]
    msg[name] = value


@functools.lru_cache(maxsize=64)  # pure, and the same From for every email of a configuration
def mailbox(name: str, address: str) -> str:
    """`Name <address>` for a From header: a plain name as it is, any other (Vietnamese,
    quotes, commas, '@', '<>', very long) as RFC 2047 encoded words folded to short lines.

    Every line stays within 78 octets: a longer one would be refolded on output by the
    modern policy, which renders a decoded display name unquoted (":::" becomes a group).
    """
    name = header_safe(name)
    if not name:
        return address
    if (_PLAIN_NAME.fullmatch(name) and "=?" not in name
            and len(f"From: {name} <{address}>") <= 78):
        return f"{name} <{address}>"
    words = Header(name, "utf-8", header_name="From").encode(linesep="\r\n")
    last = words.rsplit("\r\n", 1)[-1]
    first_line = "\r\n" not in words  # then "From: " stands before it on the same line
    width = len("From: ") * first_line + len(last) + len(f" <{address}>")
    # The address on the last line if it fits, else on a folded line of its own.
    fold = " " if width <= 78 else "\r\n "
    return f"{words}{fold}<{address}>"


def thread_id(value: str | None) -> str | None:
    """A mail-supplied Message-ID fit to thread to (In-Reply-To, References), or None."""
    found = MSG_ID.fullmatch(header_safe(value or "", 500))
    return found.group(0) if found else None


def envelope(cfg: Config, *, purpose: Purpose, to: Sequence[str], subject: str,
             date: datetime, message_id: str, in_reply_to: str | None = None,
             reply_to_agency: bool = False) -> EmailMessage:
    """The headers of every email vanthu sends, set here and nowhere else: From (the
    configured display name, else the agency's name, and `[smtp] from`'s address), To,
    Subject (mail-supplied text made header-safe), Date, Message-ID, threading, exactly one
    Auto-Submitted and X-Vanthu-Action. A recipient that cannot be sent raises
    RecipientRefused; a malformed Message-ID raises EmailRefused."""
    for address in to:
        if problem := mailbox_problem(address):
            raise RecipientRefused(str(address), problem)
    if not MSG_ID.fullmatch(message_id):
        raise EmailRefused(f"not a Message-ID: {message_id!r}")
    msg = EmailMessage(policy=headers.SMTP)  # the SMTP policy, header classes made once
    msg.set_raw("From", mailbox(cfg.smtp.from_name or cfg.agency.name, cfg.smtp.from_address))
    msg["To"] = ", ".join(to)
    set_text_header(msg, "Subject", header_safe(subject, 250))
    msg["Date"] = format_datetime(date.astimezone(cfg.agency.tz))
    msg["Message-ID"] = message_id
    if reply_to_agency:
        msg["Reply-To"] = cfg.smtp.from_address
    if thread := thread_id(in_reply_to):
        msg["In-Reply-To"] = thread
        msg["References"] = thread
    _replace(msg, "Auto-Submitted", AUTO_SUBMITTED.get(purpose, "auto-generated"))
    _replace(msg, "X-Vanthu-Action", purpose.value)
    return msg


def _envelope(cfg: Config, ctx: Context, action: Action, subject: str,
              in_reply_to: str | None = None) -> EmailMessage:
    """The envelope of an email caused by a stored mail, its Message-ID from the mail's hash."""
    return envelope(cfg, purpose=Purpose(action.action), to=action.to, subject=subject,
                    date=ctx.stored_at or ctx.received_at,
                    message_id=message_id(cfg, ctx.sha256, action.action),
                    in_reply_to=in_reply_to)


def _register_line(ctx: Context) -> str:
    if ctx.number is None:
        return ""
    book = "Sổ văn bản mật" if ctx.book == "confidential" else "Sổ văn bản đến"
    return f"{book}: số đến {ctx.number}/{ctx.year}"


def forward(cfg: Config, ctx: Context, action: Action, mail: ParsedMail,
            und: Understanding) -> EmailMessage:
    """The forward to leaders: cover note, then the document's attachments (never unsafe ones).
    Never for a mail whose content must not travel by email: that is a bug upstream."""
    if und.withhold_content:
        raise EmailRefused("a confidential or possibly confidential mail is never forwarded "
                           "with its content; only a notice goes out")
    tag = URGENCY_TAG.get(und.document.urgency or "", "") if und.document else ""
    prefix = "[Giao xử lý] " if action.action == "assign" else ""
    prefix += f"[Số đến {ctx.number}/{ctx.year}] " if ctx.number else ""
    if ctx.case_code:
        prefix += f"[{ctx.case_code}] "
    msg = _envelope(cfg, ctx, action, prefix + tagged(mail.subject or "(không có tiêu đề)", tag))
    kind_name = {Kind.DOCUMENT: "văn bản đến", Kind.DOSSIER: "hồ sơ",
                 Kind.REPLY: "thư trả lời trong hồ sơ"}.get(und.kind, "thư")
    intro = [f"Văn thư kính chuyển {kind_name} nhận qua thư điện tử."]
    if action.note:
        intro.append(f"Ghi chú: {action.note}.")
    rows = [("Ngày đến", f"{ctx.received_at.astimezone(cfg.agency.tz):%H:%M %d/%m/%Y}")]
    if reg := _register_line(ctx):
        rows.append(("Đăng ký", reg))
    if ctx.case_code:
        rows.append(("Mã hồ sơ", ctx.case_code))
    rows.append(("Nơi gửi", f"{mail.sender.name} <{mail.sender.email}>" if mail.sender.name
                 else mail.sender.email))
    rows += [("Lưu ý", note) for note in und.trust_notes]  # e.g. issuer vs sender domain
    if und.document and (unsure := und.document.checks()):
        rows.append(("Cần kiểm tra", ocr.check_note(unsure)))
    rows += _doc_lines(und.document, with_summary=True)
    if und.applicant:
        rows += [(k, v or "") for k, v in (("Người nộp", und.applicant.name),
                                           ("Điện thoại", und.applicant.phone)) if v]
    kept = [a for a in mail.attachments if not a.withheld]
    withheld = [a for a in mail.attachments if a.withheld]
    if kept:
        rows.append(("Tệp đính kèm", "; ".join(a.name for a in kept)))
    rows += [("Chữ ký số", line)
             for line in signature_lines(und.signatures, mail.attachments, cfg.agency.tz)]
    outro = []
    if withheld:
        outro.append("Không chuyển tiếp các tệp không an toàn: "
                     + "; ".join(f"{a.name} ({a.withheld})" for a in withheld)
                     + ". Văn thư giữ bản gốc để kiểm tra.")
    if mail.body.strip():
        outro += ["Nội dung thư gốc:", mail.body.strip()[:4000]]
    text, markup = render("Phiếu chuyển văn bản", intro, rows, outro)
    msg.set_content(text)
    msg.add_alternative(markup, subtype="html")
    for item in kept:
        _attach(msg, item)
    return msg


def _attach(msg: EmailMessage, item: Attachment) -> None:
    """Add one of the mail's attachments as it came, under its sanitised name."""
    maintype, _, subtype = item.content_type.partition("/")
    if not subtype or maintype == "multipart":
        maintype, subtype = "application", "octet-stream"
    attach_bytes(msg, item.payload, maintype, subtype, item.name)


def attach_bytes(msg: EmailMessage, data: bytes, maintype: str, subtype: str,
                 filename: str) -> None:
    """`msg.add_attachment(data, …)` with the same headers and bytes, the base64 made by
    `base64.encodebytes` (C, the same 76-character lines) instead of the standard library's
    Python loop over 57-byte pieces: the headers are made by the library for an empty
    payload, then the encoded payload is put in."""
    msg.add_attachment(b"", maintype=maintype, subtype=subtype, filename=filename)
    *_, part = msg.iter_parts()
    part.set_payload(base64.encodebytes(data).decode("ascii"))


def release_id(cfg: Config, mail_sha256: str, attachment_sha256: str) -> str:
    """The Message-ID of the release of one attachment of one mail: the same every time, so
    the outbox (unique on it) never holds the same release twice."""
    return message_id(cfg, mail_sha256, f"release.{attachment_sha256[:32]}")


def release(cfg: Config, ctx: Context, *, item: Attachment, to: Sequence[str], subject: str,
            in_reply_to: str | None, actor: str, released_at: datetime) -> EmailMessage:
    """A withheld attachment the clerk has checked and lets go, to everyone the mail was
    forwarded to: the forward's subject, threaded to it, with that one attachment."""
    msg = envelope(cfg, purpose=Purpose.RELEASE, to=to, subject=subject, date=released_at,
                   message_id=release_id(cfg, ctx.sha256, item.sha256),
                   in_reply_to=in_reply_to)
    when = f"{released_at.astimezone(cfg.agency.tz):%H:%M ngày %d/%m/%Y}"
    intro = [f"Văn thư chuyển bổ sung tệp đính kèm đã kiểm tra: {item.name} (đã giữ lại vì: "
             f"{item.withheld}; {actor} cho phép chuyển lúc {when})."]
    rows = [("Ngày đến", f"{ctx.received_at.astimezone(cfg.agency.tz):%H:%M %d/%m/%Y}")]
    if reg := _register_line(ctx):
        rows.append(("Đăng ký", reg))
    rows += [("Tệp đính kèm", item.name), ("Kích thước", f"{item.size} byte"),
             ("SHA-256", item.sha256)]
    outro = ["Tệp này đã bị giữ lại khi chuyển văn bản; văn thư đã kiểm tra và cho phép "
             "chuyển. Đề nghị đồng chí chỉ mở tệp nếu cần cho công việc."]
    text, markup = render("Phiếu chuyển bổ sung tệp đính kèm", intro, rows, outro)
    msg.set_content(text)
    msg.add_alternative(markup, subtype="html")
    _attach(msg, item)
    return msg


def notify(cfg: Config, ctx: Context, action: Action, mail: ParsedMail,
           und: Understanding) -> EmailMessage:
    """A notice without content: a confidential document never travels by email, nor does a
    mail that may be one (part of it could not be read); the clerk holds the original."""
    tag = URGENCY_TAG.get(und.document.urgency or "", "") if und.document else ""
    prefix = f"[Số đến {ctx.number}/{ctx.year}] " if ctx.number else ""
    prefix += f"[{tag}] " if tag else ""
    if und.confidential:
        level = und.secrecy or "Mật"
        subject = f"{prefix}Thông báo có văn bản {level} đến"
        intro = [f"Văn thư đã nhận một văn bản độ mật «{level}». Theo quy định, văn bản mật "
                 "không được gửi qua thư điện tử; đề nghị đồng chí nhận văn bản tại Văn thư."]
    else:
        subject = f"{prefix}Thông báo có văn bản đến (Văn thư đang kiểm tra độ mật)"
        intro = ["Văn thư đã nhận một văn bản có phần không đọc được tự động, nên chưa xác định "
                 "được văn bản có phải là văn bản mật hay không. Nội dung chưa được chuyển qua "
                 "thư điện tử; Văn thư sẽ kiểm tra và chuyển theo quy định."]
    msg = _envelope(cfg, ctx, action, subject)
    if action.note:
        intro.append(f"Ghi chú: {action.note}.")
    rows = [("Ngày đến", f"{ctx.received_at.astimezone(cfg.agency.tz):%H:%M %d/%m/%Y}")]
    if reg := _register_line(ctx):
        rows.append(("Đăng ký", reg))
    rows += [(k, v) for k, v in _doc_lines(und.document, with_summary=False)
             if k in ("Cơ quan ban hành", "Độ khẩn")]
    if und.confidential:
        rows.append(("Độ mật", und.secrecy or "Mật"))
    title = "Thông báo văn bản mật" if und.confidential else "Thông báo văn bản đến"
    text, markup = render(title, intro, rows, [])
    msg.set_content(text)
    msg.add_alternative(markup, subtype="html")
    return msg


def acknowledge(cfg: Config, ctx: Context, action: Action, mail: ParsedMail,
                und: Understanding) -> EmailMessage:
    """The acknowledgement of receipt to the sender, threaded to their mail. A dossier gets
    the receipt slip (Giấy tiếp nhận hồ sơ và hẹn trả kết quả), in the mail and as a PDF."""
    if und.kind is Kind.DOSSIER and ctx.case_code:
        verdict = ctx.completeness
        if verdict is not None and verdict.state is completeness.State.MISSING:
            return supplement_request(cfg, ctx, action, mail, und, verdict)
        if verdict is None or verdict.state is completeness.State.COMPLETE:
            return _receipt(cfg, ctx, action, mail, und)
        # Held for the clerk: only the plain acknowledgement that the mail arrived.
    subject = f"Xác nhận đã nhận: {mail.subject}" if mail.subject else "Xác nhận đã nhận thư"
    if ctx.case_code:
        subject = f"[{ctx.case_code}] {subject}"
    msg = _envelope(cfg, ctx, action, subject, mail.message_id)
    received = f"{ctx.received_at.astimezone(cfg.agency.tz):%H:%M ngày %d/%m/%Y}"
    intro = [f"{cfg.agency.name} xác nhận đã nhận thư của Quý cơ quan/ông/bà lúc {received}."]
    rows: list[tuple[str, str]] = []
    if und.kind is Kind.REPLY and und.case_ref:
        rows.append(("Mã hồ sơ", und.case_ref))
    if reg := _register_line(ctx):
        rows.append(("Đăng ký", reg))
    if und.document and und.document.symbol and not und.confidential:
        rows.append(("Văn bản", f"{und.document.number or '...'}/{und.document.symbol}"))
    outro = ["Khi trao đổi thêm, xin giữ nguyên mã hồ sơ trong tiêu đề thư.",
             "Đây là thư tự động của Văn thư; xin trân trọng cảm ơn."]
    text, markup = render("Giấy xác nhận đã nhận", intro, rows, outro)
    msg.set_content(text)
    msg.add_alternative(markup, subtype="html")
    return msg


def _received_documents(mail: ParsedMail) -> tuple[ReceivedDocument, ...]:
    """The documents received: each attachment, one electronic file; a mail without any
    carries its request in its text."""
    items = [ReceivedDocument(receipt.clean(a.name) or "(tệp không tên)")
             for a in mail.attachments[:receipt.MAX_DOCUMENTS]]
    if extra := len(mail.attachments) - len(items):
        items.append(ReceivedDocument(f"Các tệp khác ({extra} tệp)", count=f"{extra:02d} tệp"))
    return tuple(items) or (ReceivedDocument("Nội dung thư điện tử", count="01 thư"),)


def receipt_fields(cfg: Config, ctx: Context, mail: ParsedMail,
                   und: Understanding) -> ReceiptFields:
    """The slip's fields: the agency's from the configuration, the applicant's from the mail
    (cleaned and capped), the dates in the agency's time zone. Every value depends on the
    registration only, so a slip sent again is the same slip."""
    agency = cfg.agency
    received = ctx.received_at.astimezone(agency.tz)
    person = und.applicant
    texts = (mail.body, *(a.text for a in mail.attachments[:receipt.MAX_DOCUMENTS]))
    return ReceiptFields(
        agency=agency.name, result_place=agency.result_place, parent=agency.parent,
        code=ctx.case_code or "",
        number=receipt.slip_number(ctx.case_code or "", agency.code),
        dated=receipt.dated_line(agency.place, received.date()),
        applicant=receipt.clean(person.name if person else None),
        address=receipt.clean(find_address(texts)),
        email=receipt.clean(person.email if person else mail.sender.email),
        phone=receipt.clean(person.phone if person else None),
        procedure=ctx.procedure.name if ctx.procedure else None,
        days=ctx.procedure.days if ctx.procedure else None,
        documents=_received_documents(mail),
        received=f"{received:%H} giờ {received:%M} phút, ngày {received:%d/%m/%Y}",
        appointment=(f"{agency.result_time[:2]} giờ {agency.result_time[3:]} phút, "
                     f"ngày {ctx.appointment:%d/%m/%Y}") if ctx.appointment else None,
        queue=ctx.queue,
        book_volume=f"{agency.volume:02d}/{ctx.year}" if ctx.year else None,
        book_number=ctx.number,
        officer=agency.receiving_officer, officer_name=agency.receiving_officer_name)


def _receipt(cfg: Config, ctx: Context, action: Action, mail: ParsedMail,
             und: Understanding) -> EmailMessage:
    msg = _envelope(cfg, ctx, action,
                    f"[{ctx.case_code}] Giấy tiếp nhận hồ sơ và hẹn trả kết quả",
                    mail.message_id)
    slip = receipt.make(receipt_fields(cfg, ctx, mail, und), cfg.rules.dir)
    msg.set_content(slip.text)
    msg.add_alternative(slip.html, subtype="html")
    attach_bytes(msg, slip.pdf, "application", "pdf", f"Giay tiep nhan {ctx.case_code}.pdf")
    return msg


def supplement_request(cfg: Config, ctx: Context, action: Action, mail: ParsedMail,
                       und: Understanding, verdict: completeness.Verdict) -> EmailMessage:
    """The request to complete a dossier that lacks required documents (Phiếu yêu cầu bổ
    sung, hoàn thiện hồ sơ) instead of the receipt slip: what is missing, what was received,
    no return date. Threaded to the applicant's mail."""
    msg = _envelope(cfg, ctx, action,
                    f"[{ctx.case_code}] Phiếu yêu cầu bổ sung, hoàn thiện hồ sơ",
                    mail.message_id)
    received = ctx.received_at.astimezone(cfg.agency.tz)
    person = und.applicant
    fields = completeness.SupplementFields(
        agency=cfg.agency.name, result_place=cfg.agency.result_place, code=ctx.case_code or "",
        applicant=person.name if person else None,
        email=person.email if person else mail.sender.email,
        phone=person.phone if person else None,
        procedure=ctx.procedure.name if ctx.procedure else None,
        received=f"{received:%H} giờ {received:%M} phút, ngày {received:%d/%m/%Y}",
        requested=f"{(ctx.stored_at or ctx.received_at).astimezone(cfg.agency.tz):%d/%m/%Y}",
        missing=verdict.missing, documents=completeness.received_lines(verdict))
    text, markup = completeness.render(fields, cfg.rules.dir)
    msg.set_content(text)
    msg.add_alternative(markup, subtype="html")
    return msg


COMPOSERS = {"forward": forward, "notify": notify, "acknowledge": acknowledge,
             "assign": forward}  # an assignment is a forward whose note names the units


def result(cfg: Config, *, pdf_sha256: str, pdf_name: str, pdf: bytes, to: str,
           case_code: str | None, in_reply_to: str | None, outgoing: str,
           summary: str | None, sent_at: datetime) -> EmailMessage:
    """The signed result of a case, to the party whose case it closes; threads to their mail.
    Replies are welcome (Auto-Submitted: no, Reply-To the agency)."""
    subject = "Kết quả giải quyết hồ sơ" if case_code else "Văn bản trả lời"
    if case_code:
        subject = f"[{case_code}] {subject}"
    msg = envelope(cfg, purpose=Purpose.RESULT, to=(to,), subject=subject, date=sent_at,
                   message_id=message_id(cfg, pdf_sha256, "result"), in_reply_to=in_reply_to,
                   reply_to_agency=True)
    intro = [f"{cfg.agency.name} trân trọng gửi Quý cơ quan/ông/bà kết quả giải quyết"
             + (f" hồ sơ mã {case_code}." if case_code else ".")]
    rows = [("Văn bản", outgoing)]
    if summary:
        rows.append(("Trích yếu", summary))
    rows.append(("Tệp đính kèm", f"{pdf_name} (văn bản điện tử có chữ ký số)"))
    outro = ["Văn bản điện tử có chữ ký số có giá trị pháp lý như bản gốc "
             "(Nghị định 30/2020/NĐ-CP, Điều 5).",
             "Mọi trao đổi xin trả lời thư này và giữ nguyên mã hồ sơ trong tiêu đề."]
    text, markup = render("Thông báo kết quả giải quyết", intro, rows, outro)
    msg.set_content(text)
    msg.add_alternative(markup, subtype="html")
    attach_bytes(msg, pdf, "application", "pdf", pdf_name)
    return msg
