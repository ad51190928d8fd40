"""The outbox: the one writer of the `outbox` table, and the last gate of every email vanthu
sends. `enqueue` checks the final headers and asks the recipient policy; an email it refuses
is never queued (the caller decides what that means). The row is inserted in the caller's
transaction, so it commits with what caused it or not at all: a crash inside leaves nothing.
"""

from __future__ import annotations

import io
import logging
import re
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email import message_from_bytes
from email import policy as email_policy
from email.generator import BytesGenerator
from email.message import EmailMessage, Message
from email.parser import BytesHeaderParser
from typing import Any

from sqlalchemy import Connection, bindparam, func, insert, select, update

from daemon.config import Config, StatusConfig
from daemon.db import messages, new_id, outbox, outbox_bodies, utcnow
from daemon.errors import EmailRefused, RecipientRefused
from daemon.models import OutboxState, State
from daemon.outbound import headers
from daemon.outbound.compose import MSG_ID
from daemon.outbound.recipients import (
    Allowed,
    Answering,
    Purpose,
    domain_key,
    refusals,
    reply_key,
    unsendable,
)

log = logging.getLogger("vanthu.outbox")

# Exactly one of each; Auto-Submitted at most once (RFC 3834 readers take the first).
ONCE = ("From", "To", "Subject", "Date", "Message-ID", "X-Vanthu-Action")
AT_MOST_ONCE = ("Auto-Submitted", "Reply-To", "In-Reply-To", "References")
# Never stored in a row: the same bytes go to every recipient.
NEVER = ("Bcc", "Resent-Bcc", "Cc")

# Headers set raw (RFC 2047-encoded by compose) go out exactly as made: refolding one would
# run it through the modern parser and folder, which mangle encoded display names.
_OUTPUT = email_policy.SMTP.clone(refold_source="none")


class _Writer(BytesGenerator):
    """The standard generator (`Message.as_bytes`), writing each body's text at once with its
    line ends made CRLF. The standard one splits the text and writes it line by line: for
    the base64 lines of an attachment, most of the time of writing a forward. The same bytes
    (tests/test_outbox_check.py compares them)."""

    def _write_lines(self, lines: str) -> None:
        if not lines:
            return
        ending: str = self._NL  # type: ignore[attr-defined]
        # Without a CR (the usual text, every base64 body) a line ends with LF alone.
        self.write(lines.replace("\n", ending) if "\r" not in lines
                   else _LINE_ENDS.sub(ending, lines))


_LINE_ENDS = re.compile(r"\r\n|\r|\n")  # the standard generator's own (email.generator.NLCRE)


# This process's boundaries: the n-th multipart of every email it writes gets
# f"{_BOUNDARY}{n}_". A boundary the parser has not met costs it a regex compiled for that
# boundary alone (a quarter of a millisecond, for each multipart of each email); boundaries
# it has met are compiled once. They are secret until the first email goes out, so `_bytes`
# proves each one absent from the contents it separates, and draws fresh ones when not.
_BOUNDARY = f"=_{secrets.token_hex(16)}_"


def _bytes(email: EmailMessage) -> bytes:
    try:
        # (A forwarded message/rfc822 part "is multipart" too, but has no boundary.)
        unset = [part for part in email.walk()
                 if part.get_content_maintype() == "multipart" and part.get_boundary() is None]
        # The standard generator draws a boundary, then searches every subpart's text for
        # it: a quarter of the time of writing an email with a large attachment.
        for n, part in enumerate(unset):
            part.set_boundary(f"{_BOUNDARY}{n}_")
        raw = _flattened(email)
        if all(_delimits_alone(raw, part) for part in unset):
            return raw
        # Some content holds one of this process's boundaries (whoever read an email it
        # sent may write them): 128 fresh secret random bits, which cannot be written into
        # a mail or a template on purpose.
        for part in unset:
            part.set_boundary(f"=_{secrets.token_hex(16)}")
        return _flattened(email)
    except Exception as err:  # the generator raises many types on bad content: one refusal
        raise EmailRefused(f"cannot be written as bytes: {type(err).__name__}: {err}") from err


def _flattened(email: EmailMessage) -> bytes:
    out = io.BytesIO()
    _Writer(out, mangle_from_=False, policy=_OUTPUT).flatten(email)
    return out.getvalue()


