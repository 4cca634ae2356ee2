"""Bookkeeping schema and the MOCO warehouse tables.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MOCO_STREAMS = (
    "activities",
    "projects",
    "companies",
    "contacts",
    "users",
    "invoices",
    "offers",
    "deals",
)
OUTCOME = "outcome in ('running', 'succeeded', 'failed', 'interrupted')"


def ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if now else None,
    )


def upgrade() -> None:
    op.execute("create schema if not exists syncer")
    op.execute("create schema if not exists moco")
    op.create_table(
        "runs",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("command", sa.Text, nullable=False),
        ts("started_at", nullable=False, now=True),
        ts("finished_at"),
        sa.Column("outcome", sa.Text, nullable=False, server_default="running"),
        sa.Column("error", sa.Text),
        sa.Column("pid", sa.Integer),
        sa.Column("host", sa.Text),
        sa.CheckConstraint(OUTCOME, name="ck_runs_outcome"),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        schema="syncer",
    )
    op.create_table(
        "stream_runs",
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        ts("started_at", nullable=False, now=True),
        ts("finished_at"),
        sa.Column("outcome", sa.Text, nullable=False, server_default="running"),
        sa.Column("error", sa.Text),
        sa.Column("resumed_after_pages", sa.Integer),
        sa.Column("pages", sa.Integer, nullable=False, server_default="0"),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("records", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("upserted", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("rejected", sa.BigInteger, nullable=False, server_default="0"),
        sa.CheckConstraint(OUTCOME, name="ck_stream_runs_outcome"),
        sa.PrimaryKeyConstraint("run_id", "stream", name="pk_stream_runs"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["syncer.runs.id"], name="fk_stream_runs_run_id", ondelete="CASCADE"
        ),
        schema="syncer",
    )
    op.create_table(
        "streams",
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        ts("watermark"),
        sa.Column("walk", JSONB),
        ts("last_success_at"),
        ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("source", "stream", name="pk_streams"),
        schema="syncer",
    )
    op.create_table(
        "rejected_records",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.BigInteger),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("record", sa.Text, nullable=False),
        ts("rejected_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name="pk_rejected_records"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["syncer.runs.id"], name="fk_rejected_records_run_id", ondelete="SET NULL"
        ),
        schema="syncer",
    )
    op.create_index(
        "ix_rejected_records_source", "rejected_records", ["source", "stream"], schema="syncer"
    )
    for name in MOCO_STREAMS:
        op.create_table(
            name,
            sa.Column("id", sa.BigInteger, autoincrement=False, nullable=False),
            ts("updated_at"),
            sa.Column("data", JSONB, nullable=False),
            ts("_synced_at", nullable=False, now=True),
            ts("_deleted_at"),
            sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
            schema="moco",
        )
        op.create_index(f"ix_{name}_updated_at", name, ["updated_at"], schema="moco")


def downgrade() -> None:
    for name in MOCO_STREAMS:
        op.drop_table(name, schema="moco")
    for name in ("rejected_records", "streams", "stream_runs", "runs"):
        op.drop_table(name, schema="syncer")
    op.execute("drop schema if exists moco")
