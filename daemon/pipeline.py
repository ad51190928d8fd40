"""Take stored messages through understand → register → route → outbox.

Reading (parsing) is pure and runs outside any transaction, in worker processes when a pool
is given. Then a batch of messages is applied in one transaction, a savepoint each, so one
bad message cannot spoil the others. `apply` is a list of named steps (hold, register, join a
case, queue the emails, record the handover, finish): the registration, the case, the outbox
rows and the new state commit together or not at all. A crash before the commit leaves the
messages `stored`, to be done again with the same numbers free and the same Message-IDs;
after it, everything they caused is durable.
"""

from __future__ import annotations

import logging
import os
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, func, insert, select, update

from daemon.config import Config
from daemon.db import Turns, cases, messages, new_id, reading, utcnow
from daemon.errors import BadMessage, PermanentError, SystemicFault
from daemon.intake.store import MailStore
from daemon.intake.workers import ReadPool, Reads, read_guarded
from daemon.log import rehearsal
from daemon.models import (
    Action,
    Assignment,
    Decision,
    Hold,
    HoldKind,
    Kind,
    Move,
    ParsedMail,
    State,
    Tagging,
    Understanding,
)
from daemon.office import backfill, directives, quarantine
from daemon.office import cases as cases_module
from daemon.office import register as register_module
from daemon.office.cases import CaseEvent
from daemon.office.register import Book, DbCases, case_id_of, register, trust_of
from daemon.office.review import check_dossier
from daemon.outbound import compose, drafts
from daemon.outbound.outbox import enqueue, enqueue_draft
from daemon.outbound.recipients import Allowed, Answering, Purpose, refusal
from daemon.routing.route import announced, decide, merge
from daemon.routing.rules import Procedure, RuleSet
from daemon.understand import Asked, Reading, answered_ids, dkim_check, judge
from daemon.understand.signatures import document_roots

log = logging.getLogger("vanthu.pipeline")


REGISTERED_KINDS = (Kind.DOCUMENT, Kind.DOSSIER)
EVENT_OF_ACTION = {Purpose.ACKNOWLEDGE: CaseEvent.ACKNOWLEDGED,
                   Purpose.FORWARD: CaseEvent.FORWARDED, Purpose.NOTIFY: CaseEvent.NOTIFIED,
                   Purpose.ASSIGN: CaseEvent.ASSIGNED}


@dataclass(frozen=True)
class Stored:
    """The columns of a `messages` row the pipeline starts from."""

    pk: int
    sha256: str
    stored_at: datetime  # when vanthu fetched it
    attempts: int
    # When the agency's server accepted it (IMAP INTERNALDATE; the fetch time for rows that
    # have none): the legal time of receipt, used by the register, the case and its deadline.
    received_at: datetime
    # Old mail taken in by `vanthu backlog import`: registered without any email.
    quiet: bool = False


@dataclass(frozen=True)
class Failed:
    """A stored mail that could not be read, understood, routed or applied, and why."""

    stored: Stored
    error: str
    permanent: bool = False  # the mail's own fault (unreadable, an email refused): no retry


@dataclass(frozen=True)
class Ready:
    """A stored mail with what the pure stages made of it, ready to be applied."""

    stored: Stored
    mail: ParsedMail
    understanding: Understanding
    decision: Decision
    clerk: dict[str, Any] | None = None  # the clerk's release of its hold, if any
    # What `judge` made of it, before the clerk's release or a trusted sender lifted a hold,
    # and the questions about cases it asked to get there, with their answers.
    judged: Understanding | None = None
    asked: Asked | None = None


Work = Failed | Ready


def think(cfg: Config, rules: RuleSet, conn: Connection, stored: Stored,
          reading: Reading | BadMessage | Exception,
          clerk: dict[str, Any] | None = None, before: Ready | None = None) -> Work:
    """Understand and route one read mail (no writes): Ready, or Failed with the reason.
    `clerk`: a release to assume (what `quarantine show` says would happen). `before`: this
    mail thought about on an older snapshot; its judgement is kept when every question it
    asked about cases gets the same answer on `conn`."""
    if isinstance(reading, BadMessage):
        return Failed(stored, str(reading), permanent=True)
    if isinstance(reading, Exception):
        return Failed(stored, f"{type(reading).__name__}: {reading}")
    try:
        if before is not None and before.judged is not None and before.asked is not None \
                and before.asked.same(DbCases(conn)):
            if not before.judged.quarantine:
                # Judged the same, and not held: no release or trusted sender bears on it,
                # and routing is a function of the judgement, the mail and this call's
                # rules. What was made of it stands.
                return before
            judged, asked = before.judged, before.asked
        else:
            asked = Asked(DbCases(conn))
            judged = judge(reading, cfg, asked)
        und = judged
        # Only a held mail can be released, and only this pipeline holds a mail: a release
        # read before is still the one there.
        clerk = clerk or (before.clerk if before is not None
                          else quarantine.released(conn, stored.pk))
        if und.quarantine and clerk:
            und = vouched(und, clerk, cfg)
        elif und.quarantine and (trusted := quarantine.trusted_for(conn, und, reading.mail)):
            und = quarantine.lift_trusted(und, trusted, cfg.agency.tz)
        own = cfg.own_addresses
        decision = decide(und, reading.mail, rules, stored.received_at.astimezone(cfg.agency.tz),
                          own, cfg.calendar.work_calendar())
    except Exception as err:  # bulkhead: one message's failure must not stop the others
        log.exception("pipeline.failed", extra={"mail": stored.pk})
        return Failed(stored, f"{type(err).__name__}: {err}")
    return Ready(stored, reading.mail, und, decision, clerk, judged, asked)