def _delimits_alone(raw: bytes, part: Message) -> bool:
    """Whether the boundary of the multipart `part` is found in `raw` only where it
    delimits the part's subparts: before each one and after the last."""
    boundary = (part.get_boundary() or "").encode("ascii")
    return raw.count(b"--" + boundary) == len(part.get_payload()) + 1


def check(cfg: Config, email: EmailMessage, purpose: Purpose,
          recipients: Sequence[str]) -> bytes:
    """The bytes of `email` after checking them as a receiver would parse them; raise
    EmailRefused naming the first problem.

    Headers ASCII, lines at most 998 octets, no defect and no CR, LF or NUL in any decoded
    value of any part; one From (our address), To (exactly the recipients), Subject, Date,
    Message-ID and X-Vanthu-Action (the purpose); Auto-Submitted at most once; no Bcc or Cc.
    Whatever the email holds, nothing but EmailRefused is raised.
    """
    raw = _bytes(email)
    with _only_refusals():
        _head(raw)
        parsed = message_from_bytes(skeleton(raw), policy=headers.READER)
        for part in parsed.walk():
            if part.defects:
                raise EmailRefused(f"malformed MIME part: {part.defects[0]!r}")
            for name, value in part.items():
                if any(c in str(value) for c in "\r\n\x00"):
                    raise EmailRefused(f"header {name} holds a line break or NUL")
                if defects := getattr(value, "defects", ()):
                    raise EmailRefused(f"header {name} is malformed: {defects[0]}")
        _headers_say(cfg, parsed, purpose, recipients)
        if not MSG_ID.fullmatch(str(parsed["Message-ID"]).strip()):
            raise EmailRefused(f"not a Message-ID: {parsed['Message-ID']}")
    return raw


# Two or more full lines of base64 in a row (76 characters, as the standard encoder writes
# them), from the start of a line.
_BASE64_RUN = re.compile(rb"^([A-Za-z0-9+/]{76}\r\n)(?:[A-Za-z0-9+/]{76}\r\n)+", re.M)


def skeleton(raw: bytes) -> bytes:
    """`raw` with each run of full base64 lines cut to its first line: what `check` parses.
    A line of base64 characters alone is never a header (no colon), a folded header's next
    line (no leading space) or a boundary (no "--"), so the parser finds the same parts,
    headers and defects in both; it no longer reads an attachment line by line (most of the
    time of checking a forward). A header section or a text part holding such lines keeps
    one of each run: what is odd about them is still seen."""
    return _BASE64_RUN.sub(rb"\1", raw)


@contextmanager
def _only_refusals() -> Iterator[None]:
    """Whatever the parser raises on hostile bytes is a refusal, with what it said."""
    try:
        yield
    except EmailRefused:
        raise
    except Exception as err:  # the header parser raises many kinds on hostile values
        raise EmailRefused(f"unreadable headers: {type(err).__name__}: {err}") from err


def _head(raw: bytes) -> bytes:
    """The header section of `raw`, when it is ASCII in lines of at most 998 octets, each
    ending with CRLF and holding no other CR or LF, each a field or the folding of one."""
    head = raw.split(b"\r\n\r\n", 1)[0]
    if not head.isascii():
        raise EmailRefused("a header is not ASCII (RFC 2047 encoding missing)")
    lines = head.split(b"\r\n")
    if any(len(line) > 998 for line in lines):
        raise EmailRefused("a header line is longer than 998 octets")
    if any(b"\r" in line or b"\n" in line for line in lines):
        # Receivers split a line there, or not, each its own way.
        raise EmailRefused("a header line holds a bare CR or LF")
    if not all(FIELD.match(line) or (at and line[:1] in (b" ", b"\t"))
               for at, line in enumerate(lines)):
        raise EmailRefused("a header line is neither a field (name: value) nor its folding")
    return head


# A header field's first line: a name of printable ASCII but the colon, then the colon.
FIELD = re.compile(rb"[!-9;-~]+:")


