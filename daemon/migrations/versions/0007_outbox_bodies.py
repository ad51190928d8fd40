"""outbox_bodies: the bytes of each email in a table of their own, written once, instead of in
the outbox row that every claim and outcome writes again; the bytes of the rows already there
are moved.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_bodies",
        sa.Column("outbox_id", sa.Integer(), nullable=False),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"]),
        sa.PrimaryKeyConstraint("outbox_id"),
    )
    # A draft's row held b"" until it was filled: it has no body yet.
    op.execute("INSERT INTO outbox_bodies (outbox_id, raw) "
               "SELECT id, raw FROM outbox WHERE length(raw) > 0")
    op.drop_column("outbox", "raw")


def downgrade() -> None:
    op.add_column("outbox", sa.Column("raw", sa.LargeBinary(), nullable=False,
                                      server_default=""))
    # The default fills in text on SQLite; a draft's row held an empty blob.
    outbox = sa.table("outbox", sa.column("raw", sa.LargeBinary()))
    op.get_bind().execute(outbox.update().values(raw=b""))
    op.execute("UPDATE outbox SET raw = (SELECT raw FROM outbox_bodies "
               "WHERE outbox_bodies.outbox_id = outbox.id) "
               "WHERE id IN (SELECT outbox_id FROM outbox_bodies)")
    op.drop_table("outbox_bodies")
