"""Decide what kind of mail this is, and why. Pure functions over a ParsedMail.

Order matters and is part of the contract: machine mail first (a bounce or an auto-reply that
quotes a case code is still machine mail, never a reply), then spam, then replies in a case,
then official documents and dossiers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from daemon.models import Document, Kind, ParsedMail
from daemon.textnorm import fold

_AUTO_SUBJECT = re.compile(
    r"^\s*(auto(matic)?\s*(reply|response)|out of (the )?office|autoreply|vắng mặt|"
    r"trả lời tự động|tự động trả lời|thư trả lời tự động)\b", re.I)
_BOUNCE_FROM = re.compile(r"^(mailer-daemon|postmaster|mail-daemon)@", re.I)
_SPAM_WORDS = (
    "vay tiền", "giải ngân", "lãi suất 0", "đăng ký ngay", "không cần thi", "cam kết",
    "trúng thưởng", "khuyến mãi", "nâng cấp dung lượng", "sắp đầy", "xác minh tài khoản",
    "đăng nhập để", "mật khẩu sẽ hết hạn", "bấm vào đây", "click here", "verify your account",
    "100%", "zalo", "casino", "nhận thưởng",
)
_SUSPICIOUS_TLD = re.compile(r"https?://[^\s/\"'>]+\.(top|click|xyz|icu|buzz|live|cn|ru)\b", re.I)
_DOSSIER_WORDS = (
    "hồ sơ", "đơn đề nghị", "xin cấp", "đề nghị cấp", "cấp lại", "giấy phép", "chứng chỉ",
    "thủ tục",
)
@dataclass(frozen=True)
class Signals:
    """Facts about the mail that classification needs from outside it."""

    case_ref: str | None  # a case this mail belongs to (subject tag or thread), if any
    case_why: str
    own_mail: bool  # sent by vanthu itself or from one of the agency's own addresses
    authenticated: bool | None  # None: no trusted Authentication-Results to tell


def _header_says_auto(mail: ParsedMail) -> str | None:
    auto = mail.header("auto-submitted").strip().lower()
    if auto and auto != "no":
        return f"Auto-Submitted: {auto}"
    for name in ("x-autoreply", "x-autorespond", "x-auto-reply"):
        if mail.header(name):
            return f"{name}: {mail.header(name)}"
    if mail.header("precedence").strip().lower() == "auto_reply":
        return "Precedence: auto_reply"
    if _AUTO_SUBJECT.match(mail.subject):
        return f"subject looks automatic: {mail.subject[:60]!r}"
    return None


def _bounce(mail: ParsedMail) -> str | None:
    if "message/delivery-status" in mail.content_types:
        return "has a message/delivery-status part (RFC 3464 DSN)"
    content_type = mail.header("content-type").lower()
    if "multipart/report" in content_type and "delivery-status" in content_type:
        return "multipart/report; report-type=delivery-status"
    if mail.header("return-path").strip() == "<>" and _BOUNCE_FROM.match(mail.sender.email):
        return "null return path from a mailer daemon"
    return None


def _bulk(mail: ParsedMail) -> str | None:
    for name in ("list-id", "list-unsubscribe"):
        if mail.header(name):
            return f"{name} header"
    precedence = mail.header("precedence").strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return f"Precedence: {precedence}"
    return None


def credible(document: Document | None) -> bool:
    """A document header worth a number in the register: `Số: n/SYMBOL` alone is one line any
    spam can carry, so it must stand with the issuer block or the date line of the header."""
    return bool(document and document.symbol and (document.issuer or document.date))


def _spam(mail: ParsedMail, signals: Signals, document: Document | None) -> str | None:
    if mail.header("x-spam-flag").strip().upper() == "YES":
        return "X-Spam-Flag: YES"
    text = fold(f"{mail.subject}\n{mail.body}")
    hits = [w for w in _SPAM_WORDS if w in text]
    if _SUSPICIOUS_TLD.search(mail.body) or _SUSPICIOUS_TLD.search(" ".join(mail.headers.get(
            "x-original-url", ()))):
        hits.append("link to a throw-away domain")
    if any(ord(c) > 0x1F000 for c in mail.subject):
        hits.append("emoji in subject")
    if signals.authenticated is False and not credible(document):
        hits.append("failed sender authentication")
    if len(hits) >= 2 and not credible(document):
        return "spam signals: " + ", ".join(hits[:4])
    return None


def classify(
    mail: ParsedMail, signals: Signals, document: Document | None
) -> tuple[Kind, str]:
    """Return the kind of `mail` and the reason, e.g. (AUTO, 'Auto-Submitted: auto-replied')."""
    checks: list[tuple[Kind, Callable[[], str | None]]] = [
        (Kind.BOUNCE, lambda: _bounce(mail)),
        (Kind.AUTO, lambda: _header_says_auto(mail)),
        (Kind.BULK, lambda: _bulk(mail)),
        (Kind.SPAM, lambda: _spam(mail, signals, document)),
    ]
    for kind, check in checks:
        if why := check():
            return kind, why
    if signals.own_mail:
        return Kind.OTHER, "sent from the agency's own address"
    if signals.case_ref:
        return Kind.REPLY, signals.case_why
    if document is not None and credible(document):
        return Kind.DOCUMENT, f"document header Số: {document.number or ''}/{document.symbol} " \
                              f"in {document.source}"
    text = fold(f"{mail.subject}\n{mail.body}")
    words = [w for w in _DOSSIER_WORDS if w in text]
    if words and mail.attachments:
        return Kind.DOSSIER, f"dossier words ({', '.join(words[:3])}) with " \
                             f"{len(mail.attachments)} attachment(s)"
    return Kind.OTHER, "no document header and no dossier with attachments"