def vouched(und: Understanding, clerk: dict[str, Any], cfg: Config) -> Understanding:
    """A held mail the clerk released (`vanthu quarantine release`): no longer held, and the
    doubt it was held for, with who lifted it and why, goes on to everyone it reaches."""
    at = datetime.fromisoformat(clerk["at"]).astimezone(cfg.agency.tz)
    kind = Kind(clerk["as"]) if clerk.get("as") in {k.value for k in Kind} else und.kind
    said = f", xác định là {KIND_NAMES_VI.get(kind.value, kind.value)}," \
        if kind is not und.kind else ""
    note = (f"Thư từng bị giữ lại ({'; '.join(und.quarantine_reasons)}); văn thư "
            f"{clerk['by']} đã kiểm tra{said} và cho đi tiếp lúc "
            f"{at:%H:%M %d/%m/%Y}: {clerk['reason']}")
    return replace(und, kind=kind, quarantine_reasons=(), hold_kinds=(),
                   trust_notes=(*und.trust_notes, note))


KIND_NAMES_VI = {"document": "văn bản đến", "dossier": "hồ sơ", "reply": "thư trả lời hồ sơ",
                 "other": "thư khác"}


class Groups:
    """How many mails the next transaction of the pipeline takes. A life of the daemon starts
    with one mail, so even a daemon killed a few seconds after each start (a crash loop)
    registers something in each life; each group that commits doubles the next, up to
    `largest`, so a normal run keeps the throughput of group commit. 50: with the next batch
    read ahead, two batches and what was read of them are in memory at once (100 cost about
    15 MB more, for no speed the benchmark could tell apart)."""

    def __init__(self, largest: int = 50) -> None:
        self.largest = largest
        self.size = 1

    def done(self, count: int) -> None:
        """A group of `count` mails was committed."""
        if count:
            self.size = min(self.size * 2, self.largest)


# One batch handed to the workers: its mails' rows, their stored bytes (or why they could
# not be had), and the reading in progress.
Batch = tuple[Sequence[Any], list[bytes | OSError | BadMessage], Reads | None]


@dataclass
class Ahead:
    """Batches of the daemon's pipeline already handed to the workers, oldest first: they
    are read while the daemon's own process records the batch before them (the two cores
    work at once), or while a fetch thread stores a backlog (`read_ahead`)."""

    batches: deque[Batch] = field(default_factory=deque)

    def take(self) -> Batch:
        return self.batches.popleft() if self.batches else ((), [], None)

    def add(self, batch: Batch) -> None:
        rows, raws, reads = batch
        if reads is not None:
            # Handed over: the workers have the bytes (or the pool's queue until they take
            # them, then nobody). Only where each mail's reading comes in the batch is kept.
            raws = [raw if isinstance(raw, Exception) else HANDED for raw in raws]
        self.batches.append((rows, raws, reads))

    def ids(self) -> list[int]:
        return [row.id for rows, _, _ in self.batches for row in rows]

    def size(self) -> int:
        """Bytes of stored mail in hand."""
        return sum(row.size or 0 for rows, _, _ in self.batches for row in rows)


# What stands in `Ahead` for the bytes of a mail handed to the workers.
HANDED = b""

# While a fetch thread stores a backlog, the workers read ahead at most this many bytes of
# stored mail (`read_ahead`): their core is idle meanwhile, and what they read is held in
# this process until the pipeline takes it.
AHEAD_BYTES = 8 * 1024 * 1024


