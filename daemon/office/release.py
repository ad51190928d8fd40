"""The attachments of a stored mail, for the clerk: list them, save one to examine it with
other tools, and release one that vanthu withheld from the forward (active content, a
path-traversal name, a bomb…) once the clerk has checked it and vouches for it.

The mail is read again from the store in a worker process with the daemon's time and memory
limits: the clerk looks at exactly the mails built to hurt a parser, and such a mail costs that
worker, never the command. A release goes only to the people the mail was forwarded to (the
mail's forward and assignment emails in the outbox), never for a confidential document (only a
notice of it is ever emailed), and at most once: its Message-ID is derived from the mail and
the attachment's sha256, and the outbox holds each Message-ID once. That outbox row, whose text
names the clerk and the time, is the durable record of the release.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from email import policy as email_policy
from email.parser import BytesHeaderParser
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, select

from daemon.config import Config
from daemon.db import messages, outbox, outbox_bodies, reading, register_entries
from daemon.errors import EmailRefused, VanthuError
from daemon.intake.store import MailStore
from daemon.intake.workers import ReadPool
from daemon.models import Attachment
from daemon.outbound import compose
from daemon.outbound.outbox import enqueue
from daemon.outbound.recipients import Allowed, Purpose
from daemon.textnorm import header_safe, nfc, strip_accents
from daemon.understand import Reading

log = logging.getLogger("vanthu.release")

# The emails that carried the mail's content to people: the addressees of a release.
FORWARDING = (Purpose.FORWARD.value, Purpose.ASSIGN.value)
ACTOR_MAX = 100  # characters of the clerk's name kept in the email


class Refused(VanthuError):
    """Why a command on a mail's attachments cannot be done, for the clerk in Vietnamese
    (`vi`) and in English (`en`, also the exception's text)."""

    def __init__(self, vi: str, en: str) -> None:
        super().__init__(en)
        self.vi = vi
        self.en = en


@dataclass(frozen=True)
class Forward:
    """One email that carried the mail to people: its Message-ID, subject and recipients."""

    header_id: str
    subject: str
    recipients: tuple[str, ...]


@dataclass(frozen=True)
class StoredMail:
    """What the clerk's commands need of a `messages` row and what it caused."""

    pk: int
    sha256: str
    subject: str
    sender: str
    context: compose.Context  # received at, and the register entry if any
    confidential: bool
    forwards: tuple[Forward, ...]
    released: dict[str, datetime]  # Message-ID of each release already queued -> when

    @property
    def recipients(self) -> tuple[str, ...]:
        """Everyone the mail was forwarded to, in the order first written to."""
        return tuple(dict.fromkeys(a for f in self.forwards for a in f.recipients))

    def released_at(self, cfg: Config, item: Attachment) -> datetime | None:
        return self.released.get(compose.release_id(cfg, self.sha256, item.sha256))


@dataclass(frozen=True)
class Released:
    """A release queued now (`again` False) or found already queued at `at` (`again` True)."""

    item: Attachment
    index: int
    to: tuple[str, ...]
    at: datetime
    again: bool


def find(conn: Connection, pk: int) -> StoredMail:
    """The stored mail with id `pk`, with its forwards and releases; Refused if there is none."""
    row = conn.execute(select(messages.c.sha256, messages.c.subject, messages.c.sender,
                              messages.c.stored_at, messages.c.received_at,
                              messages.c.understanding)
                       .where(messages.c.id == pk)).first()
    if row is None:
        raise Refused(f"không có thư số {pk}.", f"no stored mail with id {pk}.")
    entry = conn.execute(select(register_entries.c.book, register_entries.c.number,
                                register_entries.c.year)
                         .where(register_entries.c.message_id == pk)).first()
    context = compose.Context(sha256=row.sha256, received_at=row.received_at or row.stored_at,
                              stored_at=row.stored_at,
                              book=entry.book if entry else None,
                              number=entry.number if entry else None,
                              year=entry.year if entry else None)
    emails = conn.execute(select(outbox.c.action, outbox.c.header_message_id,
                                 outbox.c.recipients, outbox_bodies.c.raw, outbox.c.created_at)
                          .join_from(outbox, outbox_bodies, isouter=True)
                          .where(outbox.c.message_id == pk).order_by(outbox.c.id)).all()
    forwards = tuple(Forward(e.header_message_id, _subject(e.raw or b""), tuple(e.recipients))
                     for e in emails if e.action in FORWARDING)
    notified = any(e.action == Purpose.NOTIFY.value for e in emails)
    confidential = notified or (entry is not None and entry.book == "confidential") \
        or _secret(row.understanding)
    released = {e.header_message_id: e.created_at for e in emails
                if e.action == Purpose.RELEASE.value}
    return StoredMail(pk, row.sha256, row.subject, row.sender, context, confidential,
                      forwards, released)


def _subject(raw: bytes) -> str:
    """The decoded Subject of an email vanthu queued."""
    return str(BytesHeaderParser(policy=email_policy.default).parsebytes(raw)["Subject"] or "")


def _secret(understanding: Any) -> bool:
    """Whether the stored understanding found a confidentiality mark on the document."""
    document = (understanding or {}).get("document") if isinstance(understanding, dict) else None
    return isinstance(document, dict) and bool(document.get("confidentiality"))


def load(engine: Engine, pk: int) -> StoredMail:
    with reading(engine) as conn:
        return find(conn, pk)


def attachments(cfg: Config, mail: StoredMail) -> tuple[Attachment, ...]:
    """The mail's attachments, read again from the store (see `read_again`)."""
    return read_again(cfg, mail).mail.attachments


def read_again(cfg: Config, mail: StoredMail) -> Reading:
    """The mail read again from the store in one worker process (the daemon's `[limits]`:
    parse_seconds, worker_memory_mb); Refused when it cannot be read."""
    try:
        raw = MailStore(cfg.storage.data_dir).read(mail.sha256)
    except OSError as err:
        raise Refused(f"không đọc được bản gốc của thư {mail.pk} trong kho: "
                      f"{err.strerror or err}.",
                      f"the stored copy of mail {mail.pk} cannot be read: "
                      f"{err.strerror or err}.") from err
    pool = ReadPool(replace(cfg.limits, workers=1))
    try:
        [result] = pool.read_all([raw])
    finally:
        pool.close()
    if not isinstance(result, Reading):
        why = str(result) if result is not None else "not read"
        raise Refused(f"không đọc được thư {mail.pk}: {why}.",
                      f"mail {mail.pk} cannot be read: {why}.")
    return result


def pick(found: Sequence[Attachment], index: int, pk: int) -> Attachment:
    """Attachment number `index` (from 1, as listed); Refused when there is no such one."""
    if not 1 <= index <= len(found):
        raise Refused(f"thư {pk} không có tệp đính kèm số {index} (thư có {len(found)} tệp).",
                      f"mail {pk} has no attachment {index} (it has {len(found)}).")
    return found[index - 1]


# What a saved file's name keeps of the attachment's name: ASCII letters, digits, . _ -
_NOT_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_EXTENSION = re.compile(r"\.[A-Za-z0-9]{1,10}")


def saved_name(pk: int, index: int, name: str) -> str:
    """A file name for attachment `index` of mail `pk`: `thu<pk>-tep<index>-<name>`, where
    <name> is the attachment's name without diacritics, reduced to ASCII letters, digits and
    `._-`, short, its extension kept. One path component, never hidden, never from the mail
    as it is."""
    slug = _NOT_SAFE.sub("_", strip_accents(nfc(name))).strip("._-")
    stem, dot, extension = slug.rpartition(".")
    if dot and stem and _EXTENSION.fullmatch(dot + extension):
        slug = f"{stem[:70].rstrip('._-')}.{extension}"
    else:
        slug = slug[:80].rstrip("._-")
    return f"thu{pk}-tep{index}-{slug or 'tep'}"


def save(item: Attachment, *, pk: int, index: int, directory: Path) -> Path:
    """Write the attachment's bytes to a new file in `directory`, readable by its owner only
    (0600); never over an existing file or through a symbolic link. Refused when `directory`
    is not a folder or the file exists; any other trouble of the disk raises OSError."""
    if not directory.is_dir():
        raise Refused(f"{directory} không phải là thư mục.", f"{directory} is not a folder.")
    target = directory / saved_name(pk, index, item.name)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(target, flags, 0o600)
    except FileExistsError as err:
        raise Refused(f"đã có tệp {target}; không ghi đè. Xóa hoặc chọn thư mục khác (--to).",
                      f"{target} already exists; not overwritten.") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask allowed
            handle.write(item.payload)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError:
        target.unlink(missing_ok=True)  # no half-written file left behind
        raise
    return target


def _check_releasable(mail: StoredMail) -> None:
    """Refused when the mail's attachments may not be sent on at all."""
    if mail.confidential:
        raise Refused(f"thư {mail.pk} là văn bản mật: văn bản mật không bao giờ được gửi qua thư "
                      "điện tử, chỉ có thông báo; đề nghị nhận tại Văn thư.",
                      f"mail {mail.pk} is a confidential document: it never travels by email "
                      "(only a notice was sent).")
    if not mail.recipients:
        raise Refused(f"thư {mail.pk} chưa được chuyển tiếp cho ai: không có người nhận để "
                      "chuyển bổ sung tệp.",
                      f"mail {mail.pk} was not forwarded to anyone: there is no one to send "
                      "the attachment to.")


def actor_name(actor: str) -> str:
    """The clerk's name as it goes into the email: one line, NFC, at most ACTOR_MAX
    characters; Refused when nothing is left."""
    name = header_safe(nfc(actor), ACTOR_MAX)
    if not name:
        raise Refused("cần tên người cho phép chuyển (--actor).",
                      "--actor must name who vouches for the file.")
    return name


def release(engine: Engine, cfg: Config, allowed: Allowed, *, pk: int, index: int, actor: str,
            now: datetime) -> Released:
    """Queue the withheld attachment `index` of mail `pk` to everyone the mail was forwarded
    to, in an email naming `actor` and the time; once only. Refused (nothing queued) when the
    mail is confidential or was forwarded to no one, there is no such attachment, it was not
    withheld, or the recipient policy refuses a recipient."""
    who = actor_name(actor)
    mail = load(engine, pk)
    _check_releasable(mail)
    item = pick(attachments(cfg, mail), index, pk)
    if not item.withheld:
        raise Refused(f"tệp {index} ({item.name}) không bị giữ lại, đã được chuyển cùng văn bản: "
                      "không có gì để chuyển bổ sung.",
                      f"attachment {index} ({item.name}) was not withheld: nothing to release.")
    first = mail.forwards[0]
    try:
        email = compose.release(cfg, mail.context, item=item, to=mail.recipients,
                                subject=first.subject, in_reply_to=first.header_id, actor=who,
                                released_at=now)
        header_id = str(email["Message-ID"])
        with engine.begin() as conn:
            # BEGIN IMMEDIATE: two clerks releasing at once queue it once.
            before = conn.scalar(select(outbox.c.created_at)
                                 .where(outbox.c.header_message_id == header_id))
            if before is not None:
                return Released(item, index, mail.recipients, before, again=True)
            enqueue(conn, cfg, email=email, purpose=Purpose.RELEASE, recipients=mail.recipients,
                    allowed=allowed, message_pk=pk, now=now)
    except EmailRefused as err:  # a recipient the policy refuses now, or an unsendable email
        raise Refused(f"không gửi được, không có gì thay đổi: {err}",
                      f"cannot be sent, nothing changed: {err}") from err
    log.info("attachment.released", extra={
        "mail": pk, "attachment": index, "sha256": item.sha256, "actor": who,
        "to": list(mail.recipients), "message_id": header_id})
    return Released(item, index, mail.recipients, now, again=False)
