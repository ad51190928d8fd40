"""Watch one IMAP folder: catch up from the checkpoint, then wait with IDLE (or poll).

One thread and one connection per watched folder (IMAPClient is not thread-safe, and IDLE
watches the selected folder only). Every new mail is fetched with BODY.PEEK[] in batches and
handed to `store_batch`, which commits the raw bytes and the checkpoint together; the flag or
move on the server comes after that commit. Killed anywhere, the watcher restarts from the
last committed checkpoint and loses nothing; a UIDVALIDITY change refetches and dedupes. The
folder is selected again at each IDLE renewal and each poll, so a folder deleted and created
again is noticed then even when the server keeps the session open.
Several daemons may share one database: the `MailboxLease` lets one of them fetch a mailbox,
the others stand by and take over when it stops.
`Imap` is the boundary of the IMAP server: what imapclient, imaplib, the socket and TLS raise
leaves it as a MailboxError.
"""

from __future__ import annotations

import hashlib
import imaplib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from imapclient import IMAPClient
from imapclient.exceptions import LoginError
from sqlalchemy import Engine, delete, or_, select, update

from daemon import leases, oauth
from daemon.config import IntakeConfig, MailboxConfig
from daemon.db import (
    Turns,
    clear_fault,
    database_errors,
    health,
    locations,
    messages,
    report_fault,
    utcnow,
)
from daemon.errors import (
    DatabaseError,
    MailboxAuthError,
    MailboxError,
    MailboxRefused,
    StoreError,
    TransientError,
    VanthuError,
)
from daemon.intake import backlog
from daemon.intake.store import (
    DAMAGED,
    Fetched,
    MailStore,
    checkpoint,
    done_moves,
    pending_moves,
    record_fetch,
    store_batch,
)
from daemon.models import State
from daemon.outbound.send import tls_context

log = logging.getLogger("vanthu.fetch")

# RFC 2177: servers may drop an IDLE after 30 minutes. Renewing every minute also bounds how
# long a mail can wait if its notification was lost in the instant before IDLE began.
IDLE_RENEW_SECONDS = 60
IDLE_TICK_SECONDS = 1.0  # how often the stop flag is looked at while idling
MAX_BATCH_BYTES = 64 * 1024 * 1024  # never more than this much mail in memory at once
# What an IMAP call can raise: imapclient's errors are imaplib's IMAP4.error (IMAP4.abort for
# a dropped connection); socket timeouts and TLS errors are OSErrors.
_IMAP_ERRORS = (imaplib.IMAP4.error, OSError)


def mailbox_error(err: imaplib.IMAP4.error | OSError, doing: str) -> MailboxError:
    """The one translation of an IMAP library error: a refused login, a refused command (the
    connection is still good), or trouble with the connection itself."""
    if isinstance(err, LoginError):
        return MailboxAuthError(f"{doing}: {err}")
    if isinstance(err, imaplib.IMAP4.error) and not isinstance(err, imaplib.IMAP4.abort):
        return MailboxRefused(f"{doing}: {err}")
    return MailboxError(f"{doing}: {type(err).__name__}: {err}")


class Imap:
    """One logged-in IMAP connection. Every call goes to the IMAPClient it wraps, and any error
    of imapclient, imaplib, the socket or TLS comes out as a MailboxError (MailboxRefused when
    the server answered NO or BAD)."""

    def __init__(self, client: Imap, where: str) -> None:
        self._client = client
        self._where = where

    def __getattr__(self, name: str) -> Callable[..., Any]:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return method(*args, **kwargs)
            except _IMAP_ERRORS as err:
                raise mailbox_error(err, f"{name} on {self._where}") from err

        return call


