"""MoEngage delivery: unanswered sends per key, and throttled rows back to pending.

``syncer.lost_answers`` keeps, per destination and key, how many sends of the row got no answer
(a timeout or a reset after the body left, or a process killed while waiting): each may have
arrived, so each later send of the row is counted as a possible duplicate, across runs. With
``on_lost_answer = "hold"`` such events wait for ``syncer load <destination> --release-held``
(``released`` marks that). The row goes when the key is acknowledged.

Throttling (429) and server errors (5xx) say nothing about the rows: earlier versions
dead-lettered the rows of a request that kept meeting them. Those dead letters are deleted, so
the rows are pending again and the next load sends them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import TIMESTAMP

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

RELEASED_RULES = "rule = 'http_429' or rule ~ '^http_5[0-9][0-9]$'"


def upgrade() -> None:
    op.create_table(
        "lost_answers",
        sa.Column("destination", sa.Text, nullable=False),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("key", sa.Text, nullable=False),
        sa.Column("sends", sa.Integer, nullable=False),
        sa.Column("released", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("run_id", sa.BigInteger),
        sa.Column(
            "last_at", TIMESTAMP(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("destination", "model", "key", name="pk_lost_answers"),
        schema="syncer",
        if_not_exists=True,  # safe to replay over a schema that has it (a rewound version)
    )
    op.execute(f"delete from syncer.dead_letters where {RELEASED_RULES}")


def downgrade() -> None:
    # The released dead letters are not restored: their rows were sent again or are pending.
    op.drop_table("lost_answers", schema="syncer")
