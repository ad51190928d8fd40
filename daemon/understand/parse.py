"""The one adapter around mail-parser: raw bytes in, a typed `ParsedMail` out, all text NFC.

mail-parser's releases churn; nothing else in vanthu imports it. Addresses never come from its
decoded headers: sender, To, Cc and Reply-To are the strict parse of the raw header bytes
(`identity`), and every decoded header value is one safe line (`header_safe`). Forwarded mails
(message/rfc822 parts) are parsed in turn, to a bounded depth, and their text and attachments
join the outer mail's, so a document forwarded by a colleague is read like one sent directly.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import logging
import re
from datetime import UTC, datetime
from email.header import decode_header, make_header
from typing import Any

import mailparser

from daemon.config import LimitsConfig
from daemon.errors import BadMessage
from daemon.models import Address, Attachment, ParsedMail
from daemon.textnorm import header_safe, nfc, visible
from daemon.understand import attachments as attachment_text
from daemon.understand import legacy
from daemon.understand.identity import MAX_VALUE, RawHeaders, addresses, identity, raw_headers

# mail-parser logs every part type it does not know (e.g. text/rfc822-headers) at ERROR.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)


def _decode_header(value: str) -> str:
    try:
        return nfc(str(make_header(decode_header(value))))
    except (UnicodeError, LookupError, ValueError, binascii.Error):
        return nfc(value)


class _TextOfHtml:
    """HTML to text: drop scripts and styles, keep line structure."""

    _DROP = re.compile(r"<(script|style|head)\b.*?</\1\s*>", re.S | re.I)
    _BREAK = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d|p|div|tr|li|table)\b[^>]*>", re.I)
    _TAG = re.compile(r"<[^>]+>")

    @classmethod
    def convert(cls, markup: str) -> str:
        text = cls._DROP.sub(" ", markup)
        text = cls._BREAK.sub("\n", text)
        text = cls._TAG.sub(" ", text)
        text = html.unescape(text)
        lines = (re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines())
        return "\n".join(line for line in lines if line)


def safe_name(name: str) -> tuple[str, str | None]:
    """A file name fit to show (never used as a path): the last component, no controls.

    Returns the name and a defect when the original tried to climb directories.
    """
    decoded = visible(nfc(name))  # no line breaks, controls or direction overrides
    defect = None
    if re.search(r"(^|[\\/])\.\.([\\/]|$)", decoded) or decoded.startswith(("/", "\\")):
        defect = f"attachment name tries path traversal: {header_safe(decoded, 120)!r}"
    base = re.split(r"[\\/]", decoded)[-1]
    base = base.strip().lstrip(".")
    return (base[:200] or "attachment"), defect


def _payload(part: dict[str, Any]) -> tuple[bytes, str | None]:
    raw = part.get("payload") or ""
    if not part.get("binary"):
        return raw.encode("utf-8", "surrogateescape"), None
    try:
        return base64.b64decode(raw, validate=False), None
    except (binascii.Error, ValueError) as err:
        return b"", f"attachment {part.get('filename')!r} has invalid base64: {err}"


def parse(raw: bytes, limits: LimitsConfig, depth: int = 0) -> ParsedMail:
    """Parse `raw` into a ParsedMail; raise BadMessage when it cannot be read at all."""
    try:
        mail = mailparser.parse_from_bytes(raw)
        message = mail.message
        parts = list(message.walk())
    except RecursionError as err:
        raise BadMessage("MIME structure nested too deeply to parse") from err
    except Exception as err:  # bulkhead: mail-parser raises many unrelated types
        raise BadMessage(f"unparseable mail: {type(err).__name__}: {err}") from err

    defects: list[str] = []
    if len(parts) > limits.max_parts:
        defects.append(f"{len(parts)} MIME parts (limit {limits.max_parts}); extra parts ignored")
    for category in sorted(getattr(mail, "defects_categories", ()) or ()):
        defects.append(f"MIME defect: {category}")

    # Decoded values are for reading (auto-submitted, list headers, threading), never for
    # addresses; each is one line without controls, so none can reach a stored value or an
    # outgoing header with a line break in it.
    headers: dict[str, tuple[str, ...]] = {}
    for name in {k.lower() for k in message}:
        headers[name] = tuple(header_safe(_decode_header(str(v)), MAX_VALUE)
                              for v in message.get_all(name, []))

    texts = [nfc(t) for t in mail.text_plain[: limits.max_parts]]
    if not texts:
        texts = [_TextOfHtml.convert(nfc(h)) for h in mail.text_html[: limits.max_parts]]
    body, legacy_font = legacy.to_unicode("\n\n".join(texts))
    if legacy_font:
        defects.append(f"body typed in the legacy {legacy_font.upper()} encoding; converted")

    found: list[Attachment] = []
    for part in mail.attachments[: limits.max_parts]:
        content_type = str(part.get("mail_content_type") or "application/octet-stream").lower()
        name, defect = safe_name(str(part.get("filename") or ""))
        if defect:
            defects.append(defect)
        payload, error = _payload(part)
        if error:
            defects.append(error)
        if content_type == "message/rfc822" and depth < 3:
            try:
                inner = parse(payload, limits, depth + 1)
            except BadMessage as err:
                defects.append(f"forwarded mail {name!r} unreadable: {err}")
            else:
                body += "\n\n" + inner.body
                found.extend(inner.attachments)
                defects.extend(inner.defects)
            continue
        if name.startswith("<") and name.endswith(">") and content_type.startswith("image/"):
            name = f"image{len(found) + 1}.{content_type.split('/')[-1]}"  # inline, unnamed
        if len(payload) > limits.max_attachment_bytes:
            defects.append(f"attachment {name!r} larger than the limit; not read")
            text, more = "", list[str]()
        else:
            text, more = attachment_text.read(name, content_type, payload, limits)
        all_defects = tuple(more) + ((defect,) if defect else ())
        found.append(Attachment(
            name=name, content_type=content_type, size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(), payload=payload, text=text,
            defects=all_defects,
            withheld=next((d for d in all_defects if attachment_text.is_unsafe(d)), None),
        ))

    date = mail.date if isinstance(mail.date, datetime) else None
    if date is not None and date.tzinfo is None:
        date = date.replace(tzinfo=UTC)
    raw_found: RawHeaders = raw_headers(raw)
    sender = identity(raw_found)
    message_id = (message.get("message-id") or "").strip()
    return ParsedMail(
        message_id=header_safe(message_id, 500),
        # A subject carrying CR/LF (header injection) is folded to one line here, once.
        subject=header_safe(_decode_header(str(message.get("subject") or "")), 500),
        sender=Address(sender.name, sender.address),
        to=addresses(raw_found, "to") + addresses(raw_found, "cc"),
        reply_to=addresses(raw_found, "reply-to"),
        date=date,
        headers=headers,
        body=body,
        attachments=tuple(found),
        content_types=tuple(p.get_content_type() for p in parts[: limits.max_parts]),
        defects=tuple(defects),
        sender_problems=sender.problems,
    )
