"""The schema of the last release without migrations (as of commit 36a94ec).

That release made its tables with create_all and added missing nullable columns; a database it
made has no version table and is stamped at this revision once its tables are found to match
(daemon.db.upgrade). Written from Alembic's autogenerate output, with the timestamps' own type
(daemon.db.UTCDateTime) frozen as what it creates: DateTime(timezone=True).

Revision ID: 0001
Revises:
Create Date: 2026-11-27
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# The foreign keys between cases, messages and register_entries point both ways. SQLite takes
# them inside CREATE TABLE before the other table exists; PostgreSQL gets them by ALTER TABLE
# once the three tables exist, as create_all made them (same names: table_column_fkey).
CYCLE = (("cases", "message_id", "messages"), ("messages", "case_id", "cases"),
         ("messages", "duplicate_of", "register_entries"),
         ("register_entries", "case_id", "cases"),
         ("register_entries", "message_id", "messages"))


def _inline() -> bool:
    return op.get_bind().dialect.name == "sqlite"


def _cyclic(table: str) -> list[sa.ForeignKeyConstraint]:
    """The cycle's foreign keys of `table`, when they go inside its CREATE TABLE."""
    if not _inline():
        return []
    return [sa.ForeignKeyConstraint([column], [f"{target}.id"])
            for owner, column, target in CYCLE if owner == table]


def upgrade() -> None:
    op.create_table("cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=100), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=40), nullable=False),
        sa.Column("applicant_name", sa.Text(), nullable=True),
        sa.Column("applicant_email", sa.Text(), nullable=True),
        sa.Column("applicant_phone", sa.Text(), nullable=True),
        sa.Column("procedure", sa.Text(), nullable=True),
        sa.Column("procedure_id", sa.String(length=100), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("lead_department", sa.String(length=100), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("paused_at", sa.Date(), nullable=True),
        sa.Column("queue", sa.String(length=100), nullable=True),
        sa.Column("apology_sent_at", sa.DateTime(timezone=True), nullable=True),
        *_cyclic("cases"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("code")
    )
    op.create_table("checkpoints",
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("folder", sa.String(length=500), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("last_uid", sa.BigInteger(), nullable=False),
        sa.Column("last_fetch_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("mailbox", "folder")
    )
    op.create_table("counters",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("value", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name")
    )
    op.create_table("digests",
        sa.Column("period", sa.String(length=40), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("period")
    )
    op.create_table("health",
        sa.Column("component", sa.String(length=100), nullable=False),
        sa.Column("problem", sa.Text(), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("component")
    )
    op.create_table("leases",
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("owner", sa.String(length=300), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name")
    )
    op.create_table("messages",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("header_message_id", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=True),
        sa.Column("understanding", sa.JSON(), nullable=True),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("duplicate_of", sa.Integer(), nullable=True),
        sa.Column("tags", sa.JSON(), nullable=True),
        sa.Column("move_to", sa.String(length=500), nullable=True),
        sa.Column("clerk", sa.JSON(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        *_cyclic("messages"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sha256")
    )
    op.create_index("ix_messages_header_message_id", "messages", ["header_message_id"])
    op.create_index(op.f("ix_messages_state"), "messages", ["state"])
    op.create_table("register_closings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("book", sa.String(length=20), nullable=True),
        sa.Column("year", sa.Integer(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.Text(), nullable=True),
        sa.Column("first_number", sa.Integer(), nullable=True),
        sa.Column("last_number", sa.Integer(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("book", "year")
    )
    op.create_table("register_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("book", sa.String(length=20), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("sender_email", sa.Text(), nullable=True),
        sa.Column("trust", sa.Integer(), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("document", sa.JSON(), nullable=True),
        sa.Column("doc_key", sa.String(length=500), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("recipients", sa.JSON(), nullable=True),
        sa.Column("forwarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lead_department", sa.String(length=100), nullable=True),
        sa.Column("cooperating", sa.JSON(), nullable=True),
        sa.Column("deadline", sa.Date(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("directives", sa.JSON(), nullable=True),
        *_cyclic("register_entries"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("book", "year", "number"),
        sa.UniqueConstraint("message_id")
    )
    op.create_index(op.f("ix_register_entries_doc_key"), "register_entries", ["doc_key"])
    op.create_table("rejected_results",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("rejected_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id")
    )
    op.create_table("attachments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("content_type", sa.String(length=200), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.PrimaryKeyConstraint("id")
    )
    op.create_index(op.f("ix_attachments_message_id"), "attachments", ["message_id"])
    op.create_index(op.f("ix_attachments_sha256"), "attachments", ["sha256"])
    op.create_table("case_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.String(length=40), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("id")
    )
    op.create_index(op.f("ix_case_events_case_id"), "case_events", ["case_id"])
    op.create_table("case_threads",
        sa.Column("header_message_id", sa.String(length=500), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("header_message_id")
    )
    op.create_table("locations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=False),
        sa.Column("mailbox", sa.String(length=200), nullable=False),
        sa.Column("folder", sa.String(length=500), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger(), nullable=False),
        sa.Column("uid", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox", "folder", "uidvalidity", "uid")
    )
    op.create_index(op.f("ix_locations_message_id"), "locations", ["message_id"])
    op.create_table("outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("header_message_id", sa.String(length=500), nullable=False),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("ack_key", sa.String(length=400), nullable=True),
        sa.Column("raw", sa.LargeBinary(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("refused", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("claimed_by", sa.String(length=300), nullable=True),
        sa.Column("claim_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tries_begun", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(["message_id"], ["messages.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("header_message_id")
    )
    op.create_index(op.f("ix_outbox_ack_key"), "outbox", ["ack_key"])
    op.create_index(op.f("ix_outbox_message_id"), "outbox", ["message_id"])
    op.create_index(op.f("ix_outbox_state"), "outbox", ["state"])
    op.create_table("outgoing_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("year", sa.Integer(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("pdf_sha256", sa.String(length=64), nullable=False),
        sa.Column("file_name", sa.Text(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("register_entry_id", sa.Integer(), nullable=True),
        sa.Column("document", sa.JSON(), nullable=True),
        sa.Column("signer", sa.Text(), nullable=True),
        sa.Column("recipients", sa.JSON(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outbox_message_id", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.ForeignKeyConstraint(["register_entry_id"], ["register_entries.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("pdf_sha256"),
        sa.UniqueConstraint("year", "number")
    )
    op.create_table("reminders",
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.ForeignKeyConstraint(["case_id"], ["cases.id"]),
        sa.PrimaryKeyConstraint("case_id", "day")
    )

    if not _inline():
        for owner, column, target in CYCLE:
            op.create_foreign_key(None, owner, target, [column], ["id"])


def downgrade() -> None:
    raise NotImplementedError("the first schema is not undone: restore a backup instead")