def read_ahead(engine: Engine, store: MailStore, pool: ReadPool, ahead: Ahead,
               groups: Groups, budget: int = AHEAD_BYTES) -> int:
    """Hand the next stored mails to the workers in the batches the pipeline will take
    (sized as `groups` will size them), until `budget` bytes of mail are in hand or none is
    left; return how many mails were handed over."""
    handed = 0
    size = groups.size
    for rows, _, _ in ahead.batches:  # the sizes of the batches in hand come first
        size = min(size * 2, groups.largest) if rows else size
    while ahead.size() < budget:
        rows = _pick(engine, size, None, skip=ahead.ids())
        if not rows:
            break
        raws = _raws(store, rows)
        ahead.add((rows, raws, _submit(pool, raws)))
        handed += len(rows)
        size = min(size * 2, groups.largest)
    if handed:
        log.info("pipeline.read_ahead", extra={"mails": handed, "bytes": ahead.size()})
    return handed


# A recording transaction on SQLite ends after the mail that takes it past this many seconds
# (or at once when a fetch thread waits to store): the sender and the store write between.
RECORD_SECONDS = 0.5
# A batch read at once is cut past this many bytes of mail (at least one mail is taken).
BATCH_BYTES = 64 * 1024 * 1024


def process_pending(engine: Engine, cfg: Config, store: MailStore, rules: RuleSet,
                    pool: ReadPool | None = None, limit: int = 100,
                    only: Sequence[int] | None = None, ahead: Ahead | None = None,
                    turns: Turns | None = None,
                    drafting: drafts.Drafting | None = None) -> int:
    """Process up to `limit` stored messages; return how many were looked at.

    With a `pool` the mails are read in worker processes, else in this one. With `ahead`
    (the daemon's loop, on SQLite) the next batch is handed to the workers before this one
    is recorded, and taken from there at the next call. With `turns`, recording lets a
    fetch thread that waits to store write first. With `drafting` (the daemon's loop, on
    SQLite) the emails are queued as drafts and composed in the workers after each commit
    (daemon/outbound/drafts.py); those composed are written at the end of the call, all of
    them when no next batch is in hand.

    On SQLite (one writer at a time) the mails are picked by a read and checked again in the
    writing transaction, which ends every RECORD_SECONDS (another begins for the rest). On
    PostgreSQL, where several daemons share the work, they are
    claimed: the writing transaction begins first and locks them (FOR UPDATE SKIP LOCKED), so
    another daemon's pipeline passes them by instead of reading them too; the claim lasts
    while they are read (bounded by the workers' limits) and ends with the commit. Reading
    runs on every daemon at once; recording takes the pipeline's advisory lock, one daemon at
    a time, as the register's numbers are one sequence anyway (and counters taken in
    different orders by two batches would deadlock).
    """
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            rows = conn.execute(_pending(limit, only).with_for_update(skip_locked=True)).all()
            if not rows:
                return 0
            work, read_of = prepare(engine, cfg, store, rules, pool, rows)
            conn.execute(select(func.pg_advisory_xact_lock(PIPELINE_LOCK)))
            # Other daemons may have recorded mails since these were judged (a dossier this
            # batch replies to): the mails that may join a case are judged again.
            fault, _ = record(conn, cfg, rules, store, work, read_of, stale=True)
    else:
        if drafting is not None:
            drafting.recover(engine)
        rows, raws, reads = ahead.take() if ahead is not None else ((), [], None)
        if ahead is not None and reads is not None and pool is not None \
                and not pool.current(reads):
            # Handed to a pool since replaced (its workers died or hung), as was every batch
            # after it: none of them will be read there. They are picked and read again.
            ahead.batches.clear()
            rows, raws, reads = (), [], None
        if not rows:
            rows = _pick(engine, limit, only)
            raws = _raws(store, rows)
            reads = _submit(pool, raws)
        if not rows:
            if drafting is not None:
                drafting.write(engine, wait=True)
            return 0
        if ahead is not None and pool is not None and not ahead.batches:
            following = _pick(engine, limit, only, skip=[row.id for row in rows])
            raws_following = _raws(store, following)
            ahead.add((following, raws_following, _submit(pool, raws_following)))
        work, read_of = prepare(engine, cfg, store, rules, pool, rows, raws, reads)
        fault, left, stale = None, thread_order(work), False
        while left and fault is None:
            if turns is not None and stale:
                turns.wait_clear(timeout=RECORD_SECONDS * 10)
            jobs: list[drafts.Job] | None = [] if drafting is not None else None
            with engine.begin() as conn:
                fault, taken = record(conn, cfg, rules, store, left, read_of, stale=stale,
                                      turns=turns,
                                      until=time.monotonic() + RECORD_SECONDS, jobs=jobs)
            if taken:
                log.info("pipeline.committed", extra={"mails": taken})
            if drafting is not None and jobs:
                drafting.hand_over(jobs)  # committed: the workers compose them
            left, stale = left[taken:], True
        if drafting is not None:
            drafting.write(engine, wait=not (ahead is not None and ahead.ids()))
    if fault is not None:
        raise SystemicFault(fault)
    if engine.dialect.name == "postgresql":
        log.info("pipeline.committed", extra={"mails": len(work)})
    return len(work)


