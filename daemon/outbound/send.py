"""Drain the outbox over SMTP: every email at least once, at most twice, whatever fails.

SMTP cannot be exactly-once: when the connection dies after the message went out and before
the server's answer, or the daemon dies after the 250 and before the row is written, nobody
knows whether the email arrived. Sending it again is right once (the stable Message-ID lets
receivers drop the copy) and wrong forever. So every SMTP transaction of a row is counted on
the row, durably, before it begins, and two counters tell what is known:

    tries_begun  tries counted: a try is counted in a committed write after the server took
                 the envelope (MAIL FROM, RCPT TO) and before the DATA command goes out, or
                 with its outcome when it ended before DATA. A try cut before DATA (a crash,
                 a stop) counts nothing: a server delivers only after the message's final
                 dot. NULL on rows made before this column: read as `attempts`;
    attempts     tries whose outcome is known and written: the server answered (250, 4xx,
                 5xx), or the connection failed before the message was sent, or the row could
                 not be sent at all (an address that can never be sent also takes a claim and
                 counts as a try begun and ended);
    doubts       = tries_begun - attempts: tries that may have delivered the email without
                 anybody knowing, i.e. the daemon died during one (SIGKILL after the 250), or
                 the connection was lost or timed out after DATA began and before its answer
                 (written as an error that leaves `attempts` alone), or the daemon stopped
                 while waiting for that answer.

A try begins only while doubts < 2, and a recipient the server took with a 250 is never sent
again: so each recipient gets at most two copies. A row with two doubts fails ("in doubt:
may have been delivered; check before resending"), which `vanthu status` shows.

Where the counts are written: on PostgreSQL, in the row. On SQLite (one writer at a time, and
the pipeline records mail in the same file) in the sender's journal beside the database, with
no wait for the database's write lock (daemon/outbound/journal.py); the journal is folded
into the rows with each claim and at the end of each drain, so the rows say the same once a
drain has ended. The claim is then checked by a read before DATA: a claim lasts longer than
any transaction, so another daemon cannot have taken it meanwhile.

The claim: on an open connection, in one write transaction (BEGIN IMMEDIATE on SQLite;
SELECT … FOR UPDATE SKIP LOCKED on PostgreSQL) the next due, pending row whose claim is free
(daemon.leases.free) gets claimed_by = this daemon and claim_expires_at = now +
`claim_seconds`; if that write fails (disk full, database locked) nothing is sent, and if the
count before DATA cannot be written the envelope is reset and the try ends deferred. The
claim outlives the transaction, which is cut at `transaction_seconds`, so another daemon on
the same database never sends the row at the same time. The outcome (attempts, delivered,
refused, state, last_error) is written with the claim cleared. When that write fails, the
outcome stays in memory and is written before anything else is sent; until it can be, the
drain raises DatabaseError and sends nothing (a "sent" that cannot be written never causes a
resend). A try cut by SIGTERM before DATA gives its claim back (`_unclaim`): nothing can have
been delivered.

Whatever goes wrong while sending one row is that row's failure, never the drain's: 4xx and
dropped connections are retried with exponential backoff up to `[smtp] max_attempts`, then
the row fails; a 5xx or an address that can never be sent fails it at once; a row not sent
`[smtp] max_age_hours` after it was queued fails, also while the server is out of reach. A
recipient refused for good is recorded on the row, and a retry goes only to the others. The
SMTP server's own trouble (no connection, every try of a drain deferred) is the health fault
"smtp", cleared by the next delivery.

Clock: `next_attempt_at` is wall-clock time (what a restarted daemon reads); one further in
the future than the longest backoff plus an hour can only come from a clock stepped back,
and is due now. Waits inside the process are asyncio timeouts, i.e. the monotonic clock.

`smtp_open` and `_transmit` are the boundary of the SMTP server: what aiosmtplib, the socket and
TLS raise leaves them as SendDeferred, SendRejected or EmailRefused.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import ssl
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any

import aiosmtplib
import aiosmtplib.protocol
import aiosmtplib.smtp
from sqlalchemy import Connection, Engine, bindparam, func, or_, select, update

from daemon import leases, oauth
from daemon.config import SmtpConfig
from daemon.db import (
    Turns,
    clear_fault,
    database_errors,
    outbox,
    reading,
    report_fault,
    utcnow,
)
from daemon.errors import DatabaseError, EmailRefused, SendDeferred, SendRejected
from daemon.models import OutboxState
from daemon.outbound.journal import Entry, SendJournal
from daemon.outbound.outbox import bodies, settle_message
from daemon.outbound.recipients import mailbox_problem

log = logging.getLogger("vanthu.send")

# The connection is gone: the rest of this drain waits for the next one.
_CONNECTION_LOST = (aiosmtplib.SMTPServerDisconnected, ConnectionError, OSError, TimeoutError)
# Why a recipient did not get a message: refused for good (5xx) or for now.
Refusal = SendRejected | SendDeferred

LONGEST_BACKOFF = timedelta(hours=6)
# A retry time further ahead than the longest backoff by this much was set before the clock
# was stepped back: it is due now.
CLOCK_STEP_MARGIN = timedelta(hours=1)
# Tries that may have delivered without an answer: at the second the row fails.
MAX_DOUBTS = 2
CANDIDATES = 20  # rows looked at per claim (some may be claimed by other daemons)
CLAIM_AT_ONCE = 10  # rows claimed in one commit by a drain, then tried one after another
FAULT = "smtp"  # the health component of the SMTP server's own trouble


_LIBRARY_LINE_ENDINGS = aiosmtplib.protocol.normalize_message_line_endings


def line_endings(message: bytes) -> bytes:
    """aiosmtplib's normalisation of line ends (lone CR or LF to CRLF, a CRLF at the end),
    returning the bytes themselves when they have nothing to normalise, as every email vanthu
    stores: the library's regex copies the whole message twice per email (once for SIZE, once
    for DATA) only to put back each CRLF. Any other input goes to the library's own."""
    crlf = message.count(b"\r\n")
    if message.endswith(b"\r\n") and message.count(b"\r") == crlf == message.count(b"\n"):
        return message
    return _LIBRARY_LINE_ENDINGS(message)


