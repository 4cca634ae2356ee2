"""The warehouse tables of a MOCA source: one per stream, and the analytics.

The built-in source ``moca`` has them in schema ``moca``, created by the migrations; another
MOCA source gets the same tables in a schema named after it when it is first used.
"""

from __future__ import annotations

from sqlalchemy import Column, Double, Index, MetaData, Numeric, PrimaryKeyConstraint, Table, Text
from sqlalchemy.dialects.postgresql import JSONB

from syncer.sources.moca.api import STREAMS, MocaStream
from syncer.sources.moca.settings import SCHEMA
from syncer.store.tables import timestamp

__all__ = ["SCHEMA", "tables"]


def stream_table(spec: MocaStream, schema: str, on: MetaData) -> Table:
    """A MOCA table: text ids, ms timestamps as timestamptz, extracted columns, raw ``data``."""
    return Table(
        spec.name,
        on,
        Column("id", Text, primary_key=True, autoincrement=False),
        timestamp("updated_at"),
        timestamp("created_at"),
        *(Column(c, JSONB if t == "jsonb" else Text) for c, (t, _) in spec.columns.items()),
        Column("data", JSONB, nullable=False),
        timestamp("_synced_at", nullable=False, now=True),
        timestamp("_deleted_at"),
        Index(None, "updated_at"),
        schema=schema,
    )


def tables(schema: str, on: MetaData) -> list[Table]:
    """The tables of one MOCA schema, declared on ``on``."""
    analytics = Table(
        "analytics",
        on,
        Column("app_id", Text, nullable=False),
        Column("metric", Text, nullable=False),
        Column("interval", Text, nullable=False),
        timestamp("bucket_start", nullable=False),
        Column("key", Text, nullable=False, server_default=""),  # geohash for geolocations
        Column("value", Numeric),
        Column("data", JSONB, nullable=False),
        timestamp("_synced_at", nullable=False, now=True),
        PrimaryKeyConstraint("app_id", "metric", "interval", "bucket_start", "key"),
        schema=schema,
    )
    # Analytics that come as one value over the whole requested range (no per-bucket ``t``),
    # e.g. geolocations aggregated over [range_start, range_end): keyed by the range, so
    # pulling the same range again replaces its rows, and ranges are never summed together.
    ranges = Table(
        "analytics_ranges",
        on,
        Column("app_id", Text, nullable=False),
        Column("metric", Text, nullable=False),
        Column("interval", Text, nullable=False),
        timestamp("range_start", nullable=False),
        timestamp("range_end", nullable=False),
        Column("key", Text, nullable=False, server_default=""),  # geohash or "lat,lon"
        Column("latitude", Double),
        Column("longitude", Double),
        Column("value", Numeric),
        Column("data", JSONB, nullable=False),
        timestamp("_synced_at", nullable=False, now=True),
        PrimaryKeyConstraint("app_id", "metric", "interval", "range_start", "range_end", "key"),
        schema=schema,
    )
    return [*(stream_table(spec, schema, on) for spec in STREAMS.values()), analytics, ranges]