def _headers_say(cfg: Config, parsed: Message, purpose: Purpose,
                 recipients: Sequence[str]) -> None:
    """One From (our address), To (exactly the recipients), Subject, Date, Message-ID and
    X-Vanthu-Action (the purpose); Auto-Submitted and the threading headers at most once; no
    Bcc or Cc."""
    for name in ONCE:
        if len(parsed.get_all(name) or []) != 1:
            raise EmailRefused(f"needs exactly one {name} header, "
                               f"has {len(parsed.get_all(name) or [])}")
    for name in AT_MOST_ONCE:
        if len(parsed.get_all(name) or []) > 1:
            raise EmailRefused(f"has {len(parsed.get_all(name) or [])} {name} headers")
    for name in NEVER:
        if name in parsed:
            raise EmailRefused(f"has a {name} header")
    senders = [a.addr_spec for a in getattr(parsed["From"], "addresses", ())]
    if senders != [cfg.smtp.from_address]:
        raise EmailRefused(f"From must be {cfg.smtp.from_address}, is {senders}")
    to = {a.addr_spec.lower() for a in getattr(parsed["To"], "addresses", ())}
    if to != {r.lower() for r in recipients}:
        raise EmailRefused(f"To {sorted(to)} is not the recipients {sorted(recipients)}")
    if str(parsed["X-Vanthu-Action"]) != purpose.value:
        raise EmailRefused(f"X-Vanthu-Action {parsed['X-Vanthu-Action']} is not {purpose}")


def admit(conn: Connection, cfg: Config, *, purpose: Purpose, recipients: Sequence[str],
          allowed: Allowed, answering: Answering | None = None) -> list[str]:
    """The recipients, once each, when every one is sendable and allowed by the recipient
    policy for `purpose` (`answering`: the mail or case an answer replies to); otherwise
    raise EmailRefused or RecipientRefused saying why."""
    wanted = list(dict.fromkeys(recipients))
    if not wanted:
        raise EmailRefused("an email needs at least one recipient")
    for address, problem in unsendable(wanted):
        raise RecipientRefused(address, problem)
    for address, reason in refusals(conn, cfg, purpose=purpose, recipients=wanted,
                                    allowed=allowed, answering=answering):
        raise RecipientRefused(address, reason)
    return wanted


def enqueue(conn: Connection, cfg: Config, *, email: EmailMessage, purpose: Purpose,
            recipients: Sequence[str], allowed: Allowed, answering: Answering | None = None,
            message_pk: int | None = None, now: datetime | None = None) -> int:
    """Queue `email` for `recipients` in the caller's transaction; return the row's id.

    Every recipient must be sendable and allowed by the recipient policy for `purpose`
    (`answering`: the mail or case an answer replies to); the headers must pass `check`.
    Otherwise nothing is queued and RecipientRefused or EmailRefused says why.
    """
    wanted = admit(conn, cfg, purpose=purpose, recipients=recipients, allowed=allowed,
                   answering=answering)
    raw = check(cfg, email, purpose, wanted)
    return _insert(conn, cfg, header_id=str(email["Message-ID"]).strip(), purpose=purpose,
                   wanted=wanted, answering=answering, message_pk=message_pk, now=now,
                   raw=raw, state=OutboxState.PENDING)


def enqueue_draft(conn: Connection, cfg: Config, *, header_id: str, purpose: Purpose,
                  recipients: Sequence[str], allowed: Allowed, draft: bytes,
                  answering: Answering | None = None, message_pk: int | None = None) -> int:
    """Queue an email whose bytes are not made yet (daemon/outbound/drafts.py), as `enqueue`
    would queue it, in state draft with its makings `draft`; `fill` puts the bytes in. The
    recipient policy decides now: the row counts at once towards the daily reply limits."""
    wanted = admit(conn, cfg, purpose=purpose, recipients=recipients, allowed=allowed,
                   answering=answering)
    if not MSG_ID.fullmatch(header_id):
        raise EmailRefused(f"not a Message-ID: {header_id!r}")
    return _insert(conn, cfg, header_id=header_id, purpose=purpose, wanted=wanted,
                   answering=answering, message_pk=message_pk, now=None, raw=None,
                   state=OutboxState.DRAFT, draft=draft)


def _insert(conn: Connection, cfg: Config, *, header_id: str, purpose: Purpose,
            wanted: list[str], answering: Answering | None, message_pk: int | None,
            now: datetime | None, raw: bytes | None, state: OutboxState,
            draft: bytes | None = None) -> int:
    now = now or utcnow()
    # Counts automatic replies per sender and per domain a day (daemon/outbound/recipients.py).
    key = reply_key(cfg, wanted[0], answering) \
        if purpose is Purpose.ACKNOWLEDGE and answering is not None else None
    row = new_id(conn.execute(insert(outbox), {
        "header_message_id": header_id, "message_id": message_pk, "action": purpose.value,
        "recipients": wanted, "state": state, "draft": draft, "attempts": 0,
        "tries_begun": 0, "ack_key": key, "ack_domain": domain_key(key) if key else None,
        "next_attempt_at": now, "created_at": now}))
    if raw is not None:
        conn.execute(insert(outbox_bodies), {"outbox_id": row, "raw": raw})
    log.info("outbox.queued", extra={"outbox": row, "action": purpose.value,
                                     "message_id": header_id, "state": state.value})
    return row


