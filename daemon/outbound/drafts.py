"""Drafts: the emails of a recorded mail, composed in the worker processes after the
transaction that recorded it.

Recording (daemon/pipeline.py) runs in the daemon's own process, one writer at a time. What a
mail causes is decided there: the register's numbers, the case, who gets which email, what
the recipient policy allows. With a `Drafting` (the daemon's loop on SQLite) each email is
queued there as an outbox row in state `draft` with its makings (`makings`: the Context, the
Action and the Understanding it is composed from), committed with the registration; the row
counts at once towards the daily reply limits, like any other. After the commit the workers
compose and `check` each one (`compose_job`: the cover note, the receipt slip's PDF, the
attachments), and a second, short transaction puts the bytes in (`outbox.fill`, which proves
the header section again in the daemon's process) and makes the rows pending for the sender.
So the daemon's process records the next mails while the workers compose.

Nothing is lost and nothing is made twice: a draft whose worker was killed, or whose daemon
stopped or died between the two transactions, stays a draft on disk and is composed again
from its makings and the stored copy of its mail (`Drafting.recover`); only a draft is
filled, so a row gets its bytes once. A draft that cannot be composed fails with the reason
(`outbox.spoil`), like an email the server refused: `vanthu status` shows it.

Without a Drafting (the CLI, the canary, PostgreSQL, where several daemons share the work)
the pipeline composes in its own transaction as before.
"""

from __future__ import annotations

import functools
import logging
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, select

from daemon.config import Config, LimitsConfig
from daemon.db import messages, outbox
from daemon.errors import BadMessage
from daemon.intake.store import MailStore
from daemon.intake.workers import ReadPool, Reads
from daemon.models import Action, OutboxState, ParsedMail, Understanding
from daemon.outbound import compose
from daemon.outbound import outbox as outbox_module
from daemon.outbound.recipients import Purpose
from daemon.understand import read

log = logging.getLogger("vanthu.drafts")

# The form of `makings`; a draft of another form (written by another vanthu) is failed with
# the reason rather than guessed at.
FORM = 1
# Drafts left by an earlier life of the daemon taken up at once, at most.
RECOVER_AT_ONCE = 200


def makings(ctx: compose.Context, action: Action, und: Understanding) -> bytes:
    """What a draft is composed from, as kept on its row."""
    return pickle.dumps((FORM, ctx, action, und), protocol=pickle.HIGHEST_PROTOCOL)


def _unpack(data: bytes) -> tuple[compose.Context, Action, Understanding]:
    found = pickle.loads(data)  # written by vanthu itself, in its own database
    if not isinstance(found, tuple) or len(found) != 4 or found[0] != FORM:
        raise ValueError("a draft of another form (another version of vanthu wrote it)")
    _, ctx, action, und = found
    return ctx, action, und


@dataclass(frozen=True)
class Job:
    """One mail's drafts, for a worker: the mail as read (or its stored copy, read again in
    the worker after a restart) and each draft's row id with its makings."""

    mail: ParsedMail | bytes
    drafts: tuple[tuple[int, bytes], ...]


def compose_job(cfg: Config, job: Job, limits: LimitsConfig) -> list[tuple[int, bytes | str]]:
    """In a worker: compose and `check` each draft of `job`. For each row id, the email's
    bytes, or why it could not be made (that draft's own failure: the others go on)."""
    mail = read(job.mail, limits).mail if isinstance(job.mail, bytes) else job.mail
    out: list[tuple[int, bytes | str]] = []
    for row_id, data in job.drafts:
        try:
            ctx, action, und = _unpack(data)
            email = compose.COMPOSERS[action.action](cfg, ctx, action, mail, und)
            out.append((row_id, outbox_module.check(cfg, email, Purpose(action.action),
                                                    list(dict.fromkeys(action.to)))))
        except Exception as err:  # bulkhead: composing runs on hostile content
            out.append((row_id, f"{type(err).__name__}: {err}"))
    return out


