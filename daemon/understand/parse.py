"""The one adapter around mail-parser: raw bytes in, a typed `ParsedMail` out, all text NFC.

mail-parser's releases churn; nothing else in vanthu imports it. Addresses never come from its
decoded headers: sender, To, Cc and Reply-To are the strict parse of the raw header bytes
(`identity`), and every decoded header value is one safe line (`header_safe`). Forwarded mails
(message/rfc822 parts) are read in turn, once each, and their text and attachments join the
outer mail's, so a document forwarded by a colleague is read like one sent directly. Nothing
deeper than `[limits] max_depth` levels is read: each multipart and each forwarded mail is one
level, and what lies below the limit is named as a defect.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from typing import Any, ClassVar

import mailparser

from daemon.config import LimitsConfig
from daemon.errors import BadMessage
from daemon.models import Address, Attachment, ParsedMail
from daemon.textnorm import decode_words, header_safe, nfc, visible
from daemon.understand import attachments as attachment_text
from daemon.understand import legacy, mime
from daemon.understand.identity import MAX_VALUE, RawHeaders, addresses, identity, raw_headers
from daemon.understand.lookalike import MAX_LINKS
from daemon.understand.lookalike import links as html_links

# mail-parser logs every part type it does not know (e.g. text/rfc822-headers) at ERROR.
logging.getLogger("mailparser").setLevel(logging.CRITICAL)


def _decode_header(value: str) -> str:
    """A header value with its encoded words decoded (linear: `decode_words`), NFC."""
    return nfc(decode_words(value))


class _TextOfHtml:
    """HTML to text: drop scripts and styles, keep line structure.

    Linear in the markup however it is broken. A regex that looks for the end of a script
    from each `<script` (or for the `>` of a tag from each `<`) reads to the end of the text
    when there is none, once per opening: 50,000 unclosed `<script` cost minutes. So the
    end of an element is looked for once per opening and, when missing, never again for
    that element; tags are looked for only up to the last `>`, where each `<` is a tag.
    """

    _OPEN = re.compile(r"<(script|style|head)\b", re.I)
    _CLOSE: ClassVar[dict[str, re.Pattern[str]]] = {
        name: re.compile(rf"</{name}\s*+>", re.I) for name in ("script", "style", "head")}
    _BREAK = re.compile(r"<\s*(br|/p|/div|/tr|/li|/h\d|p|div|tr|li|table)\b[^>]*>", re.I)
    _TAG = re.compile(r"<[^>]+>")

    @classmethod
    def _drop(cls, markup: str) -> str:
        """Each script, style and head element, from its opening to the first closing tag
        of its name, becomes one space; an opening never closed stays."""
        kept: list[str] = []
        done = 0  # markup before this is in `kept`
        unclosed: set[str] = set()  # no closing tag of these names after the last look
        at = 0
        while opening := cls._OPEN.search(markup, at):
            name = opening.group(1).lower()
            closing = None if name in unclosed else cls._CLOSE[name].search(markup,
                                                                             opening.end())
            if closing is None:
                unclosed.add(name)
                at = opening.end()
                continue
            kept += [markup[done:opening.start()], " "]
            done = at = closing.end()
        kept.append(markup[done:])
        return "".join(kept)

    @staticmethod
    def _tags(pattern: re.Pattern[str], replacement: str, text: str) -> str:
        """Replace the tags `pattern` finds, looking only before the last `>`."""
        end = text.rfind(">") + 1
        return pattern.sub(replacement, text[:end]) + text[end:]

    @classmethod
    def convert(cls, markup: str) -> str:
        text = cls._drop(markup)
        text = cls._tags(cls._BREAK, "\n", text)
        text = cls._tags(cls._TAG, " ", text)
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


_MESSAGE_ID = re.compile(r"<[^<>\s]{1,250}>")


def _ids(value: str) -> list[str]:
    return _MESSAGE_ID.findall(value[:1000])[:5]


def _header_ids(part: Message) -> list[str]:
    """The Message-ID in a text/rfc822-headers part (what a bounce quotes of the mail)."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return []
    head = payload[:64 * 1024].decode("ascii", "replace")
    found = re.search(r"(?im)^message-id:[ \t]*([^\r\n]{1,1000})", head)
    return _ids(found.group(1)) if found else []