def check_head(cfg: Config, raw: bytes, purpose: Purpose, recipients: Sequence[str],
               header_id: str) -> None:
    """The checks of `check` on the header section of `raw` alone, and its Message-ID is
    `header_id`: what the daemon proves of bytes composed in a worker process (which ran the
    whole of `check`) before they may go out as the row's. Raises EmailRefused, whatever
    the bytes hold."""
    with _only_refusals():
        parsed = BytesHeaderParser(policy=headers.READER).parsebytes(_head(raw) + b"\r\n\r\n")
        for name, value in parsed.items():
            if any(c in str(value) for c in "\r\n\x00"):
                raise EmailRefused(f"header {name} holds a line break or NUL")
        _headers_say(cfg, parsed, purpose, recipients)
        if str(parsed["Message-ID"]).strip() != header_id:
            raise EmailRefused(f"Message-ID {parsed['Message-ID']} is not the row's {header_id}")


def fill(conn: Connection, cfg: Config, row_id: int, raw: bytes) -> bool:
    """Put the composed bytes `raw` into draft row `row_id` and make it pending (to be sent);
    False when the row is no draft any more (filled already, or settled by hand). Bytes that
    fail `check_head` against the row fail it instead (EmailRefused is logged)."""
    row = conn.execute(_DRAFT, {"row_id": row_id}).first()
    if row is None or row.state != OutboxState.DRAFT:
        return False
    try:
        check_head(cfg, raw, Purpose(row.action), [str(r) for r in row.recipients],
                   row.header_message_id)
    except EmailRefused as err:
        spoil(conn, row_id, f"the composed email failed its check: {err}")
        return False
    conn.execute(insert(outbox_bodies), {"outbox_id": row_id, "raw": raw})
    conn.execute(_ROW, {"row_id": row_id, "draft": None, "state": OutboxState.PENDING,
                        "next_attempt_at": utcnow()})
    return True


def bodies(conn: Connection, row_ids: Sequence[int]) -> dict[int, bytes]:
    """The bytes of the emails of these rows, by row id (a draft has none yet)."""
    if not row_ids:
        return {}
    return {row.outbox_id: bytes(row.raw) for row in conn.execute(
        select(outbox_bodies.c.outbox_id, outbox_bodies.c.raw)
        .where(outbox_bodies.c.outbox_id.in_(list(row_ids))))}


def spoil(conn: Connection, row_id: int, error: str) -> None:
    """A draft that cannot be composed fails, with why (its makings are kept for whoever
    looks), and its mail is settled if nothing else of it is left to send."""
    now = utcnow()
    message_pk = conn.scalar(update(outbox).where(
        outbox.c.id == row_id, outbox.c.state == OutboxState.DRAFT,
    ).values(state=OutboxState.FAILED, last_error=error).returning(outbox.c.message_id))
    log.error("outbox.failed", extra={"outbox": row_id, "error": error})
    settle_message(conn, message_pk, now)


# The states of a row still to be sent.
UNSENT = (OutboxState.DRAFT, OutboxState.PENDING)


# Statements run for every email, built once (their values are given at execute).
_UNSENT_OF_MAIL = select(func.count()).select_from(outbox).where(
    outbox.c.message_id == bindparam("mail_pk"), outbox.c.state.in_(UNSENT))
_MAIL_DONE = update(messages).where(messages.c.id == bindparam("mail_pk"),
                                    messages.c.state == State.ROUTED)
_DRAFT = select(outbox.c.header_message_id, outbox.c.action, outbox.c.recipients,
                outbox.c.state).where(outbox.c.id == bindparam("row_id"))
_ROW = update(outbox).where(outbox.c.id == bindparam("row_id"))


def settle_message(conn: Connection, message_id: int | None, now: datetime) -> None:
    """The mail whose emails are all sent or failed is done."""
    if message_id is None:
        return
    if not conn.scalar(_UNSENT_OF_MAIL, {"mail_pk": message_id}):
        conn.execute(_MAIL_DONE, {"mail_pk": message_id, "state": State.DONE,
                                  "updated_at": now})