# Both of aiosmtplib's modules call it by name (the SIZE of MAIL FROM, and DATA).
aiosmtplib.protocol.normalize_message_line_endings = line_endings
aiosmtplib.smtp.normalize_message_line_endings = line_endings  # type: ignore[attr-defined]


class _Periods:
    """aiosmtplib's dot-stuffing (`PERIOD_REGEX.sub(b"..", message)`: a line that begins
    with "." gets another), looking first whether any line begins with one. The library's
    pattern is tried at every byte of the email (0.3 ms for a 60 KB email, in the daemon's
    own process, for each one sent); the search for "\\n." runs at memory speed and finds
    none in almost every email (base64 has no ".")."""

    # The library's own pattern (also when this module is imported again).
    LIBRARY: re.Pattern[bytes] = getattr(aiosmtplib.protocol.PERIOD_REGEX, "LIBRARY",
                                         aiosmtplib.protocol.PERIOD_REGEX)

    def sub(self, stuffed: bytes, message: bytes) -> bytes:
        if not message.startswith(b".") and b"\n." not in message:
            return message
        return self.LIBRARY.sub(stuffed, message)


aiosmtplib.protocol.PERIOD_REGEX = _Periods()  # type: ignore[assignment]


def transaction_seconds(cfg: SmtpConfig) -> float:
    """The longest one row's SMTP transaction may take (MAIL, RCPT, DATA, the message and
    the answer, each bounded by the socket timeout), after which it is cut."""
    return 4 * cfg.timeout_seconds


def connect_seconds(cfg: SmtpConfig) -> float:
    """The longest connecting may take (connect, greeting, EHLO, STARTTLS, EHLO, AUTH)."""
    return 6 * cfg.timeout_seconds


def claim_seconds(cfg: SmtpConfig) -> float:
    """How long a claim holds: longer than one whole transaction (claims are taken on an open
    connection)."""
    return transaction_seconds(cfg) + 60


def tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=ca_file)
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def _ca_stamp(ca_file: str | None) -> tuple[int, int, int] | None:
    """What tells a CA file replaced on disk (a renewed certificate), or None when there is
    none to read."""
    if ca_file is None:
        return None
    try:
        found = os.stat(ca_file)
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


class TlsContexts:
    """The TLS context of one SMTP configuration, made once (loading the system's trust store
    takes milliseconds), again only when its CA file changes; none for security "none"."""

    def __init__(self, cfg: SmtpConfig) -> None:
        self.cfg = cfg
        self._made: tuple[tuple[int, int, int] | None, ssl.SSLContext] | None = None

    def get(self) -> ssl.SSLContext | None:
        if self.cfg.security == "none":
            return None
        stamp = _ca_stamp(self.cfg.ca_file)
        if self._made is None or self._made[0] != stamp or (
                stamp is None and self.cfg.ca_file is not None):
            # A CA file that cannot be read is tried again next time (and its error raised).
            self._made = (stamp, tls_context(self.cfg.ca_file, self.cfg.tls_verify))
        return self._made[1]


class _Client(aiosmtplib.SMTP):
    """aiosmtplib's client, knowing whether the transaction in hand is in doubt: DATA began
    and no answer came (a lost connection, a timeout or a stop from then on may leave the
    message delivered). `before_data`, when set, runs before the DATA command (it counts the
    try durably) and may raise SendDeferred to end the transaction there."""

    in_doubt = False
    data_begun = False
    before_data: Callable[[], Awaitable[None]] | None = None

    async def data(self, message: str | bytes, /, **kwargs: Any) -> aiosmtplib.SMTPResponse:
        if self.before_data is not None:
            await self.before_data()
        self.data_begun = True
        self.in_doubt = True
        try:
            response = await super().data(message, **kwargs)
        except aiosmtplib.SMTPResponseException:
            self.in_doubt = False  # the server answered: not delivered
            raise
        self.in_doubt = False
        return response


def _reply(code: int, message: str) -> Refusal:
    """A server's refusal: for good on a 5xx, for now otherwise."""
    return (SendRejected if code >= 500 else SendDeferred)(f"{code} {message}")


async def _reset(client: aiosmtplib.SMTP) -> None:
    """Clear a half-sent envelope (MAIL FROM given, then an error of ours); close a connection
    that cannot even do that, so that the drain ends."""
    if not client.is_connected:
        return
    try:
        await client.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()