@dataclass
class _Tree:
    """What one walk of a whole mail found: how many parts and their types, the forwarded
    mails taken out to be read on their own (name and message, by the id of the mail they
    were forwarded in), and whether anything lies too deep to read."""

    parts: int = 0
    content_types: list[str] = field(default_factory=list)
    forwarded: dict[int, list[tuple[str, Message]]] = field(default_factory=dict)
    defects: list[str] = field(default_factory=list)
    carried_ids: list[str] = field(default_factory=list)
    carried_subjects: list[str] = field(default_factory=list)


def _walk(message: Message, limits: LimitsConfig) -> _Tree:
    """Walk the whole MIME tree in order and without recursion, the root at level 0. A part's
    children are one level down, and so is the mail inside a message/rfc822 part; that mail is
    detached, to be read by itself (mail-parser would also read it into the outer mail).
    Children that would lie below `max_depth` are cut off and named as a defect."""
    tree = _Tree()
    stack: list[tuple[Message, int, Message]] = [(message, 0, message)]  # part, level, its mail
    cut = False
    while stack:
        part, level, mail = stack.pop()
        tree.parts += 1
        if len(tree.content_types) < limits.max_parts:
            tree.content_types.append(part.get_content_type())
        if part.get_content_type() == "text/rfc822-headers" and len(tree.carried_ids) < 50:
            tree.carried_ids.extend(_header_ids(part))
        payload = part.get_payload() if part.is_multipart() else None
        children = [c for c in payload if isinstance(c, Message)] if isinstance(
            payload, list) else []
        if not children:
            continue
        if level >= limits.max_depth:
            part.set_payload([])
            cut = True
        elif part.get_content_type() == "message/rfc822" and part is not message:
            inner = children[0]
            if len(tree.carried_ids) < 50:
                tree.carried_ids.extend(_ids(str(inner.get("message-id") or "")))
                tree.carried_subjects.append(
                    header_safe(_decode_header(str(inner.get("subject") or "")), 500))
            name, _ = safe_name(_decode_header(str(part.get_filename() or "")))
            tree.forwarded.setdefault(id(mail), []).append((name, inner))
            part.set_payload([])
            stack.append((inner, level + 1, inner))
        else:
            stack.extend((child, level + 1, mail) for child in reversed(children))
    if cut:
        tree.defects.append(f"MIME parts or forwarded mails nested deeper than "
                            f"{limits.max_depth} levels (limits.max_depth); not read")
    return tree


@dataclass(frozen=True)
class _Contents:
    """The body, attachments and defects of one mail (or of a mail forwarded inside one)."""

    body: str
    attachments: list[Attachment]
    defects: list[str]


