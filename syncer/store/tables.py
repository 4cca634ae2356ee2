"""Table definitions: the target metadata of Alembic, and the one place names are declared.

Migrations create and evolve these; ``tests/integration/test_migrations.py`` checks that the
migrated database matches this metadata exactly.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Double,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    Text,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

from syncer.sources.moca import api as moca
from syncer.sources.moco import api as moco

BOOKKEEPING_SCHEMA = "syncer"
MOCO_SCHEMA = "moco"
MOCA_SCHEMA = "moca"

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_name)s",
        "pk": "pk_%(table_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> Column[object]:
    return Column(
        name,
        TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=func.now() if now else None,
    )


runs = Table(
    "runs",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("kind", Text, nullable=False),  # sync
    Column("source", Text, nullable=False),
    Column("command", Text, nullable=False),
    _ts("started_at", nullable=False, now=True),
    _ts("finished_at"),
    Column("outcome", Text, nullable=False, server_default="running"),
    Column("error", Text),
    Column("pid", Integer),
    Column("host", Text),
    Column("counts", JSONB),  # a load run's results
    CheckConstraint("outcome in ('running', 'succeeded', 'failed', 'interrupted')", name="outcome"),
    schema=BOOKKEEPING_SCHEMA,
)

stream_runs = Table(
    "stream_runs",
    metadata,
    Column(
        "run_id",
        BigInteger,
        ForeignKey(f"{BOOKKEEPING_SCHEMA}.runs.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("stream", Text, primary_key=True),
    _ts("started_at", nullable=False, now=True),
    _ts("finished_at"),
    Column("outcome", Text, nullable=False, server_default="running"),
    Column("error", Text),
    Column("resumed_after_pages", Integer),
    Column("warning", Text),  # e.g. deletions withheld by the guard
    Column("deleted", BigInteger, nullable=False, server_default="0"),
    Column("pages", Integer, nullable=False, server_default="0"),
    Column("requests", Integer, nullable=False, server_default="0"),
    Column("records", BigInteger, nullable=False, server_default="0"),
    Column("upserted", BigInteger, nullable=False, server_default="0"),
    Column("rejected", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("outcome in ('running', 'succeeded', 'failed', 'interrupted')", name="outcome"),
    schema=BOOKKEEPING_SCHEMA,
)

streams = Table(
    "streams",
    metadata,
    Column("source", Text, primary_key=True),
    Column("stream", Text, primary_key=True),
    _ts("watermark"),
    Column("walk", JSONB),  # the walk in progress, resumed after a crash; null when none
    Column("state", JSONB),  # a source's own position (MOCA: last full scan, analytics)
    _ts("last_success_at"),
    _ts("updated_at", nullable=False, now=True),
    schema=BOOKKEEPING_SCHEMA,
)

rejected_records = Table(
    "rejected_records",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("run_id", BigInteger, ForeignKey(f"{BOOKKEEPING_SCHEMA}.runs.id", ondelete="SET NULL")),
    Column("source", Text, nullable=False),
    Column("stream", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("record", Text, nullable=False),
    _ts("rejected_at", nullable=False, now=True),
    Index(None, "source", "stream"),
    schema=BOOKKEEPING_SCHEMA,
)


rate_log = Table(
    "rate_log",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("scope", Text, nullable=False),
    Column("unit", Text, nullable=False),
    Column("amount", Integer, nullable=False),
    _ts("at", nullable=False),
    Index(None, "scope", "at"),
    schema=BOOKKEEPING_SCHEMA,
)

rate_holds = Table(
    "rate_holds",
    metadata,
    Column("scope", Text, primary_key=True),
    _ts("until", nullable=False),
    schema=BOOKKEEPING_SCHEMA,
)


def _key_columns() -> list[Column[object]]:
    return [
        Column("destination", Text, primary_key=True),
        Column("model", Text, primary_key=True),
        Column("key", Text, primary_key=True),
    ]


# The last acknowledged send of each row: its hash (users, devices) or just its key (events).
acks = Table(
    "acks",
    metadata,
    *_key_columns(),
    Column("hash", Text, nullable=False),
    Column("run_id", BigInteger),
    _ts("acked_at", nullable=False, now=True),
    schema=BOOKKEEPING_SCHEMA,
)

# Rows never sent, with the reason; retried when the model's row (its hash) changes.
dead_letters = Table(
    "dead_letters",
    metadata,
    *_key_columns(),
    Column("hash", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("reason", Text, nullable=False),
    Column("row", JSONB, nullable=False),
    Column("run_id", BigInteger),
    _ts("first_at", nullable=False, now=True),
    _ts("last_at", nullable=False, now=True),
    schema=BOOKKEEPING_SCHEMA,
)

# Rows of a request whose answer has not arrived yet; what a crash leaves here was maybe sent.
inflight = Table(
    "inflight",
    metadata,
    Column("destination", Text, primary_key=True),
    Column("batch", Text, primary_key=True),
    Column("model", Text, primary_key=True),
    Column("key", Text, primary_key=True),
    Column("run_id", BigInteger),
    _ts("sent_at", nullable=False, now=True),
    schema=BOOKKEEPING_SCHEMA,
)

# Per key, sends whose answer never came (each may have arrived); gone once the key is acked.
lost_answers = Table(
    "lost_answers",
    metadata,
    *_key_columns(),
    Column("sends", Integer, nullable=False),
    Column("released", Boolean, nullable=False, server_default=false()),
    Column("run_id", BigInteger),
    _ts("last_at", nullable=False, now=True),
    schema=BOOKKEEPING_SCHEMA,
)

load_batches = Table(
    "load_batches",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        BigInteger,
        ForeignKey(f"{BOOKKEEPING_SCHEMA}.runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("destination", Text, nullable=False),
    Column("outcome", Text, nullable=False),  # acked, rejected
    Column("bytes", Integer, nullable=False),
    Column("users", Integer, nullable=False),
    Column("events", Integer, nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("ambiguous", Boolean, nullable=False, server_default=false()),
    Column("request_id", Text),
    Column("error", Text),
    _ts("at", nullable=False, now=True),
    Index(None, "run_id"),
    schema=BOOKKEEPING_SCHEMA,
)


def record_table(name: str, schema: str, id_type: type[BigInteger] | type[Text]) -> Table:
    """A warehouse table: one row per record, ``data`` as the API sent it."""
    return Table(
        name,
        metadata,
        Column("id", id_type, primary_key=True, autoincrement=False),
        _ts("updated_at"),
        Column("data", JSONB, nullable=False),
        _ts("_synced_at", nullable=False, now=True),
        _ts("_deleted_at"),
        Index(None, "updated_at"),
        schema=schema,
    )


moco_tables = {name: record_table(name, MOCO_SCHEMA, BigInteger) for name in moco.STREAMS}


def moca_table(spec: moca.MocaStream) -> Table:
    """A MOCA table: text ids, ms timestamps as timestamptz, extracted columns, raw ``data``."""
    return Table(
        spec.name,
        metadata,
        Column("id", Text, primary_key=True, autoincrement=False),
        _ts("updated_at"),
        _ts("created_at"),
        *(Column(c, JSONB if t == "jsonb" else Text) for c, (t, _) in spec.columns.items()),
        Column("data", JSONB, nullable=False),
        _ts("_synced_at", nullable=False, now=True),
        _ts("_deleted_at"),
        Index(None, "updated_at"),
        schema=MOCA_SCHEMA,
    )


moca_tables = {name: moca_table(spec) for name, spec in moca.STREAMS.items()}

moca_analytics = Table(
    "analytics",
    metadata,
    Column("app_id", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("interval", Text, nullable=False),
    _ts("bucket_start", nullable=False),
    Column("key", Text, nullable=False, server_default=""),  # geohash for geolocations
    Column("value", Numeric),
    Column("data", JSONB, nullable=False),
    _ts("_synced_at", nullable=False, now=True),
    PrimaryKeyConstraint("app_id", "metric", "interval", "bucket_start", "key"),
    schema=MOCA_SCHEMA,
)

# Analytics that come as one value over the whole requested range (no per-bucket ``t``), e.g.
# geolocations aggregated over [range_start, range_end): keyed by the range, so pulling the
# same range again replaces its rows, and ranges are never summed with each other.
moca_analytics_ranges = Table(
    "analytics_ranges",
    metadata,
    Column("app_id", Text, nullable=False),
    Column("metric", Text, nullable=False),
    Column("interval", Text, nullable=False),
    _ts("range_start", nullable=False),
    _ts("range_end", nullable=False),
    Column("key", Text, nullable=False, server_default=""),  # geohash or "lat,lon"
    Column("latitude", Double),
    Column("longitude", Double),
    Column("value", Numeric),
    Column("data", JSONB, nullable=False),
    _ts("_synced_at", nullable=False, now=True),
    PrimaryKeyConstraint("app_id", "metric", "interval", "range_start", "range_end", "key"),
    schema=MOCA_SCHEMA,
)

# One invocation of `syncer backfill`: what it was asked, how it ended, what it did.
backfills = Table(
    "backfills",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("stream", Text, nullable=False),
    _ts("range_start", nullable=False),
    _ts("range_end", nullable=False),
    Column("window_s", BigInteger, nullable=False),
    Column("command", Text, nullable=False),
    _ts("started_at", nullable=False, now=True),
    _ts("finished_at"),
    Column("outcome", Text, nullable=False, server_default="running"),
    Column("error", Text),
    Column("pid", Integer),
    Column("host", Text),
    Column("windows_total", Integer, nullable=False, server_default="0"),
    Column("windows_skipped", Integer, nullable=False, server_default="0"),
    Column("windows_done", Integer, nullable=False, server_default="0"),
    Column("requests", Integer, nullable=False, server_default="0"),
    Column("records", BigInteger, nullable=False, server_default="0"),
    Column("upserted", BigInteger, nullable=False, server_default="0"),
    Column("rejected", BigInteger, nullable=False, server_default="0"),
    CheckConstraint("outcome in ('running', 'succeeded', 'failed', 'interrupted')", name="outcome"),
    Index("ix_backfills_source", "source", "stream"),
    schema=BOOKKEEPING_SCHEMA,
)

# The windows of history a backfill re-extracts; a done window is never read again.
backfill_windows = Table(
    "backfill_windows",
    metadata,
    Column("source", Text, nullable=False),
    Column("stream", Text, nullable=False),
    _ts("window_start", nullable=False),
    _ts("window_end", nullable=False),
    Column("status", Text, nullable=False, server_default="pending"),
    Column("walk", JSONB),  # where an unfinished window resumes; null once done
    Column("pages", Integer, nullable=False, server_default="0"),
    Column("requests", Integer, nullable=False, server_default="0"),
    Column("records", BigInteger, nullable=False, server_default="0"),
    Column("upserted", BigInteger, nullable=False, server_default="0"),
    Column("rejected", BigInteger, nullable=False, server_default="0"),
    Column(
        "backfill_id",
        BigInteger,
        ForeignKey(f"{BOOKKEEPING_SCHEMA}.backfills.id", ondelete="SET NULL"),
    ),
    _ts("created_at", nullable=False, now=True),
    _ts("finished_at"),
    PrimaryKeyConstraint("source", "stream", "window_start", "window_end"),
    CheckConstraint("status in ('pending', 'done')", name="status"),
    CheckConstraint("window_start < window_end", name="span"),
    schema=BOOKKEEPING_SCHEMA,
)

# One row per resource a run holds exclusively ("sync:moco.activities", "load:moengage"): the
# token is bumped by each new holder, and every write of a run checks it (``store/leases.py``).
# run_id is the holder's syncer.runs id (a backfill's: its syncer.backfills id).
leases = Table(
    "leases",
    metadata,
    Column("resource", Text, primary_key=True),
    Column("token", BigInteger, nullable=False),
    Column("run_id", BigInteger),
    _ts("acquired_at", nullable=False, now=True),
    schema=BOOKKEEPING_SCHEMA,
)

# One row per daemon job and fire time: the replica that inserts it runs that tick, no other.
# outcome "busy": the job's work was held by another run, so the tick was skipped (not failed).
job_fires = Table(
    "job_fires",
    metadata,
    Column("job_id", Text, nullable=False),
    _ts("fire_time", nullable=False),
    Column("replica", Text, nullable=False),  # host:pid of the claiming daemon
    _ts("claimed_at", nullable=False, now=True),
    _ts("finished_at"),
    Column("outcome", Text, nullable=False, server_default="running"),
    Column("error", Text),
    Column("attempts", Integer, nullable=False, server_default="0"),  # tries while busy
    PrimaryKeyConstraint("job_id", "fire_time"),
    CheckConstraint(
        "outcome in ('running', 'succeeded', 'failed', 'interrupted', 'skipped', 'busy')",
        name="outcome",
    ),
    schema=BOOKKEEPING_SCHEMA,
)