async def _transmit(client: _Client, sender: str, targets: list[str], raw: bytes,
                    deadline: float) -> dict[str, Refusal]:
    """Send one message on an open connection within `deadline` seconds; return the
    recipients it did not reach, each with why (all of them: nobody got it). Raises
    SendRejected (a 5xx to MAIL FROM or DATA), SendDeferred (a 4xx there, a dropped
    connection, a timeout, any other SMTP trouble) or EmailRefused (aiosmtplib will not send
    an address or the bytes). Afterwards the connection is either clean for the next message
    or closed; `client.in_doubt` says whether the message may have arrived all the same."""
    client.in_doubt = client.data_begun = False
    try:
        async with asyncio.timeout(deadline):
            errors, _ = await client.sendmail(sender, targets, raw)
    except SendDeferred:  # the try could not be counted before DATA: nothing was sent
        await _reset(client)
        raise
    except aiosmtplib.SMTPRecipientsRefused as err:
        return {r.recipient: _reply(r.code, r.message) for r in err.recipients}
    except aiosmtplib.SMTPResponseException as err:  # MAIL FROM or DATA refused
        raise _reply(err.code, err.message) from err
    except (ValueError, UnicodeError) as err:
        # aiosmtplib's own check of an address or the bytes: trying again cannot help.
        await _reset(client)
        raise EmailRefused(f"cannot be sent: {type(err).__name__}: {err}") from err
    except _CONNECTION_LOST as err:
        client.close()
        raise SendDeferred(f"connection lost: {type(err).__name__}: {err}") from err
    except aiosmtplib.SMTPException as err:
        await _reset(client)
        raise SendDeferred(f"{type(err).__name__}: {err}") from err
    return {address: _reply(r.code, r.message) for address, r in errors.items()}


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 … minutes, at most 6 hours between tries."""
    return min(timedelta(minutes=2 ** min(max(attempts - 1, 0), 20)), LONGEST_BACKOFF)


def _due(now: datetime) -> Any:
    """Retry time reached, or set before the clock was stepped back."""
    return or_(outbox.c.next_attempt_at <= now,
               outbox.c.next_attempt_at > now + LONGEST_BACKOFF + CLOCK_STEP_MARGIN)


def _begun(row: Any) -> int:
    return int(row.attempts if row.tries_begun is None else row.tries_begun)


@dataclass
class Attempt:
    """What one try at a row did: who got it, who was refused for good, what went wrong."""

    delivered: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    error: str | None = None  # the reason the others were not sent this time
    permanent: bool = False  # the row can never be sent: fail it now
    connection_lost: bool = False
    doubtful: bool = False  # may have been delivered: the try stays counted as a doubt
    data_begun: bool = False  # the try was counted in tries_begun before DATA


def _attempt(outcome: dict[str, Any]) -> Attempt:
    """An Attempt from its journal entry: fields it does not know are left out, those it
    lacks keep their defaults (an entry written by another version of vanthu before a
    crash still folds, instead of stopping every claim)."""
    known = {f.name for f in fields(Attempt)}
    return Attempt(**{k: v for k, v in outcome.items() if k in known})


@dataclass
class _Drained:
    """What one drain saw of the SMTP server."""

    sent: int = 0
    delivered: bool = False  # the server took a message: it works
    answered: bool = False  # a try ended otherwise than deferred
    deferred: str | None = None  # the last deferral


# A row's columns the sender looks at; the bytes (outbox_bodies) are read for the rows
# claimed alone (they may be megabytes).
_COLUMNS = (outbox.c.id, outbox.c.recipients, outbox.c.attempts,
            outbox.c.tries_begun, outbox.c.message_id, outbox.c.header_message_id,
            outbox.c.delivered, outbox.c.refused, outbox.c.state, outbox.c.created_at,
            outbox.c.claimed_by, outbox.c.claim_expires_at, outbox.c.last_error)
# Statements run for every email, built once (their values are given at execute): a row
# written (its claim, its outcome), read, read to be written, its fold's mark, its count.
_ROW = update(outbox).where(outbox.c.id == bindparam("row_id"))
_READ = select(*_COLUMNS).where(outbox.c.id == bindparam("row_id"))
_READ_TO_WRITE = _READ.with_for_update()
_FOLDED_UP_TO = select(outbox.c.journal_seq).where(outbox.c.id == bindparam("row_id"))
_COUNTED = update(outbox).where(outbox.c.id == bindparam("row_id")).values(
    tries_begun=func.coalesce(outbox.c.tries_begun, outbox.c.attempts) + 1)


def smtp_client(cfg: SmtpConfig, contexts: TlsContexts | None = None) -> _Client:
    """A client for the server, not connected yet; SendDeferred when none can be made.
    `contexts`: where the configuration's TLS context is kept between connections."""
    try:
        return _Client(
            hostname=cfg.host, port=cfg.port, timeout=cfg.timeout_seconds,
            use_tls=cfg.security == "tls",
            # Explicit: never "STARTTLS if offered", which an attacker can strip.
            start_tls=cfg.security == "starttls",
            tls_context=(contexts or TlsContexts(cfg)).get(),
            local_hostname="vanthu.localdomain",
        )
    except (aiosmtplib.SMTPException, OSError) as err:
        raise SendDeferred(f"connect: {err}") from err


async def smtp_open(client: _Client, cfg: SmtpConfig) -> None:
    """Connect (and log in with a password or a token) `client`; SendDeferred when that
    cannot be done."""
    try:
        async with asyncio.timeout(connect_seconds(cfg)):
            await client.connect()
            if cfg.oauth is not None and cfg.username:
                await oauth.smtp_login(client, cfg.username, cfg.oauth)
            elif cfg.username and cfg.password:
                await client.login(cfg.username, cfg.password.reveal())
    except (aiosmtplib.SMTPException, OSError, TimeoutError, oauth.TokenError) as err:
        client.close()
        raise SendDeferred(f"connect: {str(err) or type(err).__name__}") from err
    except asyncio.CancelledError:  # the daemon stops
        client.close()
        raise


