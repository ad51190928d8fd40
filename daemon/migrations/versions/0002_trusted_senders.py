"""Hold classes and trusted senders: messages.hold_kinds (why a held mail is held, by class)
and the table trusted_senders (`vanthu quarantine release --trust-sender`, `untrust`).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("messages", sa.Column("hold_kinds", sa.JSON(), nullable=True))
    op.create_table("trusted_senders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("domain", sa.String(length=255), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("trusted_by", sa.Text(), nullable=False),
        sa.Column("trusted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("revoked_by", sa.Text(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_trusted_senders_domain"), "trusted_senders", ["domain"])


def downgrade() -> None:
    op.drop_index(op.f("ix_trusted_senders_domain"), table_name="trusted_senders")
    op.drop_table("trusted_senders")
    op.drop_column("messages", "hold_kinds")