@dataclass(frozen=True)
class Health:
    """What `vanthu status` says about the outbox: rows failed (for good, too old, or in doubt),
    rows overdue, recipients refused."""

    failed: list[dict[str, Any]] = field(default_factory=list)  # newest first
    failed_count: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)  # tried, with their last error
    stuck: list[dict[str, Any]] = field(default_factory=list)  # pending past the overdue time
    # Recipients refused for good on rows that others got (sent) or still wait for (pending).
    refused: list[dict[str, Any]] = field(default_factory=list)
    # Failed because tries may have delivered them unconfirmed: someone must check, not resend.
    in_doubt: list[dict[str, Any]] = field(default_factory=list)
    overdue_minutes: float = StatusConfig.outbox_overdue_minutes

    @property
    def problems(self) -> list[str]:
        """Each cause of unhealthiness, in English, for people and for --json."""
        out = []
        if self.failed:
            last = self.failed[0]
            out.append(f"{self.failed_count} outgoing email(s) failed; last: "
                       f"{last['action']} to {', '.join(last['recipients'])}: "
                       f"{last['last_error']}")
        if self.in_doubt:
            out.append(f"{len(self.in_doubt)} failed outgoing email(s) may have been delivered "
                       "(tries without the server's answer): check with the recipients before "
                       "resending: " + ", ".join(r["message_id"] for r in self.in_doubt))
        if self.stuck:
            oldest = self.stuck[0]
            out.append(f"{len(self.stuck)} outgoing email(s) waiting more than "
                       f"{self.overdue_minutes:g} minutes since "
                       f"{oldest['created_at']}; last error: {oldest['last_error']}")
        for row in self.refused:
            out.append(f"recipients refused for {row['action']} {row['message_id']}: "
                       + "; ".join(f"{a}: {why}" for a, why in row["refused"].items()))
        return out

    def as_json(self) -> dict[str, Any]:
        return {"failed": self.failed, "failed_count": self.failed_count,
                "pending": self.pending, "stuck": self.stuck, "refused": self.refused,
                "in_doubt": self.in_doubt}


def health(conn: Connection, now: datetime,
           overdue_minutes: float = StatusConfig.outbox_overdue_minutes,
           limit: int = 20) -> Health:
    """Read the outbox's troubles (at most `limit` rows of each), oldest first. A row pending
    for more than `overdue_minutes` ([status] outbox_overdue_minutes) is overdue, tried or not
    (untried that long, nobody is sending)."""
    begun = func.coalesce(outbox.c.tries_begun, outbox.c.attempts)

    def rows(*where: Any, newest: bool = False) -> list[dict[str, Any]]:
        found = conn.execute(
            select(outbox.c.id, outbox.c.header_message_id, outbox.c.action,
                   outbox.c.recipients, outbox.c.attempts, outbox.c.last_error,
                   outbox.c.created_at, outbox.c.next_attempt_at, outbox.c.refused,
                   outbox.c.delivered, (begun - outbox.c.attempts).label("doubts"))
            .where(*where).order_by(outbox.c.id.desc() if newest else outbox.c.id)
            .limit(limit)).all()
        return [{"id": r.id, "message_id": r.header_message_id, "action": r.action,
                 "recipients": list(r.recipients), "attempts": r.attempts,
                 "last_error": r.last_error, "created_at": r.created_at.isoformat(),
                 "next_attempt_at": r.next_attempt_at.isoformat(),
                 "refused": dict(r.refused or {}), "delivered": list(r.delivered or []),
                 "doubts": int(r.doubts or 0)} for r in found]

    pending = outbox.c.state.in_(UNSENT)
    tried = (outbox.c.attempts >= 1) | outbox.c.last_error.is_not(None) | (begun >= 1)
    failed = outbox.c.state == OutboxState.FAILED
    return Health(
        failed=rows(failed, newest=True),
        failed_count=int(conn.scalar(select(func.count()).select_from(outbox).where(failed))
                         or 0),
        pending=rows(pending, tried),
        stuck=rows(pending, outbox.c.created_at < now - timedelta(minutes=overdue_minutes)),
        refused=rows(outbox.c.state.in_([OutboxState.SENT, OutboxState.PENDING]),
                     outbox.c.refused.is_not(None)),
        in_doubt=rows(failed, begun - outbox.c.attempts >= 1, newest=True),
        overdue_minutes=overdue_minutes)
