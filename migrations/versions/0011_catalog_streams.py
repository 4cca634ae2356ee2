"""Bookkeeping for every stream of a catalog (positions per parent record, the ids a full
listing has seen, which catalog each source's tables follow) and for ``syncer verify``.

From this release a source's tables and views follow its stream catalog: they are created
when the source is first used and whenever its catalog changes (``syncer.warehouse``), no
longer by migrations, which keep the ``syncer`` schema. What was made here before (the tables
and views of ``moco`` and ``moca``) stays as it is; ``syncer.provisioned`` starts empty, so
each source's layout is brought up to its catalog (new tables, new view columns) on first use.

- ``parent_positions``: a per-parent list (``/projects/{project_id}/tasks``) keeps, per parent
  record, its watermark and the walk in progress.
- ``seen_ids``: the ids a full listing has stored so far in the listing under way, so that a
  listing killed in the middle resumes, and what it did not see can be told deleted at its end.
- ``provisioned``: per schema, the source type and the digest of the catalog its tables and
  views were made from.
- ``verifications``: per verify run and stream, what the source and the warehouse held, what
  was found missing or extra, what was repaired, and at what cost (``syncer status`` shows the
  latest).

A downgrade drops the views this release added to the built-in view schemas (``moco_views``,
``moca_views``: those migration 0006 did not make), so that a downgrade past 0006 finds its
schemas as it left them; tables and their rows stay.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, TIMESTAMP

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# What migrations 0006 and 0010 made in the built-in view schemas (kept by a downgrade).
MADE_BEFORE = {
    "moco_views": (
        "activities",
        "projects",
        "companies",
        "contacts",
        "users",
        "invoices",
        "offers",
        "deals",
    ),
    "moca_views": (
        "apps",
        "beacons",
        "places",
        "zones",
        "geofences",
        "segments",
        "campaigns",
        "experiences",
        "notifications",
        "analytics",
        "analytics_ranges",
    ),
}


def ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        TIMESTAMP(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if now else None,
    )


def upgrade() -> None:
    op.create_table(
        "parent_positions",
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("parent", sa.Text, nullable=False),
        ts("watermark"),
        sa.Column("walk", JSONB),
        ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("source", "stream", "parent", name="pk_parent_positions"),
        schema="syncer",
    )
    op.create_table(
        "seen_ids",
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        sa.Column("parent", sa.Text, nullable=False, server_default=""),
        sa.Column("key", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("source", "stream", "parent", "key", name="pk_seen_ids"),
        schema="syncer",
    )
    op.create_table(
        "verifications",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id",
            sa.BigInteger,
            sa.ForeignKey("syncer.runs.id", ondelete="CASCADE", name="fk_verifications_run_id"),
            nullable=False,
        ),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("stream", sa.Text, nullable=False),
        ts("verified_at", nullable=False, now=True),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("method", sa.Text, nullable=False),
        sa.Column("source_count", sa.BigInteger),
        sa.Column("warehouse_count", sa.BigInteger),
        sa.Column("missing", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("extra", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("repaired", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("unrepaired", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Text),
        sa.PrimaryKeyConstraint("id", name="pk_verifications"),
        sa.CheckConstraint(
            "outcome in ('verified', 'repaired', 'differs', 'failed', 'interrupted', "
            "'not_verified')",
            name="ck_verifications_outcome",
        ),
        schema="syncer",
    )
    op.create_index(
        "ix_verifications_source", "verifications", ["source", "stream"], schema="syncer"
    )
    op.create_table(
        "provisioned",
        sa.Column("schema", sa.Text, nullable=False),
        sa.Column("source_type", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.Text, nullable=False),
        ts("provisioned_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("schema", name="pk_provisioned"),
        schema="syncer",
    )


def downgrade() -> None:
    bind = op.get_bind()
    for schema, kept in MADE_BEFORE.items():
        rows = bind.execute(
            sa.text("select table_name from information_schema.views where table_schema = :s"),
            {"s": schema},
        )
        for (name,) in rows.fetchall():
            if name not in kept:
                op.execute(f'drop view "{schema}"."{name}"')  # no cascade: say what depends
    op.drop_table("provisioned", schema="syncer")
    op.drop_index("ix_verifications_source", table_name="verifications", schema="syncer")
    op.drop_table("verifications", schema="syncer")
    op.drop_table("seen_ids", schema="syncer")
    op.drop_table("parent_positions", schema="syncer")