def login(client: IMAPClient, cfg: MailboxConfig) -> str:
    """Log `client` in with a password or a token; the SASL mechanism used. On failure the
    connection is closed and MailboxAuthError (refused) or MailboxError is raised."""
    where = f"{cfg.host}:{cfg.port}"
    try:
        if cfg.oauth is not None:
            return oauth.imap_login(client, cfg.username, cfg.oauth)
        client.login(cfg.username, cfg.password.reveal())
        return "LOGIN"
    except _IMAP_ERRORS as err:
        client.shutdown()
        raise mailbox_error(err, f"login to {where} as {cfg.username}") from err
    except oauth.TokenError as err:
        client.shutdown()
        error = MailboxAuthError if err.refused else MailboxError
        raise error(f"token for {cfg.username} at {where}: {err}") from err


def open_client(cfg: MailboxConfig) -> IMAPClient:
    """A connection to the mailbox's server, over TLS as configured, not logged in yet;
    MailboxError when it cannot be made."""
    where = f"{cfg.host}:{cfg.port}"
    try:
        context = tls_context(cfg.ca_file, cfg.tls_verify)
        client = IMAPClient(cfg.host, port=cfg.port, ssl=cfg.security == "tls",
                            ssl_context=context, timeout=cfg.timeout_seconds)
    except _IMAP_ERRORS as err:
        raise MailboxError(f"connect to {where}: {err}") from err
    client.normalise_times = False  # INTERNALDATE with the server's offset, not naive local
    # IMAPClient turns imaplib's protocol trace on (level 5) for its DEBUG logger: imaplib
    # then formats, at every level of logging, each response line and the repr of each
    # literal, i.e. of every mail fetched, and of each FETCH's whole batch again. That was
    # three quarters of a FETCH's CPU in the daemon's process, for text that `log.setup`
    # drops anyway (IMAPClient's loggers log warnings only). Off: nothing is lost.
    client._imap.debug = 0
    try:
        if cfg.security == "starttls":
            client.starttls(context)
    except _IMAP_ERRORS as err:
        client.shutdown()
        raise mailbox_error(err, f"STARTTLS with {where}") from err
    return client


@contextmanager
def connect(cfg: MailboxConfig) -> Iterator[Imap]:
    """A logged-in connection to the mailbox, logged out afterwards. Raises MailboxAuthError
    when the server refuses the login, MailboxError when it cannot be reached."""
    where = f"{cfg.host}:{cfg.port}"
    client = open_client(cfg)
    login(client, cfg)
    try:
        yield Imap(client, where)
    finally:
        try:
            client.logout()
        except _IMAP_ERRORS:  # the connection is already gone; close the socket
            client.shutdown()


