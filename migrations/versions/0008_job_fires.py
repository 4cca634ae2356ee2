"""Job fires: one claim per daemon job and fire time, so N replicas run each tick once.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0008"
down_revision = "0007"
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
        "job_fires",
        sa.Column("job_id", sa.Text, nullable=False),
        ts("fire_time", nullable=False),
        sa.Column("replica", sa.Text, nullable=False),
        ts("claimed_at", nullable=False, now=True),
        ts("finished_at"),
        sa.Column("outcome", sa.Text, nullable=False, server_default="running"),
        sa.Column("error", sa.Text),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.CheckConstraint(
            "outcome in ('running', 'succeeded', 'failed', 'interrupted', 'skipped', 'busy')",
            name="ck_job_fires_outcome",
        ),
        sa.PrimaryKeyConstraint("job_id", "fire_time", name="pk_job_fires"),
        schema="syncer",
    )


def downgrade() -> None:
    op.drop_table("job_fires", schema="syncer")
