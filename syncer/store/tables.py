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
    ForeignKey,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    false,
    func,
)
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

BOOKKEEPING_SCHEMA = "syncer"

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_name)s",
    "pk": "pk_%(table_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
}
# The bookkeeping tables (schema syncer). The warehouse's tables are declared by each source
# type (``syncer.warehouse`` gathers Alembic's target metadata).
metadata = MetaData(naming_convention=NAMING_CONVENTION)


def timestamp(name: str, *, nullable: bool = True, now: bool = False) -> Column[object]:
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
    timestamp("started_at", nullable=False, now=True),
    timestamp("finished_at"),
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
    timestamp("started_at", nullable=False, now=True),
    timestamp("finished_at"),
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
    timestamp("watermark"),
    Column("walk", JSONB),  # the walk in progress, resumed after a crash; null when none
    Column("state", JSONB),  # a source's own position (MOCA: last full scan, analytics)
    timestamp("last_success_at"),
    timestamp("updated_at", nullable=False, now=True),
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
    timestamp("rejected_at", nullable=False, now=True),
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
    timestamp("at", nullable=False),
    Index(None, "scope", "at"),
    schema=BOOKKEEPING_SCHEMA,
)

rate_holds = Table(
    "rate_holds",
    metadata,
    Column("scope", Text, primary_key=True),
    timestamp("until", nullable=False),
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
    timestamp("acked_at", nullable=False, now=True),
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
    timestamp("first_at", nullable=False, now=True),
    timestamp("last_at", nullable=False, now=True),
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
    timestamp("sent_at", nullable=False, now=True),
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
    timestamp("last_at", nullable=False, now=True),
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
    timestamp("at", nullable=False, now=True),
    Index(None, "run_id"),
    schema=BOOKKEEPING_SCHEMA,
)


def record_table(
    name: str, schema: str, id_type: type[BigInteger] | type[Text], on: MetaData
) -> Table:
    """A warehouse table: one row per record, ``data`` as the API sent it."""
    return Table(
        name,
        on,
        Column("id", id_type, primary_key=True, autoincrement=False),
        timestamp("updated_at"),
        Column("data", JSONB, nullable=False),
        timestamp("_synced_at", nullable=False, now=True),
        timestamp("_deleted_at"),
        Index(None, "updated_at"),
        schema=schema,
    )


backfills = Table(
    "backfills",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column("source", Text, nullable=False),
    Column("stream", Text, nullable=False),
    timestamp("range_start", nullable=False),
    timestamp("range_end", nullable=False),
    Column("window_s", BigInteger, nullable=False),
    Column("command", Text, nullable=False),
    timestamp("started_at", nullable=False, now=True),
    timestamp("finished_at"),
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
    timestamp("window_start", nullable=False),
    timestamp("window_end", nullable=False),
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
    timestamp("created_at", nullable=False, now=True),
    timestamp("finished_at"),
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
    timestamp("acquired_at", nullable=False, now=True),
    schema=BOOKKEEPING_SCHEMA,
)

# One row per daemon job and fire time: the replica that inserts it runs that tick, no other.
# outcome "busy": the job's work was held by another run, so the tick was skipped (not failed).
job_fires = Table(
    "job_fires",
    metadata,
    Column("job_id", Text, nullable=False),
    timestamp("fire_time", nullable=False),
    Column("replica", Text, nullable=False),  # host:pid of the claiming daemon
    timestamp("claimed_at", nullable=False, now=True),
    timestamp("finished_at"),
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
