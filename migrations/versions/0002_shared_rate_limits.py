"""A rate-limit ledger shared by every process using one credential.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rate_log",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("amount", sa.Integer, nullable=False),
        sa.Column("at", TIMESTAMP(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rate_log"),
        schema="syncer",
    )
    op.create_index("ix_rate_log_scope", "rate_log", ["scope", "at"], schema="syncer")
    op.create_table(
        "rate_holds",
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("until", TIMESTAMP(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("scope", name="pk_rate_holds"),
        schema="syncer",
    )


def downgrade() -> None:
    op.drop_table("rate_holds", schema="syncer")
    op.drop_table("rate_log", schema="syncer")