def _pick(engine: Engine, limit: int, only: Sequence[int] | None,
          skip: Sequence[int] = ()) -> list[Any]:
    """The next mails to process (not those of `skip`, already in hand), at most
    BATCH_BYTES of them (at least one)."""
    query = _pending(limit, only)
    if skip:
        query = query.where(messages.c.id.not_in(skip))
    with reading(engine) as conn:
        rows = conn.execute(query).all()
        conn.rollback()
    taken: list[Any] = []
    size = 0
    for row in rows:
        size += row.size or 0
        if taken and size > BATCH_BYTES:
            break
        taken.append(row)
    return taken


def _raws(store: MailStore, rows: Sequence[Any]) -> list[bytes | OSError | BadMessage]:
    """The stored bytes of each row, or why they cannot be had."""
    raws: list[bytes | OSError | BadMessage] = []
    for row in rows:
        try:
            raws.append(store.read(row.sha256))
        except OSError as err:  # retried; a lasting fault of the store trips the canary
            raws.append(err)
        except BadMessage as err:  # a damaged copy: the mail is quarantined with the reason
            raws.append(err)
    return raws


def _submit(pool: ReadPool | None, raws: list[bytes | OSError | BadMessage]) -> Reads | None:
    readable = [raw for raw in raws if isinstance(raw, bytes)]
    return pool.submit(readable) if pool is not None and readable else None


# The key of the PostgreSQL advisory lock recording takes (any number; vanthu's own).
PIPELINE_LOCK = 0x76616E7468750001


def _pending(limit: int, only: Sequence[int] | None = None) -> Any:
    """The oldest stored mails; with `only`, those of these ids (old mail being imported, in
    the order it was received: daemon.office.backfill)."""
    received = func.coalesce(messages.c.received_at, messages.c.stored_at)
    query = select(messages.c.id, messages.c.sha256, messages.c.stored_at, messages.c.attempts,
                   received.label("received_at"), messages.c.quiet, messages.c.size
                   ).where(messages.c.state == State.STORED).limit(limit)
    if only is not None:
        return query.where(messages.c.id.in_(only)).order_by(received, messages.c.id)
    return query.where(messages.c.quiet.is_(None)).order_by(messages.c.id)


Readings = dict[int, "Reading | BadMessage | Exception"]


def prepare(engine: Engine, cfg: Config, store: MailStore, rules: RuleSet,
            pool: ReadPool | None, rows: Sequence[Any],
            raws: list[bytes | OSError | BadMessage] | None = None,
            reads: Reads | None = None) -> tuple[list[Work], Readings]:
    """Read the mails of `rows` (in the pool's workers when given; `raws` and `reads`: already
    read from the store and handed to them) and judge them on a read snapshot: what each
    would do, by mail id, with what was read of it."""
    if raws is None:
        raws = _raws(store, rows)
    readable = [raw for raw in raws if isinstance(raw, bytes)]
    found: list[Reading | BadMessage | Exception | None] = []
    if pool is not None and readable:
        found.extend(pool.collect(reads) if reads is not None else pool.read_all(readable))
        if pool.broken is not None and all(result is None for result in found):
            # Not the mails' fault: they stay stored, the pipeline pauses and says why.
            raise SystemicFault(f"the reading workers cannot start: {pool.broken}")
    elif readable:
        roots = document_roots(cfg)
        found.extend(read_guarded(raw, cfg.limits, dkim_check(cfg), roots=roots)
                     for raw in readable)
    results = iter(found)
    readings: list[Reading | BadMessage | Exception | None] = [
        raw if isinstance(raw, Exception) else next(results) for raw in raws]
    read_of = {row.id: found for row, found in zip(rows, readings, strict=True)
               if found is not None}
    with reading(engine) as conn:
        work = [think(cfg, rules, conn, Stored(row.id, row.sha256, row.stored_at, row.attempts,
                                               row.received_at, bool(row.quiet)),
                      read_of[row.id])
                for row in rows if row.id in read_of]
        conn.rollback()
    return work, read_of


