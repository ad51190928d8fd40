"""Backlogs: checkpoints.started_at (the first start on a folder, for `[intake] start =
"now"`), the fetch progress of a catch-up (checkpoints.backlog_*), and messages.quiet (old mail
taken into the register by `vanthu backlog import`, without any email).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_CHECKPOINT_COLUMNS = (("started_at", sa.DateTime(timezone=True)),
                       ("backlog_total", sa.BigInteger()),
                       ("backlog_fetched", sa.BigInteger()),
                       ("backlog_since", sa.DateTime(timezone=True)),
                       ("backlog_at", sa.DateTime(timezone=True)))


def upgrade() -> None:
    op.add_column("messages", sa.Column("quiet", sa.Boolean(), nullable=True))
    for name, kind in _CHECKPOINT_COLUMNS:
        op.add_column("checkpoints", sa.Column(name, kind, nullable=True))


def downgrade() -> None:
    for name, _ in reversed(_CHECKPOINT_COLUMNS):
        op.drop_column("checkpoints", name)
    op.drop_column("messages", "quiet")
