"""What is wrong right now, as `vanthu status` and the digest both tell it: a watched folder
whose last error is newer than its last successful fetch, and the faults of the system a daemon
is living with. Reads only; the rule is decided here once.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, select

from daemon.db import checkpoints, health


def mailbox_error(box: Any) -> str | None:
    """The last error of a watched folder (a `checkpoints` row) while it is newer than the last
    successful fetch, or None: an error a later fetch got past is history, not a problem."""
    if not box.last_error:
        return None
    if box.last_fetch_at is None:
        return str(box.last_error)
    if box.last_error_at is not None and box.last_error_at > box.last_fetch_at:
        return str(box.last_error)
    return None


def mailboxes(conn: Connection) -> list[Any]:
    """Every watched folder's checkpoint: last UID, last fetch, last error."""
    return list(conn.execute(select(checkpoints)).all())


def faults(conn: Connection) -> list[Any]:
    """The faults of the system being lived with (e.g. the pipeline paused), by component."""
    return list(conn.execute(select(health).order_by(health.c.component)).all())
