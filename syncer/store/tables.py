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
    Date,
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

from syncer.catalog import Stream

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
    name: str,
    schema: str,
    id_type: type[BigInteger] | type[Text],
    on: MetaData,
    *,
    parent: bool = False,
) -> Table:
    """A warehouse table: one row per record, ``data`` as the API sent it. With ``parent``,
    a per-parent list's table: ``_parent_id`` is the id of the record it was listed for."""
    extra: list[Column[object] | Index] = []
    if parent:
        extra = [Column("_parent_id", BigInteger), Index(None, "_parent_id")]
    return Table(
        name,
        on,
        Column("id", id_type, primary_key=True, autoincrement=False),
        timestamp("updated_at"),
        Column("data", JSONB, nullable=False),
        timestamp("_synced_at", nullable=False, now=True),
        timestamp("_deleted_at"),
        Index(None, "updated_at"),
        *extra,
        schema=schema,
    )


def snapshot_table(name: str, schema: str, on: MetaData) -> Table:
    """A report's table: its rows per period as the API sent them, keyed by the period and
    the row's natural key; pulling a period again replaces that period's rows."""
    return Table(
        name,
        on,
        Column("period_start", Date, nullable=False),
        Column("period_end", Date, nullable=False),
        Column("key", Text, nullable=False),
        Column("data", JSONB, nullable=False),
        timestamp("_synced_at", nullable=False, now=True),
        PrimaryKeyConstraint("period_start", "period_end", "key"),
        schema=schema,
    )


def stream_table(stream: Stream, schema: str, on: MetaData) -> Table:
    """The warehouse table of a catalog stream."""
    if stream.snapshots:
        return snapshot_table(stream.name, schema, on)
    id_type = BigInteger if stream.key_type == "bigint" else Text
    return record_table(stream.name, schema, id_type, on, parent=stream.parent is not None)


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


# A per-parent list's position per parent record: its watermark, and the walk in progress.
parent_positions = Table(
    "parent_positions",
    metadata,
    Column("source", Text, primary_key=True),
    Column("stream", Text, primary_key=True),
    Column("parent", Text, primary_key=True),
    timestamp("watermark"),
    Column("walk", JSONB),
    timestamp("updated_at", nullable=False, now=True),
    schema=BOOKKEEPING_SCHEMA,
)

# The ids a full listing under way has stored (per parent; "" for none): what it did not see
# by its end are candidates for deletion; kept across a crash, so the listing resumes.
seen_ids = Table(
    "seen_ids",
    metadata,
    Column("source", Text, primary_key=True),
    Column("stream", Text, primary_key=True),
    Column("parent", Text, primary_key=True, server_default=""),
    Column("key", Text, primary_key=True),
    schema=BOOKKEEPING_SCHEMA,
)

# Per schema of a source: the source type and the catalog digest its tables and views follow.
provisioned = Table(
    "provisioned",
    metadata,
    Column("schema", Text, primary_key=True),
    Column("source_type", Text, nullable=False),
    Column("fingerprint", Text, nullable=False),
    timestamp("provisioned_at", nullable=False, now=True),
    schema=BOOKKEEPING_SCHEMA,
)

# What each verify run found per stream (``syncer verify``): the counts it compared, what was
# missing or extra, what it repaired. `syncer status` shows the latest per stream.
verifications = Table(
    "verifications",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=True),
    Column(
        "run_id",
        BigInteger,
        ForeignKey(f"{BOOKKEEPING_SCHEMA}.runs.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("source", Text, nullable=False),
    Column("stream", Text, nullable=False),
    timestamp("verified_at", nullable=False, now=True),
    # verified: equal; repaired: differences found and all repaired; differs: found, not all
    # repaired (--no-repair, the deletion guard); not_verified: no way to count the stream.
    Column("outcome", Text, nullable=False),
    Column("method", Text, nullable=False),  # counts, listing, parents, none
    Column("source_count", BigInteger),
    Column("warehouse_count", BigInteger),
    Column("missing", BigInteger, nullable=False, server_default="0"),
    Column("extra", BigInteger, nullable=False, server_default="0"),
    Column("repaired", BigInteger, nullable=False, server_default="0"),
    Column("unrepaired", BigInteger, nullable=False, server_default="0"),
    Column("requests", Integer, nullable=False, server_default="0"),
    Column("error", Text),
    CheckConstraint(
        "outcome in ('verified', 'repaired', 'differs', 'failed', 'interrupted', 'not_verified')",
        name="outcome",
    ),
    Index("ix_verifications_source", "source", "stream"),
    schema=BOOKKEEPING_SCHEMA,
)