class FolderWatcher:
    """Keeps one folder of one mailbox stored, until `stop` is set."""

    def __init__(self, mailbox: MailboxConfig, folder: str, engine: Engine, store: MailStore,
                 max_message_bytes: int, on_stored: Callable[[], None],
                 stop: threading.Event, lease: MailboxLease | None = None,
                 intake: IntakeConfig | None = None, turns: Turns | None = None) -> None:
        self.cfg = mailbox
        self.intake = intake  # which mail is old (`[intake] start`); None: none is
        self.lease = lease  # None: this daemon fetches the mailbox without asking
        self.turns = turns or Turns()  # shared with the pipeline: storing writes first
        self.folder = folder
        self.engine = engine
        self.store = store
        self.max_message_bytes = max_message_bytes
        self.on_stored = on_stored
        self.stop = stop
        # Set when routed mail may have a rule's `move` to carry out here: ends the wait.
        self.nudge = threading.Event()
        self.caught_up = False  # the current session completed a catch-up
        self.progressed = False  # the current session stored at least one batch
        self.ctx = {"mailbox": mailbox.name, "folder": folder}
        # The store's fault, recorded for `vanthu status` under this folder's name. True at
        # start: a fault recorded before a restart is cleared by the first batch stored.
        self.store_component = f"store {mailbox.name}/{folder}"
        self.store_fault = True

    def run(self) -> None:
        """Thread body: sessions with reconnect and exponential backoff, until stopped."""
        delay = 1.0
        while not self.stop.is_set():
            if not self._may_fetch():
                assert self.lease is not None
                self.lease.held.wait(1.0)  # another daemon fetches; look again
                continue
            self.caught_up = self.progressed = False
            failure: Exception | None = None
            try:
                with database_errors(f"mailbox {self.cfg.name}/{self.folder}"), \
                        connect(self.cfg) as client:
                    log.info("mailbox.connected", extra=self.ctx)
                    self._session(client)
            except Exception as err:  # bulkhead: this folder's loop must outlive any error
                failure = err
            # Back off more each time, unless the last session did catch up or store mail:
            # a connection that fails after each batch still moves the mail along.
            delay = 1.0 if self.caught_up or self.progressed else delay
            if isinstance(failure, TransientError):
                self._report(failure, delay)
            elif failure is not None:
                log.error("mailbox.failed", exc_info=failure,
                          extra={**self.ctx, "retry_in": delay})
                self._record(record_fetch, self.engine, self.cfg.name, self.folder,
                             str(failure))
            self.stop.wait(delay)
            delay = min(delay * 2, 300.0)

    def _report(self, err: TransientError, delay: float) -> None:
        """Log a failed session and record it where `vanthu status` shows it: a mailbox error
        on the folder's checkpoint, a store error as a fault of this folder's store; a
        database error only in the log, since the database is what failed."""
        extra = {**self.ctx, "error": str(err), "retry_in": delay}
        if isinstance(err, StoreError):
            log.error("store.failed", extra=extra)
            self.store_fault = True
            self._record(report_fault, self.engine, self.store_component, str(err))
        elif isinstance(err, DatabaseError):
            log.warning("database.error", extra=extra)
        else:
            if isinstance(err, MailboxAuthError):
                log.error("mailbox.login_refused", extra=extra)
            else:
                log.warning("mailbox.error", extra=extra)
            self._record(record_fetch, self.engine, self.cfg.name, self.folder, str(err))

    def _record(self, write: Callable[..., object], *args: Any) -> None:
        try:
            write(*args)
        except Exception:  # bulkhead: the database may be the trouble; the log has it
            log.exception("mailbox.record_failed", extra=self.ctx)

    def _store_works(self) -> None:
        """A batch was stored: clear a store fault this folder recorded (maybe before a
        restart)."""
        if self.store_fault:
            if clear_fault(self.engine, self.store_component):
                log.info("store.recovered", extra=self.ctx)
            self.store_fault = False

    def _may_fetch(self) -> bool:
        """Whether this daemon may fetch the mailbox now (it holds the mailbox's lease)."""
        return self.lease is None or self.lease.mine()

    def _select(self, client: Imap) -> int:
        """Select the folder; return its UIDVALIDITY."""
        return int(client.select_folder(self.folder)[b"UIDVALIDITY"])

    def _session(self, client: Imap) -> None:
        uidvalidity = self._select(client)
        idle = self.cfg.idle and client.has_capability("IDLE")
        self.catch_up(client, uidvalidity)
        self.caught_up = True
        while not self.stop.is_set():
            if idle and self._news(client):
                self.catch_up(client, uidvalidity)  # arrived since our last search
                continue
            if idle:
                self._idle(client)
            else:
                self.nudge.wait(self.cfg.poll_seconds)
                client.noop()
            self.nudge.clear()
            if self.stop.is_set():
                return
            if not self._may_fetch():
                log.warning("mailbox.lease_lost", extra=self.ctx)
                return
            uidvalidity = self._recheck(client, uidvalidity)
            self.catch_up(client, uidvalidity)

    def _recheck(self, client: Imap, uidvalidity: int) -> int:
        """Select the folder again and return its UIDVALIDITY now. A folder deleted and created
        again under the same name has a new one: its mails are then taken as at the start of
        a session (the checkpoint starts over; mails already stored only gain a location)."""
        current = self._select(client)
        if current != uidvalidity:
            log.warning("mailbox.uidvalidity_changed",
                        extra={**self.ctx, "old": uidvalidity, "new": current})
        return current

    def _news(self, client: Imap) -> bool:
        """A NOOP just before IDLE: a mail that arrived since our last search shows as EXISTS.
        (A server may not report, at the start of IDLE, a change that came before it.)"""
        _, responses = client.noop()
        return any(len(r) > 1 and r[1] in (b"EXISTS", b"RECENT") for r in responses)

    def _idle(self, client: Imap) -> None:
        """Wait in IDLE until the server reports a change, the stop flag, or renewal time."""
        client.idle()
        started = time.monotonic()
        try:
            while (not self.stop.is_set() and not self.nudge.is_set() and self._may_fetch()
                   and time.monotonic() - started < IDLE_RENEW_SECONDS):
                tick = time.monotonic()
                responses = client.idle_check(timeout=IDLE_TICK_SECONDS)
                if any(r[0] == b"BYE" for r in responses if r):
                    raise MailboxError("server said BYE during IDLE")
                if any(len(r) > 1 and r[1] in (b"EXISTS", b"EXPUNGE") for r in responses):
                    return
                if any(r[0] == b"NO" for r in responses if r):
                    # A warning about the selected folder (Dovecot says this when the folder
                    # is deleted): look at it again now rather than at the renewal.
                    return
                if not responses and time.monotonic() - tick < IDLE_TICK_SECONDS / 10:
                    # An instant empty answer means the socket hit EOF (IMAPClient swallows
                    # it): without this check the loop would spin on a dead connection.
                    raise MailboxError("connection closed during IDLE")
        finally:
            client.idle_done()

    def catch_up(self, client: Imap, uidvalidity: int) -> int:
        """Store every mail above the checkpoint; return how many were new."""
        new = 0
        # Search again until nothing is left: an EXISTS that arrives while we run other
        # commands (the STORE of the flags) is consumed with their responses and would never
        # reach IDLE, leaving that mail waiting for the next renewal.
        for _ in range(100):
            found = self._catch_up_once(client, uidvalidity)
            new += found
            if not found:
                break
        record_fetch(self.engine, self.cfg.name, self.folder, None)
        self._rule_moves(client, uidvalidity)
        return new

    def _catch_up_once(self, client: Imap, uidvalidity: int) -> int:
        last = checkpoint(self.engine, self.cfg.name, self.folder, uidvalidity)
        # `UID n:*` always matches the last message, even below n: filter ourselves.
        uids = sorted(u for u in client.search(["UID", f"{last + 1}:*"]) if u > last)
        old_before = backlog.old_before(self.engine, self.intake, self.cfg.name, self.folder)
        progress = backlog.CatchUp(self.ctx, len(uids))
        # More than a batch waiting: the pipeline waits while it is stored (db.Turns).
        with self.turns.backlog() if len(uids) > self.cfg.batch_size else nullcontext():
            self._store_all(client, uidvalidity, uids, old_before, progress)
        return len(uids)

    def _store_all(self, client: Imap, uidvalidity: int, uids: list[int],
                   old_before: datetime | None, progress: backlog.CatchUp) -> int:
        """Fetch and store `uids` batch by batch; return how many were new."""
        new = 0
        for sized in self._batches(client, uids):
            batch = [uid for uid, _ in sized]
            fetched = self._fetch(client, dict(sized))
            with self.turns.urgent():
                ids = store_batch(self.engine, self.store, mailbox=self.cfg.name,
                                  folder=self.folder, uidvalidity=uidvalidity, batch=fetched,
                                  old_before=old_before, progress=progress.step(len(batch)))
            new += len(ids)
            self.progressed = True
            log.info("mail.stored", extra={**self.ctx, "count": len(fetched), "new": len(ids),
                                           "last_uid": batch[-1]})
            self._store_works()
            self.on_stored()
            self._after(client, batch)
        return new

    def _rule_moves(self, client: Imap, uidvalidity: int) -> None:
        """Carry out the `move` actions of routed mail seen in this folder (a convenience:
        the database already holds the mail and its decision)."""
        for target, uids in pending_moves(self.engine, self.cfg.name, self.folder,
                                          uidvalidity).items():
            try:
                if not client.folder_exists(target):
                    client.create_folder(target)
                if client.has_capability("MOVE"):
                    client.move(uids, target)
                else:
                    client.copy(uids, target)
                    client.delete_messages(uids)
                log.info("mail.moved", extra={**self.ctx, "to": target, "count": len(uids)})
            except MailboxRefused as err:
                log.warning("mailbox.move_failed", extra={**self.ctx, "error": str(err)})
            done_moves(self.engine, self.cfg.name, self.folder, uidvalidity, uids)

    def _batches(self, client: Imap, uids: list[int]) -> Iterator[list[tuple[int, int]]]:
        """Group UIDs by count and by size, so memory stays bounded whatever the backlog."""
        for start in range(0, len(uids), 500):
            chunk = uids[start:start + 500]
            sizes = {uid: int(data.get(b"RFC822.SIZE", 0))
                     for uid, data in client.fetch(chunk, ["RFC822.SIZE"]).items()}
            batch: list[tuple[int, int]] = []
            total = 0
            for uid in chunk:
                size = sizes.get(uid, 0)
                if batch and (len(batch) >= self.cfg.batch_size or total + size > MAX_BATCH_BYTES):
                    yield batch
                    batch, total = [], 0
                batch.append((uid, size))
                total += min(size, self.max_message_bytes)
            if batch:
                yield batch

    def _fetch(self, client: Imap, sizes: dict[int, int]) -> list[Fetched]:
        """Fetch the mails of one batch, `sizes` mapping each UID to its RFC822.SIZE."""
        uids = list(sizes)
        small = [u for u in uids if sizes.get(u, 0) <= self.max_message_bytes]
        large = [u for u in uids if u not in small]
        out: dict[int, Fetched] = {}
        # INTERNALDATE, with the mail: when the server accepted it, the legal time of receipt.
        if small:
            for uid, data in client.fetch(small, ["BODY.PEEK[]", "INTERNALDATE"]).items():
                out[uid] = Fetched(uid, bytes(data[b"BODY[]"]),
                                   internaldate=_internaldate(data))
        if large:  # too large to take: keep the header, quarantine with the reason
            for uid, data in client.fetch(large, ["BODY.PEEK[HEADER]", "INTERNALDATE"]).items():
                out[uid] = Fetched(uid, bytes(data[b"BODY[HEADER]"]), too_large=sizes[uid],
                                   internaldate=_internaldate(data))
        missing = [u for u in uids if u not in out]
        if missing:  # expunged between SEARCH and FETCH: gone, nothing to store
            log.info("mail.vanished", extra={**self.ctx, "uids": missing})
        return [out[u] for u in uids if u in out]

    def _after(self, client: Imap, uids: list[int]) -> None:
        """Flag or move on the server: after the commit, a convenience. The mail is already safe
        in the store, so a refusal here is only logged."""
        try:
            if self.cfg.after == "flag":
                client.add_flags(uids, [self.cfg.keyword.encode()])
            elif self.cfg.after.startswith("move:"):
                target = self.cfg.after[5:]
                if client.has_capability("MOVE"):
                    client.move(uids, target)
                else:
                    client.copy(uids, target)
                    client.delete_messages(uids)
                    client.uid_expunge(uids) if client.has_capability("UIDPLUS") else None
        except MailboxRefused as err:
            log.warning("mailbox.after_failed", extra={**self.ctx, "error": str(err)})



