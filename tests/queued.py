"""Outbox rows written straight into the tables, as a test (or an earlier build) sets them up."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, insert

from daemon.db import new_id, outbox, outbox_bodies


def queue_raw(conn: Connection, raw: bytes, **values: Any) -> int:
    """An outbox row with these column values and the email's bytes `raw`; its id."""
    row = new_id(conn.execute(insert(outbox).values(**values)))
    conn.execute(insert(outbox_bodies).values(outbox_id=row, raw=raw))
    return int(row)