class Sender:
    """Sends pending outbox rows with one SMTP connection per drain."""

    def __init__(self, engine: Engine, cfg: SmtpConfig, turns: Turns | None = None) -> None:
        self.engine = engine
        self.cfg = cfg
        # Shared with the pipeline (SQLite: one writer): a claim or an outcome to write ends
        # the pipeline's transaction at its next mail instead of polling for the lock.
        self.turns = turns or Turns()
        # Outcomes of tries not written yet, by row id: the last try's, written in the same
        # commit as the next try's count before its DATA (one commit between two emails), or
        # at the end of the drain; and any that could not be written (the database failing),
        # written before anything else is sent. Their rows are never sent again meanwhile.
        self.unwritten: dict[int, Attempt] = {}
        # Why the last count of a try could not be written (the database failing), if so:
        # that try never reached DATA, and nothing more is sent this drain.
        self.count_failed: str | None = None
        self.tls = TlsContexts(cfg)
        # On SQLite: counts and outcomes go to a journal beside the database, folded into the
        # outbox with each claim and at the end of each drain (daemon/outbound/journal.py).
        self.journal = SendJournal.beside(engine)
        self._numbered = False  # the journal numbers after the outbox's highest (once)

    # --- the database side: claims and outcomes -------------------------------------------

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """A write transaction of the send path, taken before the pipeline's next one."""
        with self.turns.urgent(), self.engine.begin() as conn:
            yield conn

    def _candidates(self, now: datetime, only: str | None, skip: Iterable[int]) -> Any:
        """Pending rows to look at, oldest first: due, past the maximum age, or in doubt."""
        too_old = outbox.c.created_at < now - timedelta(hours=self.cfg.max_age_hours)
        doubts = func.coalesce(outbox.c.tries_begun, outbox.c.attempts) - outbox.c.attempts
        query = (select(*_COLUMNS)
                 .where(outbox.c.state == OutboxState.PENDING,
                        or_(_due(now), too_old, doubts >= MAX_DOUBTS))
                 .order_by(outbox.c.id).limit(CANDIDATES))
        if skip := [*skip, *self.unwritten]:
            query = query.where(outbox.c.id.not_in(skip))
        if only is not None:
            query = query.where(outbox.c.header_message_id == only)
        return query

    def _claimable(self, row: Any, now: datetime) -> bool:
        if leases.free(row.claimed_by, row.claim_expires_at, now):
            return True
        # An expiry further ahead than any claim lasts was set before a clock step back.
        return bool(row.claim_expires_at > now + 2 * timedelta(seconds=claim_seconds(self.cfg)))

    def _waiting(self, only: str | None) -> tuple[bool, bool]:
        """Whether rows this daemon may claim now are there to send, and to fail without a
        try (a read: nothing is written when nothing is due)."""
        now = utcnow()
        with reading(self.engine) as conn:
            rows = [r for r in conn.execute(self._candidates(now, only, ())).all()
                    if self._claimable(r, now)]
        hopeless = [self._hopeless(r, now) is not None for r in rows]
        return not all(hopeless), any(hopeless)

    def _fail_hopeless(self, only: str | None) -> None:
        """Fail the rows that get no more tries, even while the server is out of reach."""
        now = utcnow()
        with self.engine.begin() as conn:
            for row in conn.execute(self._candidates(now, only, ())
                                    .with_for_update(skip_locked=True)).all():
                if self._claimable(row, now) and (why := self._hopeless(row, now)):
                    self._give_up(conn, row, why, now)

    def _hopeless(self, row: Any, now: datetime, attempts: int | None = None,
                  error: str | None = None) -> str | None:
        """Why the row must fail without another try (its doubts, its age), or None.
        `attempts` and `error`: the row's after a try just made."""
        attempts = row.attempts if attempts is None else attempts
        error = row.last_error if error is None else error
        doubts = _begun(row) - attempts
        if doubts >= MAX_DOUBTS:
            return (f"in doubt: {doubts} tries may have delivered it without the server's "
                    f"answer being recorded; check with the recipients before resending "
                    f"(last error: {error})")
        if row.created_at < now - timedelta(hours=self.cfg.max_age_hours):
            return (f"not sent within {self.cfg.max_age_hours:g} hours of being queued "
                    f"({attempts} attempts; last error: {error})")
        return None

    def _claim(self, only: str | None, skip: Iterable[int], count: int = 1) -> list[Any]:
        """Claim up to `count` rows to send, oldest first (committed before returning them);
        rows that must fail without a try are failed on the way. Empty when no row is left
        for this daemon. A claim lasts `claim_seconds`; a try counted after it ran out is
        refused when another daemon took the row meanwhile (`_count_try`)."""
        claimed: list[Any] = []
        skip = list(skip)
        with self._writing() as conn:
            folded = self._fold(conn)
            while len(claimed) < count:
                got = self._claim_in(conn, only, skip, count - len(claimed))
                if not got:
                    break
                claimed += got
                skip += [row.id for row in got]
        self._folded(folded)
        return claimed

    def _claim_in(self, conn: Connection, only: str | None, skip: Iterable[int],
                  count: int) -> list[Any]:
        """Claim up to `count` rows of one look at the candidates, in `conn`; empty when
        none of them can be claimed."""
        now = utcnow()
        rows = conn.execute(self._candidates(now, only, skip)
                            .with_for_update(skip_locked=True)).all()
        claimed: list[Any] = []
        for row in rows:
            if len(claimed) == count:
                break
            if not self._claimable(row, now):
                continue
            if why := self._hopeless(row, now):
                self._give_up(conn, row, why, now)
                continue
            conn.execute(_ROW, {"row_id": row.id, "claimed_by": str(leases.me()),
                                "claim_expires_at": now + timedelta(
                                    seconds=claim_seconds(self.cfg))})
            claimed.append(row)
        raws = bodies(conn, [row.id for row in claimed])
        taken: list[Any] = []
        for row in claimed:
            if row.id in raws:
                taken.append(SimpleNamespace(**row._mapping, raw=raws[row.id]))
            else:  # a pending row has its bytes, unless the database was edited by hand
                self._give_up(conn, row, "the email's bytes are missing from the outbox", now)
        return taken

    def _give_up(self, conn: Connection, row: Any, why: str, now: datetime) -> None:
        """Fail a row that gets no more tries: those who got it keep it (the row is sent,
        the others are recorded as refused), else the row fails."""
        delivered = list(row.delivered or [])
        refused = dict(row.refused or {})
        left = [r for r in _targets(row) if r not in delivered and r not in refused]
        values = self._final(delivered, refused, left, why, now)
        conn.execute(update(outbox).where(outbox.c.id == row.id).values(**values))
        settle_message(conn, row.message_id, now)
        log.error("outbox.failed", extra={"outbox": row.id, "error": values["last_error"]})

    @staticmethod
    def _final(delivered: list[str], refused: dict[str, str], left: list[str], why: str | None,
               now: datetime) -> dict[str, Any]:
        """The values that end a row: sent when somebody got it, else failed."""
        if left and delivered:
            refused = refused | dict.fromkeys(left, why or "not sent")
        values: dict[str, Any] = {"delivered": delivered or None, "refused": refused or None,
                                  "last_error": why}
        if delivered:
            values.update(state=OutboxState.SENT, sent_at=now)
            if refused:
                values["last_error"] = "; ".join(f"{a}: {w}" for a, w in refused.items())
        else:
            values["state"] = OutboxState.FAILED
            values["last_error"] = why or "; ".join(f"{a}: {w}" for a, w in refused.items())
        return values

    def _unclaim(self, row_ids: Iterable[int]) -> None:
        """Give back claims whose tries never reached DATA: they were not tries after all."""
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(
                outbox.c.id.in_(list(row_ids)), outbox.c.claimed_by == str(leases.me()),
            ).values(claimed_by=None, claim_expires_at=None))

    def _count_try(self, row_id: int) -> None:
        """Count the try about to send DATA, durably, with the outcomes held in memory
        (`unwritten`), in the row or (SQLite) in the journal; SendDeferred (nothing is sent)
        when that cannot be written or the claim is no longer this daemon's."""
        if self.journal is not None:
            self._count_in_journal(self.journal, row_id)
            return
        try:
            with database_errors("outbox"), self._writing() as conn:
                written = self._record_all(conn)
                counted = conn.execute(update(outbox).where(
                    outbox.c.id == row_id, outbox.c.claimed_by == str(leases.me()),
                    outbox.c.state == OutboxState.PENDING,
                ).values(tries_begun=func.coalesce(outbox.c.tries_begun, outbox.c.attempts)
                         + 1)).rowcount
        except DatabaseError as err:
            self.count_failed = str(err)
            raise SendDeferred(f"the try could not be recorded before DATA: {err}") from err
        self._written(written)
        if not counted:
            raise SendDeferred("the claim on the row was lost before DATA")

    def _count_in_journal(self, journal: SendJournal, row_id: int) -> None:
        """`_count_try` on SQLite: the count and the outcomes held go into the journal in one
        commit, without the database's write lock; the claim is checked by a read (a claim
        lasts longer than any transaction, so it is still this daemon's until the count is
        folded)."""
        held = list(self.unwritten.items())
        try:
            with database_errors("outbox"), reading(self.engine) as conn:
                row = conn.execute(_READ, {"row_id": row_id}).first()
            if row is None or row.claimed_by != str(leases.me()) \
                    or row.state != OutboxState.PENDING:
                raise SendDeferred("the claim on the row was lost before DATA")
            journal.write(str(leases.me()), [(r, asdict(attempt)) for r, attempt in held],
                          count=row_id)
        except DatabaseError as err:
            self.count_failed = str(err)
            raise SendDeferred(f"the try could not be recorded before DATA: {err}") from err
        for r, _ in held:  # durable in the journal: written into the outbox at its fold
            self.unwritten.pop(r, None)

    def _fold(self, conn: Connection, entries: list[Entry] | None = None
              ) -> tuple[int, list[tuple[int, OutboxState, str]]]:
        """Fold the journal's entries into the outbox, in the write transaction `conn`: each
        count into its row's tries_begun, each outcome as `_record` writes it; an entry whose
        number the row has reached already was folded before. Return the last number folded
        (0 when none) and (row id, new state, Message-ID) of each outcome."""
        if self.journal is None:
            return 0, []
        if not self._numbered:
            self.journal.start_after(conn.scalar(select(func.max(outbox.c.journal_seq))) or 0)
            self._numbered = True
        if entries is None:
            entries = self.journal.entries()
        written: list[tuple[int, OutboxState, str]] = []
        for entry in entries:
            row = conn.execute(_FOLDED_UP_TO, {"row_id": entry.row_id}).first()
            if row is None or (row.journal_seq or 0) >= entry.seq:
                continue  # removed by hand, or folded already
            if entry.outcome is None:
                conn.execute(_COUNTED, {"row_id": entry.row_id, "journal_seq": entry.seq})
            else:
                state, header_id = self._record(conn, entry.row_id, _attempt(entry.outcome),
                                                journal_seq=entry.seq, owner=entry.owner)
                written.append((entry.row_id, state, header_id))
        return (entries[-1].seq if entries else 0), written

    def _folded(self, folded: tuple[int, list[tuple[int, OutboxState, str]]]) -> None:
        """The fold `folded` is committed: its entries are forgotten (should that fail, the
        next fold passes them by) and its outcomes logged."""
        last, written = folded
        if last and self.journal is not None:
            try:
                self.journal.forget(last)
            except DatabaseError:
                log.warning("outbox.journal_unforgotten", exc_info=True)
        self._written(written)

    def _record_all(self, conn: Connection) -> list[tuple[int, OutboxState, str]]:
        """`_record` every outcome held in memory, in `conn`: (row id, new state, Message-ID)
        of each."""
        return [(row_id, *self._record(conn, row_id, attempt))
                for row_id, attempt in list(self.unwritten.items())]

    def _written(self, written: list[tuple[int, OutboxState, str]]) -> None:
        """The outcomes of `written` are committed: no longer held."""
        for row_id, state, header_id in written:
            self.unwritten.pop(row_id, None)
            if state is OutboxState.SENT:
                log.info("outbox.sent", extra={"outbox": row_id, "message_id": header_id})

    def _record(self, conn: Connection, row_id: int, attempt: Attempt,
                journal_seq: int | None = None, owner: str | None = None
                ) -> tuple[OutboxState, str]:
        """Write what the attempt did on the row (as it is now) and clear the claim of
        `owner` (the sender that tried; this one by default), in the transaction `conn` (with
        `journal_seq`: the number of its journal entry); return the row's new state and its
        Message-ID."""
        now = utcnow()
        row = conn.execute(_READ_TO_WRITE, {"row_id": row_id}).first()
        if row is None:  # removed meanwhile (by hand): nothing left to record
            log.warning("outbox.row_gone", extra={"outbox": row_id})
            return (OutboxState.SENT if attempt.delivered else OutboxState.FAILED), ""
        values = self._outcome(row, attempt, now, owner or str(leases.me()))
        if journal_seq is not None:
            values["journal_seq"] = journal_seq
        conn.execute(_ROW, {"row_id": row_id, **values})
        state = OutboxState(values.get("state", row.state))
        if state is not OutboxState.PENDING:
            settle_message(conn, row.message_id, now)
        extra = {"outbox": row_id, "error": values.get("last_error"),
                 "attempts": values["attempts"]}
        if state is OutboxState.PENDING:
            log.warning("outbox.deferred", extra=extra)
        elif state is OutboxState.FAILED:
            log.error("outbox.failed", extra=extra)
        elif values.get("refused"):
            log.warning("outbox.partly_refused", extra={
                "outbox": row_id, "refused": sorted(values["refused"])})
        return state, row.header_message_id

    def _outcome(self, row: Any, attempt: Attempt, now: datetime,
                 owner: str) -> dict[str, Any]:
        delivered = list(dict.fromkeys([*(row.delivered or []), *attempt.delivered]))
        refused = {**(row.refused or {}), **attempt.refused}
        left = [r for r in _targets(row) if r not in delivered and r not in refused]
        # A try that reached DATA was counted in tries_begun then; one that ended before is
        # counted now, with its outcome. A doubtful try stays counted in tries_begun only: it
        # is a doubt, not an attempt.
        begun = _begun(row) + (0 if attempt.data_begun else 1)
        attempts = row.attempts + (0 if attempt.doubtful else 1)
        mine = row.claimed_by == owner
        values: dict[str, Any] = {
            "attempts": attempts, "tries_begun": max(begun, attempts),
            "delivered": delivered or None, "refused": refused or None,
            "last_error": attempt.error,
            "claimed_by": None if mine else row.claimed_by,
            "claim_expires_at": None if mine else row.claim_expires_at}
        if row.state != OutboxState.PENDING:  # settled meanwhile (by hand, or a claim lost)
            return values
        why: str | None = None
        if left:
            if attempt.permanent:
                why = attempt.error
            elif attempts >= self.cfg.max_attempts and begun - attempts < MAX_DOUBTS:
                why = f"gave up after {attempts} attempts: {attempt.error}"
            else:
                why = self._hopeless(row, now, attempts, attempt.error)
            if why is None:
                values.update(state=OutboxState.PENDING,
                              next_attempt_at=now + backoff(max(begun, 1)))
                return values
        values.update(self._final(delivered, refused, left, why, now))
        return values

    def _write_unwritten(self) -> None:
        """Write the outcomes held in memory, in one transaction (on SQLite: into the journal,
        then fold the journal into the outbox); raise (so nothing is sent) while they cannot
        be written: they stay held."""
        if self.journal is not None:
            self._write_journaled(self.journal)
            return
        if not self.unwritten:
            return
        try:
            with self._writing() as conn:
                written = self._record_all(conn)
        except BaseException:
            self._unwritten_said()
            raise
        self._written(written)

    def _write_journaled(self, journal: SendJournal) -> None:
        held = list(self.unwritten.items())
        try:
            journal.write(str(leases.me()), [(r, asdict(attempt)) for r, attempt in held],
                          count=None)
        except BaseException:
            self._unwritten_said()
            raise
        for r, _ in held:
            self.unwritten.pop(r, None)
        if not (entries := journal.entries()):
            return  # nothing to fold: the database's write lock is not taken
        with self._writing() as conn:
            folded = self._fold(conn, entries)
        self._folded(folded)

    def _unwritten_said(self) -> None:
        for row_id, attempt in self.unwritten.items():
            log.error("outbox.outcome_unwritten", extra={
                "outbox": row_id, "delivered": attempt.delivered, "error": attempt.error})

    def _defer_all(self, only: str | None, error: str) -> None:
        """No connection: the due rows wait like after a first retry, their attempts kept
        (the outage is not theirs). Rows claimed by another daemon are left to it."""
        now = utcnow()
        with self.engine.begin() as conn:
            rows = conn.execute(select(outbox.c.id, outbox.c.claimed_by,
                                       outbox.c.claim_expires_at).where(
                outbox.c.state == OutboxState.PENDING, _due(now),
                *([outbox.c.header_message_id == only] if only is not None else []))).all()
            ids = [r.id for r in rows if self._claimable(r, now)]  # others' are theirs
            if ids:
                conn.execute(update(outbox).where(outbox.c.id.in_(ids)).values(
                    last_error=error, next_attempt_at=now + backoff(1)))
        log.warning("outbox.deferred", extra={"error": error, "rows": len(ids)})

    def _health(self, seen: _Drained, cannot_connect: str | None) -> None:
        """Tell `status` about the SMTP server: failing (no connection, every try of this
        drain deferred) or working again (it took a message)."""
        problem = cannot_connect or (
            f"every email deferred: {seen.deferred}"
            if seen.deferred and not seen.delivered and not seen.answered else None)
        try:
            if problem:
                report_fault(self.engine, FAULT, problem)
            elif seen.delivered and clear_fault(self.engine, FAULT):
                log.info("smtp.recovered")
        except Exception:  # the database may be failing too: the outcomes matter more
            log.exception("health.unrecorded")

    # --- the SMTP side ----------------------------------------------------------------------

    async def _attempt(self, client: _Client, row: Any) -> Attempt:
        """Try one row on an open connection. Never raises: every outcome is an Attempt."""
        attempt = Attempt()
        done = {*(row.delivered or []), *(row.refused or {})}
        targets = [r for r in _targets(row) if r not in done]
        for address in list(targets):  # an old row may hold what enqueue now refuses
            if problem := mailbox_problem(address):
                attempt.refused[address] = f"cannot be sent: {problem}"
                targets.remove(address)
        if not targets:
            attempt.permanent = True
            attempt.error = "; ".join(f"{a}: {why}" for a, why in attempt.refused.items()) \
                or None
            return attempt
        client.before_data = lambda: asyncio.to_thread(self._count_try, row.id)
        try:
            return await self._transmit_row(client, row, targets, attempt)
        finally:
            attempt.data_begun = client.data_begun
            client.before_data = None

    async def _transmit_row(self, client: _Client, row: Any, targets: list[str],
                            attempt: Attempt) -> Attempt:
        try:
            refusals = await _transmit(client, self.cfg.from_address, targets, row.raw,
                                       transaction_seconds(self.cfg))
        except (SendRejected, EmailRefused) as err:
            attempt.error, attempt.permanent = str(err), True
            attempt.connection_lost = not client.is_connected
            return attempt
        except SendDeferred as err:
            attempt.error = str(err)
            attempt.connection_lost = not client.is_connected
            attempt.doubtful = client.in_doubt
            return attempt
        except Exception as err:  # bulkhead: any other failure is this row's, recorded on it
            log.exception("outbox.send_error", extra={"outbox": row.id})
            attempt.error = f"{type(err).__name__}: {err}"
            attempt.doubtful = client.in_doubt
            await _reset(client)
            attempt.connection_lost = not client.is_connected
            return attempt
        attempt.delivered = [t for t in targets if t not in refusals]
        for address, why in refusals.items():
            if isinstance(why, SendRejected):
                attempt.refused[address] = str(why)
        if not attempt.delivered:  # the server took nobody: every refusal is the reason
            attempt.error = "; ".join(f"{a}: {why}" for a, why in refusals.items())
            return attempt
        for address, why in refusals.items():
            if isinstance(why, SendDeferred):
                attempt.error = f"{address}: {why}"
        return attempt

    async def _try(self, client: _Client, row: Any,
                   stopping: asyncio.Event | None) -> Attempt | None:
        """`_attempt`, cut short when the daemon stops: at once before DATA (None: the try
        never began), else after one more socket timeout for the server's answer (a doubt)."""
        task = asyncio.ensure_future(self._attempt(client, row))
        if stopping is None:
            return await task
        stop = asyncio.ensure_future(stopping.wait())
        try:
            await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
            if not task.done() and client.in_doubt:
                await asyncio.wait({task}, timeout=self.cfg.timeout_seconds)
            if not task.done():
                doubtful = client.in_doubt
                await _cancel(task, client.close)
                if not task.cancelled():  # it ended all the same: its outcome stands
                    return task.result()
                if not doubtful:
                    return None
                log.warning("outbox.stopped_in_doubt", extra={"outbox": row.id})
                return Attempt(error="stopped while waiting for the server's answer to the "
                               "message: may have been delivered", connection_lost=True,
                               doubtful=True, data_begun=True)
            return task.result()
        finally:
            stop.cancel()

    async def drain(self, limit: int = 50, only: str | None = None,
                    stopping: asyncio.Event | None = None) -> int:
        """Send what is due (or only the row with Message-ID `only`); return how many rows
        were sent (to at least one recipient). `stopping` set ends the drain between rows
        (and cuts the row in hand, see `_try`). Raises DatabaseError when the outbox cannot
        be read or written: then nothing more is sent, and an outcome not yet written is
        kept to be written first."""
        with database_errors("outbox"):
            return await self._drain(limit, only, stopping)

    async def _drain(self, limit: int, only: str | None, stopping: asyncio.Event | None) -> int:
        if self.unwritten or self.journal is not None:  # the journal may hold a crash's
            await asyncio.to_thread(self._write_unwritten)
        sendable, hopeless = await asyncio.to_thread(self._waiting, only)
        if hopeless:
            await asyncio.to_thread(self._fail_hopeless, only)
        if not sendable or (stopping and stopping.is_set()):
            return 0
        seen = _Drained()
        # Connected before the first claim: a crash between a claim and its DATA counts as a
        # doubt, so that window is kept to the envelope's few commands.
        try:
            client = smtp_client(self.cfg, self.tls)
            opening = asyncio.ensure_future(smtp_open(client, self.cfg))
            if not await _unless_stopped(opening, stopping, client.close):
                return 0
            opening.result()
        except SendDeferred as err:
            await asyncio.to_thread(self._defer_all, only, str(err))
            await asyncio.to_thread(self._health, seen, str(err))
            return 0
        tried: list[int] = []
        claimed: list[Any] = []  # claimed in one commit, tried one after another
        try:
            while len(tried) < limit and not (stopping and stopping.is_set()):
                if not claimed:
                    claimed = await asyncio.to_thread(
                        self._claim, only, tried, min(CLAIM_AT_ONCE, limit - len(tried)))
                    if not claimed:
                        break
                row = claimed[0]
                tried.append(row.id)
                self.count_failed = None
                attempt = await self._try(client, row, stopping)
                if attempt is None or self.count_failed:
                    # Stopped before DATA, or its count (with the outcomes held) could not be
                    # written: not a try; given back below, where the outcomes are written
                    # again (or the drain raises, and nothing more is sent).
                    break
                claimed.pop(0)
                self._saw(seen, attempt)
                # Written with the next try's count before its DATA, or below.
                self.unwritten[row.id] = attempt
                if attempt.connection_lost or not client.is_connected:
                    break
        finally:
            try:
                await asyncio.to_thread(self._write_unwritten)
                if claimed:
                    await asyncio.to_thread(self._unclaim, [r.id for r in claimed])
            finally:
                await self._close(client, stopping)
        # Read back: on SQLite another process's drain may have folded this one's outcomes.
        seen.sent = await asyncio.to_thread(self._sent_among, tried)
        await asyncio.to_thread(self._health, seen, None)
        return seen.sent

    def _sent_among(self, row_ids: list[int]) -> int:
        """How many of the rows `row_ids` (tried by this drain) are sent now."""
        if not row_ids:
            return 0
        with reading(self.engine) as conn:
            return int(conn.scalar(select(func.count()).select_from(outbox).where(
                outbox.c.id.in_(row_ids), outbox.c.state == OutboxState.SENT)) or 0)

    @staticmethod
    def _saw(seen: _Drained, attempt: Attempt) -> None:
        if attempt.delivered:
            seen.delivered = True
        elif attempt.permanent:
            seen.answered = True
        else:
            seen.deferred = attempt.error

    @staticmethod
    async def _close(client: _Client, stopping: asyncio.Event | None) -> None:
        if client.is_connected and not (stopping and stopping.is_set()):
            try:
                await client.quit()
            except (aiosmtplib.SMTPException, OSError, TimeoutError):
                client.close()
        client.close()


async def _unless_stopped(task: asyncio.Future[Any], stopping: asyncio.Event | None,
                          close: Callable[[], None]) -> bool:
    """Wait for `task`; when the daemon stops first, cancel it, `close` its connection (a
    cancellation can be lost inside the library; a closed socket cannot) and return False."""
    if stopping is None:
        await asyncio.wait({task})
        return True
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait({task, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if task.done():
        return True
    await _cancel(task, close)
    return False


async def _cancel(task: asyncio.Future[Any], close: Callable[[], None]) -> None:
    """Cancel `task` and close its connection, again until it has ended, and once more
    after: a cancellation can be lost inside the library (asyncio.wait_for in Python 3.11
    drops one that arrives as the inner operation completes: the task then ends connected),
    and a socket still being opened cannot be closed yet (it may be made after the last
    close). Never raises: a cancellation of the drain itself goes on."""
    while not task.done():
        task.cancel()
        close()
        await asyncio.wait({task}, timeout=0.1)
    close()


def _targets(row: Any) -> list[str]:
    """The row's recipients as strings, whatever an old or hand-made row holds."""
    recipients = row.recipients
    return [str(r) for r in (recipients if isinstance(recipients, list) else [recipients])]