def _contents(message: Message, limits: LimitsConfig, tree: _Tree) -> tuple[Any, _Contents]:
    """Read one (outer or forwarded) mail of the walked `tree`: its text, its attachments and
    those of the mails forwarded in it. Returns mail-parser's view too, for the headers."""
    try:
        mail = mailparser.MailParser(message)
    except RecursionError as err:
        raise BadMessage("MIME structure nested too deeply to parse") from err
    except Exception as err:  # bulkhead: mail-parser raises many unrelated types
        raise BadMessage(f"unparseable mail: {type(err).__name__}: {err}") from err

    defects: list[str] = []
    for category in sorted(getattr(mail, "defects_categories", ()) or ()):
        defects.append(f"MIME defect: {category}")

    texts = [nfc(t) for t in mail.text_plain[: limits.max_parts]]
    if not texts:
        texts = [_TextOfHtml.convert(nfc(h)) for h in mail.text_html[: limits.max_parts]]
    body, legacy_font = legacy.to_unicode("\n\n".join(texts))
    if legacy_font:
        defects.append(f"body typed in the legacy {legacy_font.upper()} encoding; converted")

    found: list[Attachment] = []
    for part in mail.attachments[: limits.max_parts]:
        content_type = str(part.get("mail_content_type") or "application/octet-stream").lower()
        if content_type == "message/rfc822":
            continue  # a forwarded mail: read below, from its own MIME tree
        raw_name = str(part.get("filename") or "")
        name, defect = safe_name(raw_name)
        if defect:
            defects.append(defect)
        payload, error = _payload(part)
        if error:
            defects.append(error)
        if name.startswith("<") and name.endswith(">") and content_type.startswith("image/"):
            name = raw_name = f"image{len(found) + 1}.{content_type.split('/')[-1]}"  # inline
        if error or len(payload) > limits.max_attachment_bytes:
            why = ("nội dung mã hóa base64 hỏng, không kiểm tra được" if error else
                   f"tệp lớn hơn giới hạn kiểm tra ({limits.max_attachment_bytes} byte)")
            reading = attachment_text.AttachmentReading(
                text="", unread=(f"chưa đọc: {why}",),
                defects=(f"attachment {name!r} withheld: {why}",), withheld=why)
        else:
            reading = attachment_text.read(name, content_type, payload, limits, raw_name)
        found.append(Attachment(
            name=name, content_type=content_type, size=len(payload),
            sha256=hashlib.sha256(payload).hexdigest(), payload=payload, text=reading.text,
            defects=reading.defects + ((defect,) if defect else ()),
            withheld=reading.withheld, pieces=reading.pieces, unread=reading.unread,
            package=reading.package, scanned=reading.scanned, carried=reading.carried,
        ))

    for name, inner in tree.forwarded.get(id(message), []):
        try:
            _, forwarded = _contents(inner, limits, tree)
        except BadMessage as err:
            defects.append(f"forwarded mail {name!r} unreadable: {err}")
            continue
        body += "\n\n" + forwarded.body
        found.extend(forwarded.attachments)
        defects.extend(forwarded.defects)
    return mail, _Contents(body, found, defects)


def parse(raw: bytes, limits: LimitsConfig) -> ParsedMail:
    """Parse `raw` into a ParsedMail; raise BadMessage when it cannot be read at all."""
    try:
        message = mime.message_from_bytes(raw)
        tree = _walk(message, limits)
    except RecursionError as err:
        raise BadMessage("MIME structure nested too deeply to parse") from err
    except Exception as err:  # bulkhead: the email package raises many types on hostile bytes
        raise BadMessage(f"unparseable mail: {type(err).__name__}: {err}") from err
    mail, contents = _contents(message, limits, tree)

    defects: list[str] = []
    if tree.parts > limits.max_parts:
        defects.append(f"{tree.parts} MIME parts (limit {limits.max_parts}); extra parts ignored")
    defects += tree.defects + contents.defects

    # Decoded values are for reading (auto-submitted, list headers, threading), never for
    # addresses; each is one line without controls, so none can reach a stored value or an
    # outgoing header with a line break in it.
    collected: dict[str, list[str]] = {}
    for name, value in message.items():  # one pass: get_all per name is quadratic
        collected.setdefault(name.lower(), []).append(
            header_safe(_decode_header(str(value)), MAX_VALUE))
    headers: dict[str, tuple[str, ...]] = {
        name: tuple(values) for name, values in collected.items()}

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
        body=contents.body,
        attachments=tuple(contents.attachments),
        content_types=tuple(tree.content_types),
        defects=tuple(defects),
        sender_problems=sender.problems,
        carried_ids=tuple(dict.fromkeys(tree.carried_ids)),
        carried_subjects=tuple(s for s in dict.fromkeys(tree.carried_subjects) if s),
        links=tuple(link for h in mail.text_html[: limits.max_parts]
                    for link in html_links(nfc(h)))[:MAX_LINKS],
    )