def _internaldate(data: dict[bytes, Any]) -> datetime | None:
    """The INTERNALDATE of a FETCH answer (timezone-aware), None when absent or unreadable."""
    value = data.get(b"INTERNALDATE")
    return value if isinstance(value, datetime) and value.tzinfo is not None else None


class MailboxLease:
    """Which daemon fetches a mailbox, when several share one database: the holder of the
    lease "mailbox:NAME" (daemon.leases). The service renews it every `RENEW_SECONDS` for
    `HOLD_SECONDS`; a daemon that cannot take it does not fetch the mailbox, records why for
    `vanthu status`, and tries again at each renewal, so it takes over when the holder stops
    (at once when the holder was a process of this machine that died).

    The holder stops fetching `RENEW_SECONDS` before its lease could expire unrenewed (a
    database it cannot write), so two daemons never fetch the same mailbox at once; and if
    they ever did, the store's sha256 key would still keep each mail once.
    """

    RENEW_SECONDS = 30.0
    HOLD_SECONDS = 90.0

    def __init__(self, engine: Engine, mailbox: str) -> None:
        self.engine = engine
        self.mailbox = mailbox
        self.name = f"mailbox:{mailbox}"
        self.held = threading.Event()  # set while this daemon holds the lease
        self._valid_until = 0.0  # time.monotonic() up to which the lease is surely ours
        self._holder: str | None = None  # the other daemon that holds it, as last seen

    def mine(self) -> bool:
        return self.held.is_set() and time.monotonic() < self._valid_until

    def renew(self) -> bool:
        """Take or renew the lease; return whether this daemon holds it now."""
        started = time.monotonic()
        try:
            with self.engine.begin() as conn:
                holder = leases.acquire(conn, self.name, self.HOLD_SECONDS)
        except Exception:  # bulkhead: a busy database; the lease runs out if it lasts
            log.exception("mailbox.lease_failed", extra={"mailbox": self.mailbox})
            if not self.mine():
                self.held.clear()
            return self.mine()
        if holder is None:
            self._valid_until = started + self.HOLD_SECONDS - self.RENEW_SECONDS
            if not self.held.is_set():
                log.info("mailbox.lease_taken", extra={"mailbox": self.mailbox})
                self._holder = None
                self.held.set()
                self._clear_fault(stale_only=False)
            else:
                self._clear_fault(stale_only=True)
            return True
        self.held.clear()
        self._valid_until = 0.0
        if holder != self._holder:
            log.warning("mailbox.held_elsewhere", extra={"mailbox": self.mailbox,
                                                         "owner": holder})
            self._holder = holder
        self._record(report_fault, self.engine, self.name,
                     f"mailbox {self.mailbox} is fetched by another vanthu daemon ({holder}) "
                     "on the same database; this one does not fetch it and takes over when "
                     "that one stops")
        return False

    def _clear_fault(self, stale_only: bool) -> None:
        """Forget the note of a standby daemon: at once when this daemon takes the lease, and
        when the note has not been renewed for two periods (that standby is gone)."""
        if not stale_only:
            self._record(clear_fault, self.engine, self.name)
        else:
            self._record(self._forget_stale)

    def _forget_stale(self) -> None:
        before = utcnow() - timedelta(seconds=2 * self.RENEW_SECONDS + 5)
        with self.engine.begin() as conn:
            conn.execute(delete(health).where(health.c.component == self.name,
                                              health.c.updated_at < before))

    def _record(self, write: Callable[..., object], *args: Any) -> None:
        try:
            write(*args)
        except Exception:  # bulkhead: the database may be the trouble; the log has it
            log.exception("mailbox.record_failed", extra={"mailbox": self.mailbox})

    def release(self) -> None:
        """Give the lease up (at a clean stop), so a standby daemon takes over at once."""
        self.held.clear()
        self._valid_until = 0.0
        try:
            with self.engine.begin() as conn:
                leases.release(conn, self.name)
        except Exception:  # it expires by itself
            log.exception("mailbox.lease_failed", extra={"mailbox": self.mailbox})