def record(conn: Connection, cfg: Config, rules: RuleSet, store: MailStore,
           work: Sequence[Work], read_of: Readings, stale: bool, turns: Turns | None = None,
           until: float | None = None,
           jobs: list[drafts.Job] | None = None) -> tuple[str | None, int]:
    """Apply the judged mails in the writing transaction `conn`, a savepoint each; return the
    system's fault that stopped it (the rest stay `stored`), or None, and how many of `work`
    were taken: all, unless the time `until` (time.monotonic) passed or a fetch thread waits
    to write (`turns`), which end the transaction after the mail in hand. `stale`: others
    may have recorded mails since the batch was judged. With `jobs`, the emails are queued
    as drafts, and the drafts of each mail recorded are added there (to be handed to the
    workers once the transaction commits)."""
    recorded = stale
    for taken, item in enumerate(thread_order(work)):
        if taken and ((until is not None and time.monotonic() > until)
                      or (turns is not None and turns.wanted())):
            return None, taken
        # Another daemon may have taken it meanwhile: only move it from `stored`.
        state = conn.scalar(_STATE, {"mail_pk": item.stored.pk})
        if state != State.STORED:
            continue
        if recorded and isinstance(item, Ready) and item.understanding.kind in _MAY_JOIN:
            # Judged before the earlier mails of this batch were recorded: a reply to a
            # dossier of the same batch finds its case only now.
            item = think(cfg, rules, conn, item.stored, read_of[item.stored.pk], before=item)
        if isinstance(item, Ready):
            try:
                mine: list[drafts.Job] | None = [] if jobs is not None else None
                with conn.begin_nested():
                    apply(conn, cfg, rules, item, mine)
                if jobs is not None and mine:
                    jobs += mine  # its savepoint stands: its drafts are the transaction's
                recorded = True
                continue
            except Exception as err:  # bulkhead: this mail's savepoint is rolled back alone
                log.exception("pipeline.apply_failed", extra={"mail": item.stored.pk})
                # A PermanentError (e.g. an email that can never be sent) is the mail's own:
                # no retry, no probe of the system.
                item = Failed(item.stored, f"{type(err).__name__}: {err}",
                              permanent=isinstance(err, PermanentError))
        if not item.permanent and (fault := canary(conn, cfg, rules, store)):
            # The system is at fault: this mail and the rest stay `stored`, untouched.
            return f"{fault} (last mail: {item.error})", taken
        shunt(conn, cfg, item)
    return None, len(work)


# Kinds a mail judged outside any case may leave once its thread is found (a reply).
_MAY_JOIN = frozenset({Kind.DOCUMENT, Kind.DOSSIER, Kind.OTHER})


def thread_order(work: Sequence[Work]) -> list[Work]:
    """The batch in the order it arrived, except that a mail comes after the mails of the same
    batch it answers (In-Reply-To/References): a reply fetched with its dossier, even before
    it, then joins the dossier's case. Mails of a cycle of answers keep their order."""
    position = {item.mail.message_id: at for at, item in enumerate(work)
                if isinstance(item, Ready) and item.mail.message_id}
    answers = [{position[i] for i in answered_ids(item.mail) if i in position} - {at}
               if isinstance(item, Ready) else set() for at, item in enumerate(work)]
    order: list[int] = []
    placed: set[int] = set()
    pending = list(range(len(work)))
    while pending:
        first = next((at for at in pending if answers[at] <= placed), pending[0])
        pending.remove(first)
        order.append(first)
        placed.add(first)
    return [work[at] for at in order]


CANARY = Path(__file__).parent / "samples" / "017.eml"  # a dossier: receipt, PDF, case, forward


def canary(conn: Connection, cfg: Config, rules: RuleSet, store: MailStore) -> str | None:
    """Take a known-good sample mail through the whole of `apply` in a savepoint that is then
    rolled back; return what failed, or None when the system works and a failing mail is
    failing for reasons of its own.

    Called when a mail fails with an error that is not about its content. If the sample
    fails too, the fault is the system's (an identity vanthu cannot compose with, a full disk,
    a broken database, an unreadable store): quarantining mail after mail would be wrong.
    """
    try:
        os.listdir(store.root)
        sample = read_guarded(CANARY.read_bytes(), cfg.limits)
        if isinstance(sample, BadMessage):
            return f"the built-in sample mail cannot be read: {sample}"
        # Its registration, case and emails are rolled back: not logged as news.
        with rehearsal():
            return _canary_apply(conn, cfg, rules, sample, utcnow())
    except Exception as err:  # anything at all: this is the probe for faults of the system
        return f"{type(err).__name__}: {err}"


def _canary_apply(conn: Connection, cfg: Config, rules: RuleSet, sample: Reading,
                  now: datetime) -> str | None:
    with conn.begin_nested() as savepoint:
        pk = new_id(conn.execute(insert(messages).values(
            sha256=f"canary-{now.timestamp()}", size=0, mailbox="", state=State.STORED,
            stored_at=now, updated_at=now, attempts=0)))
        item = think(cfg, rules, conn, Stored(pk, "0" * 64, now, 0, now), sample)
        if isinstance(item, Ready):
            apply(conn, cfg, rules, item)
        savepoint.rollback()
    return item.error if isinstance(item, Failed) else None


def backlog(engine: Engine) -> tuple[int, int]:
    """How many mails are stored in all, and how many still wait to be processed or sent."""
    with reading(engine) as conn:
        total = conn.scalar(select(func.count()).select_from(messages)) or 0
        busy = conn.scalar(select(func.count()).select_from(messages).where(
            messages.c.state.in_([State.STORED, State.ROUTED]))) or 0
    return int(total), int(busy)