@dataclass
class Drafting:
    """The daemon's drafts on their way through the workers. `jobs` is filled by the
    pipeline's transaction; `hand_over` (after its commit) gives them to the workers; `write`
    puts what they made into the outbox."""

    cfg: Config
    pool: ReadPool
    store: MailStore
    out: list[tuple[list[Job], Reads]] = field(default_factory=list)
    # Rows handed over and not written yet: not taken up again by `recover`.
    in_hand: set[int] = field(default_factory=set)

    def hand_over(self, jobs: Sequence[Job]) -> None:
        """Give committed drafts to the workers."""
        if not jobs:
            return
        work = functools.partial(compose_job, self.cfg)
        self.out.append((list(jobs), self.pool.submit(list(jobs), work=work)))
        self.in_hand.update(row for job in jobs for row, _ in job.drafts)

    def busy(self) -> bool:
        return bool(self.out)

    def write(self, engine: Engine, wait: bool) -> int:
        """Write what the workers made, in the order handed over: every batch when `wait`,
        else the batches already done. Return how many rows were written (filled or failed)."""
        done: list[tuple[Job, Any]] = []
        while self.out and (wait or self.pool.ready(self.out[0][1])):
            jobs, reads = self.out.pop(0)
            done += zip(jobs, self.pool.collect(reads), strict=True)
        if not done:
            return 0
        written = 0
        try:
            with engine.begin() as conn:
                for job, result in done:
                    if result is None:  # its pool was killed: taken up again by `recover`
                        continue
                    if isinstance(result, BadMessage):
                        result = [(row, "composing took too long, or its worker died")
                                  for row, _ in job.drafts]
                    for row, made in result:
                        if isinstance(made, bytes):
                            outbox_module.fill(conn, self.cfg, row, made)
                        else:
                            outbox_module.spoil(conn, row, "the email could not be composed: "
                                                + made)
                        written += 1
        finally:  # written, or still drafts on disk for `recover` to take up
            for job, _ in done:
                self.in_hand.difference_update(row for row, _ in job.drafts)
        return written

    def recover(self, engine: Engine) -> int:
        """Hand over again the drafts on disk that no worker has: left by an earlier life of
        the daemon (stopped or killed between its two transactions) or by a killed pool.
        Return how many."""
        with engine.connect() as conn:
            rows = conn.execute(
                select(outbox.c.id, outbox.c.draft, messages.c.sha256)
                .join(messages, messages.c.id == outbox.c.message_id, isouter=True)
                .where(outbox.c.state == OutboxState.DRAFT)
                .order_by(outbox.c.id).limit(RECOVER_AT_ONCE + len(self.in_hand))).all()
            conn.rollback()
        by_mail: dict[str, list[tuple[int, bytes]]] = {}
        broken: list[tuple[int, str]] = []
        for row in rows:
            if row.id in self.in_hand:
                continue
            if row.sha256 is None or row.draft is None:
                broken.append((row.id, "a draft without its mail or its makings"))
                continue
            by_mail.setdefault(row.sha256, []).append((row.id, row.draft))
        jobs: list[Job] = []
        for sha256, drafts in by_mail.items():
            try:
                jobs.append(Job(self.store.read(sha256), tuple(drafts)))
            except OSError:  # the store is failing: tried again at the next batch
                continue
            except BadMessage as err:  # a damaged copy: nothing to compose from
                broken += [(row_id, f"its mail's stored copy is damaged: {err}")
                           for row_id, _ in drafts]
        if broken:
            with engine.begin() as conn:
                for row_id, why in broken:
                    outbox_module.spoil(conn, row_id, "the email could not be composed: " + why)
        if jobs:
            log.warning("drafts.recovered", extra={"emails": sum(len(j.drafts) for j in jobs)})
        self.hand_over(jobs)
        return sum(len(j.drafts) for j in jobs)
