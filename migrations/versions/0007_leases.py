"""Leases: one row per resource a run holds exclusively, with a token each new holder bumps.

A session advisory lock dies with its connection, and a run may not notice at once. Every
write of a run (a page, a sweep's marks, a MoEngage body in flight) checks in its own
transaction that the lease token of its resources is still the one it took: a run that lost
its lock can no longer write once another run has taken the lock over.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("resource", sa.Text, nullable=False),
        sa.Column("token", sa.BigInteger, nullable=False),
        sa.Column("run_id", sa.BigInteger),
        sa.Column(
            "acquired_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("resource", name="pk_leases"),
        schema="syncer",
    )


def downgrade() -> None:
    op.drop_table("leases", schema="syncer")