# The steps of `apply`, in the order it takes them. Each runs in the caller's transaction (the
# mail's savepoint): a crash or an error inside any of them undoes all of them together.


def apply(conn: Connection, cfg: Config, rules: RuleSet, item: Ready,
          jobs: list[drafts.Job] | None = None) -> None:
    """Hold, register, join a case, queue the emails and record who received the mail; then
    move it on from `stored` with what the pure stages found. With `jobs`, the emails are
    queued as drafts, added there to be composed in the workers (daemon/outbound/drafts.py)."""
    found = findings(item)
    quiet = item.stored.quiet  # old mail imported: registered, nothing sent (backfill)
    if not quiet and (directive := directives.take(conn, cfg, rules, item)) is not None:
        finish(conn, item.stored.pk, State.ROUTED if directive.queued else State.DONE, **found)
        return
    if held := held_for(conn, item):
        finish(conn, item.stored.pk, State.QUARANTINED,
               last_error="; ".join(reason for _, reason in held),
               hold_kinds=sorted({kind.value for kind, _ in held}), **found)
        log.warning("mail.quarantined", extra={"mail": item.stored.pk, "reason": held[0][1]})
        return
    filed = register_mail(conn, cfg, rules, item)
    if isinstance(filed, Duplicate):  # linked to its first entry and flagged, nothing sent
        finish(conn, item.stored.pk, State.DONE, last_error=f"duplicate: {filed.why}", **found)
        log.info("mail.duplicate", extra={"mail": item.stored.pk, "entry": filed.of})
        return
    if filed is not None and not quiet:
        assign(conn, filed, item.decision)
    joined = join_case(conn, cfg, rules, item) if filed is None and not quiet else None
    case_id = filed.case_id if filed else joined.case_id if joined else None
    ctx = context(item, filed, joined)
    actions = joined.actions if joined else item.decision.actions
    if filed is not None and filed.case_id is not None and not quiet:  # complete or not
        ctx, actions = check_dossier(conn, cfg, rules, item.mail, ctx, filed.case_id, actions)
    queued = queue_emails(conn, cfg, rules, item, ctx, case_id, actions, jobs)
    if quiet:
        backfill.imported(conn, case_id)
    else:
        record_handover(conn, item.stored.pk, actions)
    finish(conn, item.stored.pk, State.ROUTED if queued else State.DONE, case_id=case_id,
           **found)


def findings(item: Ready) -> dict[str, Any]:
    """The columns that keep what the pure stages made of a mail, whatever happens to it: its
    kind, understanding, every rule's trace and action, its tags and the folder to move it to."""
    decision = item.decision
    moves = [e.folder for e in decision.effects if isinstance(e, Move)]
    return {
        "kind": item.understanding.kind.value,
        "understanding": item.understanding.as_json(),
        "decision": {"rules": [t.__dict__ for t in decision.rules],
                     "actions": decision.as_json()},
        "tags": [t for e in decision.effects if isinstance(e, Tagging) for t in e.tags] or None,
        "move_to": moves[-1] if moves else None,
    }


# Built once (daemon/db.py says why): the state of one mail, and moving one mail on.
_STATE = select(messages.c.state).where(messages.c.id == bindparam("mail_pk"))
_FINISH = update(messages).where(messages.c.id == bindparam("mail_pk"))


def finish(conn: Connection, pk: int, state: State, **values: Any) -> None:
    """Move a mail to `state`, with the columns that go with it."""
    conn.execute(_FINISH, {"mail_pk": pk, "state": state, "updated_at": utcnow(), **values})


def shunt(conn: Connection, cfg: Config, item: Failed) -> None:
    """A failed mail is tried again later; after `[limits] max_attempts`, or at once when the
    fault is its own, it is quarantined for a human with the error."""
    attempts = item.stored.attempts + 1
    if item.permanent or attempts >= cfg.limits.max_attempts:
        finish(conn, item.stored.pk, State.QUARANTINED, attempts=attempts, last_error=item.error,
               hold_kinds=[HoldKind.UNREADABLE.value])
        log.warning("mail.quarantined", extra={"mail": item.stored.pk, "reason": item.error})
    else:
        finish(conn, item.stored.pk, State.STORED, attempts=attempts, last_error=item.error)


def hold(conn: Connection, item: Ready) -> list[str]:
    """Why the mail is held for the clerk instead of handled (unsafe content, a rule's
    `quarantine`, a stranger writing in a case); empty when it goes on."""
    return [reason for _, reason in held_for(conn, item)]


