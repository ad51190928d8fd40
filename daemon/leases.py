"""Who holds what, across daemons sharing one database.

Each running daemon has an `Owner` name: host, process id and the process's start time. A
lease ("mailbox:NAME") or a claim on an outbox row names its owner and an expiry. Another
daemon may take it over when it has expired, or at once when the owner is a process of this
same machine that no longer runs (a crashed daemon restarted under systemd gets its work back
without waiting for the expiry). Owners on other machines are never guessed dead: only their
expiry frees their leases, so the expiry must be longer than any one piece of work under it.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import Connection, delete, select, update

from daemon.db import insert_new, leases, utcnow

log = logging.getLogger("vanthu.leases")


def _start_time(pid: int) -> str | None:
    """The start time of process `pid` in clock ticks since boot (field 22 of
    /proc/PID/stat), None when there is no such process or no /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces or parentheses itself.
    fields = stat[stat.rfind(b")") + 2:].split()
    return fields[19].decode() if len(fields) > 19 else None


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: str  # the process's start time: a reused pid is another owner

    def __str__(self) -> str:
        return f"{self.host}/{self.pid}/{self.started}"

    @classmethod
    def parse(cls, text: str) -> Owner | None:
        parts = text.rsplit("/", 2)
        if len(parts) != 3 or not parts[1].isdigit():
            return None
        return cls(parts[0], int(parts[1]), parts[2])

    def gone(self) -> bool:
        """True only when certain: the owner is on this machine and its process has ended
        (or the pid now belongs to a process started at another time)."""
        if self.host != socket.gethostname():
            return False
        return _start_time(self.pid) != self.started


@cache
def me() -> Owner:
    """This process as an owner (computed once; a forked worker keeps its parent's name, and
    workers never hold leases)."""
    pid = os.getpid()
    return Owner(socket.gethostname(), pid, _start_time(pid) or "0")


def free(owner: str | None, expires_at: datetime | None, now: datetime) -> bool:
    """Whether a lease or claim held by `owner` until `expires_at` may be taken now."""
    if owner is None or expires_at is None or expires_at <= now or owner == str(me()):
        return True
    parsed = Owner.parse(owner)
    return parsed is not None and parsed.gone()


def acquire(conn: Connection, name: str, seconds: float, now: datetime | None = None) -> str | None:
    """Take or renew the lease `name` for `seconds`, in the caller's transaction (on SQLite a
    writing transaction holds the write lock from its start, so two daemons cannot both take
    it; on PostgreSQL the lease's row is locked FOR UPDATE, and a lease two daemons make at
    once is made by one: ON CONFLICT DO NOTHING). Return None when this daemon holds it now,
    else the owner that holds it."""
    now = now or utcnow()
    mine = str(me())
    expires = now + timedelta(seconds=seconds)
    held = _holder(conn, name)
    if held is None:
        if insert_new(conn, leases, name=name, owner=mine, expires_at=expires,
                      acquired_at=now):
            return None
        # Another daemon made the lease meanwhile (PostgreSQL: its transaction has ended).
        held = _holder(conn, name)
        if held is None:  # and gave it up already: this daemon tries again next time
            return "another daemon (the lease changed hands while being taken)"
    if held.owner != mine and not free(held.owner, held.expires_at, now):
        return str(held.owner)
    values = {"owner": mine, "expires_at": expires}
    if held.owner != mine:
        values["acquired_at"] = now
        log.warning("lease.taken_over", extra={"lease": name, "from": held.owner})
    conn.execute(update(leases).where(leases.c.name == name).values(**values))
    return None


def _holder(conn: Connection, name: str) -> Any:
    """The lease's row (owner, expiry), locked until the transaction ends; None if there is
    none. On SQLite the writing transaction already excludes every other writer."""
    return conn.execute(select(leases.c.owner, leases.c.expires_at)
                        .where(leases.c.name == name).with_for_update()).first()


def release(conn: Connection, name: str) -> None:
    """Give up the lease `name` if this daemon holds it."""
    conn.execute(delete(leases).where(leases.c.name == name, leases.c.owner == str(me())))
