"""Alembic's environment for vanthu: always online, on the connection vanthu hands over.

vanthu runs its migrations itself (`vanthu db upgrade`, daemon.migrations.upgrade) inside a
transaction it has opened on its own engine, so there is no alembic.ini and no URL here. On
SQLite, changes that ALTER TABLE cannot make are written in batch mode (copy the table, move
the rows, swap it in).
"""

from __future__ import annotations

from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy import Connection

from daemon.db import UTCDateTime, metadata


def _render_item(kind: str, obj: Any, _autogen: AutogenContext) -> str | Literal[False]:
    """Autogenerate writes our timestamp type as what it creates, so a revision does not
    depend on daemon.db's code of the day."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("vanthu's migrations run on a connection given by daemon.migrations "
                       "(`vanthu db upgrade`), not from the alembic command line")
context.configure(connection=connection, target_metadata=metadata, compare_type=True,
                  render_as_batch=connection.dialect.name == "sqlite", render_item=_render_item)
with context.begin_transaction():
    context.run_migrations()