def held_for(conn: Connection, item: Ready) -> list[tuple[HoldKind, str]]:
    """`hold`'s reasons, each with its class."""
    und = item.understanding
    held = [*und.holds,
            *((HoldKind.RULE, e.reason) for e in item.decision.effects if isinstance(e, Hold))]
    if not held and und.kind is Kind.REPLY and und.case_ref and (
            stranger := _stranger_to_case(conn, und, item.mail)):
        held.append((HoldKind.STRANGER, stranger))
    if held and item.clerk:
        log.warning("mail.hold_lifted", extra={"mail": item.stored.pk,
                                               "actor": item.clerk["by"], "held_for": held[0][1]})
        return []  # the clerk looked at it and vouched for it: `vanthu quarantine release`
    return held


@dataclass(frozen=True)
class Filed:
    """A document or dossier written in a register, as its emails tell it: the entry, and for
    a dossier its case, procedure, appointment date and queue slot."""

    entry_id: int
    book: Book
    number: int
    year: int
    case_id: int | None = None
    case_code: str | None = None
    procedure: Procedure | None = None
    appointment: date | None = None
    queue: str | None = None


@dataclass(frozen=True)
class Duplicate:
    """The same document again: linked to its first register entry `of`, never numbered."""

    of: int
    why: str


def register_mail(conn: Connection, cfg: Config, rules: RuleSet,
                  item: Ready) -> Filed | Duplicate | None:
    """Give a document or dossier its số đến; a dossier also its queue slot, appointment date
    and case. None for the kinds that are not registered."""
    und, stored = item.understanding, item.stored
    if und.kind not in REGISTERED_KINDS:
        return None
    calendar = cfg.calendar.work_calendar()
    procedure = next((p for p in rules.procedures if p.id == item.decision.procedure), None)
    received = stored.received_at.astimezone(cfg.agency.tz)
    settings = replace(cfg.calendar, cutoff=procedure.cutoff) \
        if procedure and procedure.cutoff else cfg.calendar  # the procedure's own cut-off
    slot = cases_module.take_slot(conn, settings, calendar, received) \
        if und.kind is Kind.DOSSIER else None
    appointment = cases_module.appointment(
        settings, calendar, received, procedure.days, slot.day
    ) if procedure and slot else None
    reg = register(conn, cfg.agency, stored.pk, item.mail, und, stored.received_at, procedure,
                   appointment, trust_of(und, item.mail, cfg.security.trusted_domains),
                   queue=str(slot) if slot else None)
    if reg.duplicate_of is not None:
        return Duplicate(reg.duplicate_of, reg.duplicate_why)
    assert reg.entry_id is not None and reg.number is not None  # a new entry, not a duplicate
    queue = str(slot) if slot and reg.case_id is not None else None
    log.info("mail.registered", extra={"mail": stored.pk, "book": reg.book,
                                       "number": reg.number, "year": reg.year})
    return Filed(reg.entry_id, reg.book, reg.number, reg.year, reg.case_id, reg.case_code,
                 procedure, appointment, queue)


def assign(conn: Connection, filed: Filed, decision: Decision) -> None:
    """A rule's `assign`: the lead department, cooperating ones and the deadline, on the
    register entry and on the case."""
    for assignment in (e for e in decision.effects if isinstance(e, Assignment)):
        register_module.record_assignment(conn, filed.entry_id, assignment)
        if filed.case_id is not None:
            cases_module.set_handler(conn, filed.case_id, assignment.lead, assignment.deadline)


@dataclass(frozen=True)
class Joined:
    """A reply in a case: the case (its id None if it is gone) and the actions, handler
    added."""

    case_id: int | None
    code: str
    actions: tuple[Action, ...]


def join_case(conn: Connection, cfg: Config, rules: RuleSet, item: Ready) -> Joined | None:
    """A reply in a case (from its applicant: `hold` saw to that) restarts the clock, and its
    forward goes to whoever handles the case now. None when the mail is no such reply."""
    und = item.understanding
    if und.kind is not Kind.REPLY or not und.case_ref:
        return None
    actions = list(item.decision.actions)
    case_id = case_id_of(conn, und.case_ref)
    if case_id is not None:
        cases_module.resume(conn, case_id,
                            item.stored.received_at.astimezone(cfg.agency.tz).date(),
                            cfg.calendar.work_calendar(), item.mail.sender.email)
        actions = _to_handler(conn, rules, case_id, actions)
    return Joined(case_id, und.case_ref, tuple(actions))


def context(item: Ready, filed: Filed | None, joined: Joined | None) -> compose.Context:
    """What the emails of a mail say about it: its register entry (a dossier's case,
    appointment and slot too), or the case it replies in."""
    if filed is None:
        return compose.Context(sha256=item.stored.sha256, received_at=item.stored.received_at,
                               stored_at=item.stored.stored_at,
                               case_code=joined.code if joined else None)
    return compose.Context(sha256=item.stored.sha256, received_at=item.stored.received_at,
                           stored_at=item.stored.stored_at, book=filed.book,
                           number=filed.number, year=filed.year,
                           case_code=filed.case_code, procedure=filed.procedure,
                           appointment=filed.appointment, queue=filed.queue)