def keep_leases(held: Sequence[MailboxLease], stop: threading.Event) -> None:
    """Thread body: renew every lease each `RENEW_SECONDS` until `stop`, then give them up."""
    while not stop.wait(MailboxLease.RENEW_SECONDS):
        for lease in held:
            lease.renew()
    for lease in held:
        lease.release()


@dataclass(frozen=True)
class Refetched:
    """What `refetch` did: where the copy came from, and whether the mail was put back to be
    processed (it had been quarantined because its stored copy was damaged or missing)."""

    mail_id: int
    mailbox: str
    folder: str
    uid: int
    requeued: bool


class RefetchRefused(VanthuError):
    """The server's copy cannot be taken: why, for the clerk (in Vietnamese), one reason per
    place the mail was seen."""

    def __init__(self, reasons: list[str]) -> None:
        self.reasons = reasons
        super().__init__("; ".join(reasons))


def refetch(mailboxes: Sequence[MailboxConfig], engine: Engine, store: MailStore,
            mail_id: int) -> Refetched:
    """Fetch mail `mail_id` again from the folder it was stored from, check that it is the
    same mail (its sha256), write the stored copy again and put the mail back to be processed
    if it was quarantined for a damaged or missing copy. Raises RefetchRefused with every
    reason when no location gives the mail back (a folder recreated: other UIDVALIDITY; the
    UID gone; other bytes)."""
    with engine.connect() as conn:
        mail = conn.execute(select(messages.c.sha256, messages.c.state, messages.c.last_error)
                            .where(messages.c.id == mail_id)).first()
        places = conn.execute(select(locations).where(locations.c.message_id == mail_id)
                              .order_by(locations.c.id.desc())).all()
    if mail is None:
        raise RefetchRefused([f"không có thư #{mail_id}"])
    configured = {m.name: m for m in mailboxes}
    reasons: list[str] = []
    for place in places:
        where = f"{place.mailbox}/{place.folder} UID {place.uid}"
        cfg = configured.get(place.mailbox)
        if cfg is None:
            reasons.append(f"{where}: hộp thư {place.mailbox} không còn trong cấu hình")
            continue
        try:
            raw = _fetch_one(cfg, place.folder, int(place.uidvalidity), int(place.uid))
        except MailboxError as err:
            reasons.append(f"{where}: không lấy được thư từ máy chủ ({err})")
            continue
        except RefetchRefused as err:
            reasons.append(f"{where}: {err}")
            continue
        if hashlib.sha256(raw).hexdigest() != mail.sha256:
            reasons.append(f"{where}: bản trên máy chủ không phải thư đã lưu (sha256 khác)")
            continue
        store.rewrite(raw)
        return Refetched(mail_id, place.mailbox, place.folder, int(place.uid),
                         _requeue(engine, mail_id))
    raise RefetchRefused(reasons or [f"thư #{mail_id} không có vị trí IMAP nào đã biết"])


