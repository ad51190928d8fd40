"""Backlogs on the fetch side: which mail is old (`[intake] start`), and how far a catch-up is.

Old mail is stored like any other (bytes, row, location, checkpoint) in the state `archived`,
which the pipeline never takes: no acknowledgement, forward, registration or digest line for
mail the agency handled before vanthu watched the folder. "now" means the first start on this
database for the folder, recorded once on its checkpoint row (`started_at`), so a daemon
stopped over a weekend still processes the weekend's mail in full when it starts again.

A catch-up's progress (mails found by its SEARCH, mails stored) is written on the folder's
checkpoint row by the UPDATE that moves the checkpoint, in the batch's own transaction, so
`vanthu status` (another process) reads it; the log gets one `intake.backlog` line at most
every `LOG_SECONDS`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select

from daemon.config import IntakeConfig
from daemon.db import checkpoints, reading, utcnow

log = logging.getLogger("vanthu.fetch")

LOG_SECONDS = 10.0  # at most one `intake.backlog` line this often while a backlog is fetched


def old_before(engine: Engine, intake: IntakeConfig | None, mailbox: str,
               folder: str) -> datetime | None:
    """The moment before which mail received in this folder is old; None when none is (start
    "all", no intake setting, or a checkpoint row of an earlier build without `started_at`)."""
    if intake is None or intake.start == "all":
        return None
    if intake.since is not None:
        return intake.since
    with reading(engine) as conn:
        started: datetime | None = conn.scalar(select(checkpoints.c.started_at).where(
            checkpoints.c.mailbox == mailbox, checkpoints.c.folder == folder))
    return started


def is_old(received_at: datetime, before: datetime | None) -> bool:
    """Whether a mail received at `received_at` (timezone-aware) is old mail."""
    return before is not None and received_at < before


@dataclass
class CatchUp:
    """The progress of one catch-up of one folder: `total` mails found by its SEARCH."""

    ctx: dict[str, str]
    total: int
    done: int = 0
    since: datetime = field(default_factory=utcnow)
    _began: float = field(default_factory=time.monotonic)
    _logged: float = field(default_factory=time.monotonic)

    def step(self, count: int) -> dict[str, object]:
        """`count` more mails are being stored: the checkpoint row's progress columns to write
        with them (and the log line, when it is due)."""
        self.done = min(self.done + count, self.total)
        now = time.monotonic()
        if now - self._logged >= LOG_SECONDS or (self.done == self.total
                                                 and now - self._began >= LOG_SECONDS):
            self._logged = now
            elapsed = max(now - self._began, 1e-6)
            rate = self.done / elapsed
            log.info("intake.backlog", extra={
                **self.ctx, "fetched": self.done, "total": self.total,
                "rate": round(rate, 1),
                "left_seconds": round((self.total - self.done) / rate) if rate else None})
        return {"backlog_total": self.total, "backlog_fetched": self.done,
                "backlog_since": self.since, "backlog_at": utcnow()}