def queue_emails(conn: Connection, cfg: Config, rules: RuleSet, item: Ready,
                 ctx: compose.Context, case_id: int | None,
                 actions: Sequence[Action], jobs: list[drafts.Job] | None = None) -> int:
    """Compose and queue the email of each action (with `jobs`: queue it as a draft, and add
    the mail's drafts there as one job); in a case, thread it and record the event. Return
    how many were queued: none for old mail imported quietly."""
    if item.stored.quiet:
        return 0
    allowed = Allowed.of(rules, cfg)
    answering = Answering.of_mail(item.mail, item.understanding, item.stored.stored_at,
                                  case_id=case_id)
    queued = 0
    mine: list[tuple[int, bytes]] = []  # (outbox row, makings) of each draft
    # Last gate before composing, after every step that adds recipients (the case's handler):
    # confidential content leaves only as a notice.
    for action in merge([announced(a, item.understanding) for a in actions]):
        purpose = Purpose(action.action)
        # Whether a sender is acknowledged is the recipient policy's: authenticated, not spam,
        # within the daily reply limits (daemon/outbound/recipients.py).
        if purpose is Purpose.ACKNOWLEDGE and (why := refusal(
                conn, cfg, purpose=Purpose.ACKNOWLEDGE, address=action.to[0], allowed=allowed,
                answering=answering)):
            log.info("ack.skipped", extra={"mail": item.stored.pk, "why": why})
            continue
        if jobs is not None:
            header_id = compose.message_id(cfg, ctx.sha256, action.action)
            made = drafts.makings(ctx, action, item.understanding)
            mine.append((enqueue_draft(
                conn, cfg, header_id=header_id, purpose=purpose, recipients=action.to,
                allowed=allowed, draft=made, message_pk=item.stored.pk, answering=answering),
                made))
        else:
            email = compose.COMPOSERS[action.action](cfg, ctx, action, item.mail,
                                                     item.understanding)
            header_id = str(email["Message-ID"])
            enqueue(conn, cfg, email=email, purpose=purpose, recipients=action.to,
                    allowed=allowed, message_pk=item.stored.pk, answering=answering)
        if case_id is not None:
            cases_module.link_thread(conn, header_id, case_id)
            cases_module.event(conn, case_id, EVENT_OF_ACTION[purpose], "vanthu",
                               {"to": list(action.to)})
        queued += 1
    if jobs is not None and mine:
        jobs.append(drafts.Job(item.mail, tuple(mine)))
    return queued


def record_handover(conn: Connection, pk: int, actions: Sequence[Action]) -> None:
    """Register columns 7-8: who received the mail (every action but the acknowledgement),
    and when."""
    register_module.record_handover(conn, pk, [
        a for action in actions if action.action != Purpose.ACKNOWLEDGE for a in action.to])


def _stranger_to_case(conn: Connection, und: Understanding, mail: ParsedMail) -> str | None:
    """Why a mail claiming to belong to a case may not join it, or None when it may.

    A case code in a subject or a Message-ID in References is easy to copy: only the case's
    applicant (the address the dossier came from) joins it, and not when its own domain says
    the mail is forged. Anyone else is held for the clerk, who can attach it by hand.
    """
    applicant = conn.scalar(select(cases.c.applicant_email).where(cases.c.code == und.case_ref))
    if und.authenticated is False:
        return (f"Thư trả lời hồ sơ {und.case_ref} không qua được kiểm tra xác thực người gửi "
                f"({mail.sender.email or 'không có địa chỉ'}): chờ văn thư kiểm tra")
    if not applicant or mail.sender.email != applicant.lower():
        return (f"Thư trả lời hồ sơ {und.case_ref} gửi từ "
                f"{mail.sender.email or 'không có địa chỉ'}, không phải từ người nộp hồ sơ: chờ "
                "văn thư kiểm tra")
    return None


def _to_handler(conn: Connection, rules: RuleSet, case_id: int,
                actions: list[Action]) -> list[Action]:
    """Add the case's lead department to the forward of a reply in that case."""
    lead = conn.scalar(select(cases.c.lead_department).where(cases.c.id == case_id))
    unit = rules.departments.get(lead) if lead else None
    if unit is None:
        return actions
    out = []
    for action in actions:
        if action.action == Purpose.FORWARD and unit.email not in action.to:
            action = Action(Purpose.FORWARD, (*action.to, unit.email), action.note)
        out.append(action)
    if not any(a.action == Purpose.FORWARD for a in out):
        out.append(Action(Purpose.FORWARD, (unit.email,), f"chuyển {unit.name} đang giải quyết"))
    return out