def _fetch_one(cfg: MailboxConfig, folder: str, uidvalidity: int, uid: int) -> bytes:
    """The bytes of one UID, read-only (no flag changes), if the folder is still the one the
    UID was given in."""
    with connect(cfg) as client:
        current = int(client.select_folder(folder, readonly=True)[b"UIDVALIDITY"])
        if current != uidvalidity:
            raise RefetchRefused([f"thư mục đã được tạo lại (UIDVALIDITY nay là {current}, không "
                                  f"phải {uidvalidity}): UID có thể chỉ một thư khác"])
        found = client.fetch([uid], ["BODY.PEEK[]"]).get(uid)
    if not found or b"BODY[]" not in found:
        raise RefetchRefused(["thư không còn trong thư mục (đã bị xoá hoặc chuyển đi)"])
    return bytes(found[b"BODY[]"])


def _requeue(engine: Engine, mail_id: int) -> bool:
    """Put back to `stored` a mail quarantined because its stored copy was damaged or could
    not be read; True when it was."""
    with engine.begin() as conn:
        changed = conn.execute(update(messages).where(
            messages.c.id == mail_id, messages.c.state == State.QUARANTINED,
            or_(messages.c.last_error.startswith(DAMAGED),
                messages.c.last_error.startswith("FileNotFoundError")),
        ).values(state=State.STORED, attempts=0, last_error=None, updated_at=utcnow()))
    return bool(changed.rowcount)
