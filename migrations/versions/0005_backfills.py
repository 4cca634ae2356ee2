"""Backfills: each invocation, and the windows of history it re-extracts (resumable).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if now else None,
    )


def upgrade() -> None:
    op.create_table(
        "backfills",
        sa.Column("id", sa.BigInteger, autoincrement=True, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        ts("range_start", nullable=False),
        ts("range_end", nullable=False),
        sa.Column("window_s", sa.BigInteger, nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        ts("started_at", nullable=False, now=True),
        ts("finished_at"),
        sa.Column("outcome", sa.Text, nullable=False, server_default="running"),
        sa.Column("error", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.Text),
        sa.Column("windows_total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("windows_skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("windows_done", sa.Integer, nullable=False, server_default="0"),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("records", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("upserted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.CheckConstraint(
            "outcome in ('running', 'succeeded', 'failed', 'interrupted')",
            name="ck_backfills_outcome",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_backfills"),
        schema="syncer",
    )
    op.create_index("ix_backfills_source", "backfills", ["source", "stream"], schema="syncer")
    op.create_table(
        "backfill_windows",
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        ts("window_start", nullable=False),
        ts("window_end", nullable=False),
        sa.Column("status", sa.Text, nullable=False, server_default="pending"),
        sa.Column("walk", JSONB),
        sa.Column("pages", sa.Integer, nullable=False, server_default="0"),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("records", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("upserted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("backfill_id", sa.BigInteger),
        ts("created_at", nullable=False, now=True),
        ts("finished_at"),
        sa.CheckConstraint("status in ('pending', 'done')", name="ck_backfill_windows_status"),
        sa.CheckConstraint("window_start < window_end", name="ck_backfill_windows_span"),
        sa.PrimaryKeyConstraint(
            "source", "stream", "window_start", "window_end", name="pk_backfill_windows"
        ),
        sa.ForeignKeyConstraint(
            ["backfill_id"],
            ["syncer.backfills.id"],
            name="fk_backfill_windows_backfill_id",
            ondelete="SET NULL",
        ),
        schema="syncer",
    )


def downgrade() -> None:
    op.drop_table("backfill_windows", schema="syncer")
    op.drop_index("ix_backfills_source", table_name="backfills", schema="syncer")
    op.drop_table("backfills", schema="syncer")
