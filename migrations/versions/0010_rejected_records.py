"""MOCA analytics over a range: aggregates with no per-bucket time (e.g. geolocations summed
over the requested range), stored with the range they cover, and their typed view.

Records and analytics points of a shape that does not fit are kept in
``syncer.rejected_records`` (since 0001) with the reason; this revision adds no column there.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

VIEW = """
create view moca_views.analytics_ranges as
select app_id, metric, "interval", range_start, range_end, nullif(key, '') as place,
       latitude, longitude, value, _synced_at
from moca.analytics_ranges
"""


def ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if now else None,
    )


def upgrade() -> None:
    op.create_table(
        "analytics_ranges",
        sa.Column("app_id", sa.Text, nullable=False),
        sa.Column("metric", sa.Text, nullable=False),
        sa.Column("interval", sa.Text, nullable=False),
        ts("range_start", nullable=False),
        ts("range_end", nullable=False),
        sa.Column("key", sa.Text, nullable=False, server_default=""),
        sa.Column("latitude", sa.Double),
        sa.Column("longitude", sa.Double),
        sa.Column("value", sa.Numeric),
        sa.Column("data", JSONB, nullable=False),
        ts("_synced_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint(
            "app_id",
            "metric",
            "interval",
            "range_start",
            "range_end",
            "key",
            name="pk_analytics_ranges",
        ),
        schema="moca",
    )
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("drop view moca_views.analytics_ranges")
    op.drop_table("analytics_ranges", schema="moca")
