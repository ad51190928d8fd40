"""outbox.journal_seq: the last entry of the sender's journal (a file beside a SQLite
database) folded into the row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("journal_seq", sa.Integer(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "journal_seq")
