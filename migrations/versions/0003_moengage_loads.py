"""What was sent to MoEngage, what was refused, and what is in flight.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0003"
down_revision = "0002"
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
    op.add_column("runs", sa.Column("counts", JSONB), schema="syncer")
    op.create_table(
        "acks",
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("run_id", sa.BigInteger),
        ts("acked_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("destination", "model", "key", name="pk_acks"),
        schema="syncer",
    )
    op.create_table(
        "dead_letters",
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("row", JSONB, nullable=False),
        sa.Column("run_id", sa.BigInteger),
        ts("first_at", nullable=False, now=True),
        ts("last_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("destination", "model", "key", name="pk_dead_letters"),
        schema="syncer",
    )
    op.create_table(
        "inflight",
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("batch", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("run_id", sa.BigInteger),
        ts("sent_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("destination", "batch", "model", "key", name="pk_inflight"),
        schema="syncer",
    )
    op.create_table(
        "load_batches",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.BigInteger, nullable=False),
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("bytes", sa.Integer, nullable=False),
        sa.Column("users", sa.Integer, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("ambiguous", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("request_id", sa.Text),
        sa.Column("error", sa.Text),
        ts("at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name="pk_load_batches"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["syncer.runs.id"], name="fk_load_batches_run_id", ondelete="CASCADE"
        ),
        schema="syncer",
    )
    op.create_index("ix_load_batches_run_id", "load_batches", ["run_id"], schema="syncer")


def downgrade() -> None:
    for name in ("load_batches", "inflight", "dead_letters", "acks"):
        op.drop_table(name, schema="syncer")
    op.drop_column("runs", "counts", schema="syncer")
