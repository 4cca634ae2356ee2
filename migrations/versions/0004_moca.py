"""The MOCA warehouse (text ids, extracted columns, analytics buckets), stream state and
warnings.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Frozen as they were when this migration was written.
STREAMS = {
    "apps": {"name": "text"},
    "beacons": {"name": "text", "zone_id": "text", "place_id": "text"},
    "places": {"name": "text"},
    "zones": {"name": "text", "place_id": "text"},
    "geofences": {"name": "text", "place_id": "text"},
    "segments": {"name": "text", "app_id": "text", "query_text": "text", "query": "jsonb"},
    "campaigns": {"name": "text", "app_id": "text", "status": "text"},
    "experiences": {
        "name": "text",
        "campaign_id": "text",
        "trigger_type": "text",
        "action_type": "text",
    },
    "notifications": {
        "name": "text",
        "campaign_id": "text",
        "trigger_type": "text",
        "action_type": "text",
    },
}


def ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if now else None,
    )


def upgrade() -> None:
    op.add_column("streams", sa.Column("state", JSONB), schema="syncer")
    op.add_column("stream_runs", sa.Column("warning", sa.Text), schema="syncer")
    op.add_column(
        "stream_runs",
        sa.Column("deleted", sa.BigInteger, nullable=False, server_default="0"),
        schema="syncer",
    )
    op.execute("create schema if not exists moca")
    for name, extras in STREAMS.items():
        op.create_table(
            name,
            sa.Column("id", sa.Text, autoincrement=False, nullable=False),
            ts("updated_at"),
            ts("created_at"),
            *(sa.Column(c, JSONB if t == "jsonb" else sa.Text) for c, t in extras.items()),
            sa.Column("data", JSONB, nullable=False),
            ts("_synced_at", nullable=False, now=True),
            ts("_deleted_at"),
            sa.PrimaryKeyConstraint("id", name=f"pk_{name}"),
            schema="moca",
        )
        op.create_index(f"ix_{name}_updated_at", name, ["updated_at"], schema="moca")
    op.create_table(
        "analytics",
        sa.Column("app_id", sa.Text, nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("interval", sa.Text, nullable=False),
        ts("bucket_start", nullable=False),
        sa.Column("key", sa.Text, nullable=False, server_default=""),
        sa.Column("value", sa.Numeric),
        sa.Column("data", JSONB, nullable=False),
        ts("_synced_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint(
            "app_id", "metric", "interval", "bucket_start", "key", name="pk_analytics"
        ),
        schema="moca",
    )


def downgrade() -> None:
    op.drop_table("analytics", schema="moca")
    for name in STREAMS:
        op.drop_table(name, schema="moca")
    op.execute("drop schema if exists moca")
    op.drop_column("stream_runs", "deleted", schema="syncer")
    op.drop_column("stream_runs", "warning", schema="syncer")
    op.drop_column("streams", "state", schema="syncer")
