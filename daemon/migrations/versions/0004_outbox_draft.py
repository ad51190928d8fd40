"""outbox.draft: an email the pipeline queued whose bytes are composed outside the recording
transaction (state "draft"), with what they are composed from.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("outbox", sa.Column("draft", sa.LargeBinary(), nullable=True))


def downgrade() -> None:
    op.drop_column("outbox", "draft")
