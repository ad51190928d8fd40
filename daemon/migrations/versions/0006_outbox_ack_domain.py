"""outbox.ack_domain: "domain|YYYY-MM-DD" of an automatic reply's ack_key, indexed, so the
daily count of replies to a domain is a lookup instead of a scan of every reply; filled in
for the rows already there.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _domain_key(key: str) -> str:
    # The same as daemon.outbound.recipients.domain_key, kept here: a revision must not
    # change when the code does.
    address, _, day = key.rpartition("|")
    return f"{address.rpartition('@')[2]}|{day}"


def upgrade() -> None:
    op.add_column("outbox", sa.Column("ack_domain", sa.String(length=300), nullable=True))
    op.create_index(op.f("ix_outbox_ack_domain"), "outbox", ["ack_domain"])
    outbox = sa.table("outbox", sa.column("id", sa.Integer()),
                      sa.column("ack_key", sa.String()), sa.column("ack_domain", sa.String()))
    conn = op.get_bind()
    rows = conn.execute(sa.select(outbox.c.id, outbox.c.ack_key)
                        .where(outbox.c.ack_key.is_not(None))).all()
    if rows:
        conn.execute(outbox.update().where(outbox.c.id == sa.bindparam("row_id")),
                     [{"row_id": row.id, "ack_domain": _domain_key(row.ack_key)}
                      for row in rows])


def downgrade() -> None:
    op.drop_index(op.f("ix_outbox_ack_domain"), table_name="outbox")
    op.drop_column("outbox", "ack_domain")
