"""Alembic environment: online migrations only, under an advisory lock.

``syncer.store.database.migrate`` passes an open connection in ``config.attributes``. Run by
hand (``alembic -c migrations/alembic.ini upgrade head``), the database is resolved as syncer
resolves it.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from syncer.store.tables import metadata

# Several replicas may start at once; only one migrates, the others wait and find nothing to do.
MIGRATION_LOCK = 7_233_911_001


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        include_schemas=True,
        version_table_schema="syncer",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        connection.execute(text("create schema if not exists syncer"))
        connection.execute(text(f"select pg_advisory_xact_lock({MIGRATION_LOCK})"))
        context.run_migrations()


def run_standalone() -> None:
    import os

    from syncer.config import load_settings
    from syncer.store.database import migrate_url

    settings = load_settings(None, os.environ)
    asyncio.run(migrate_url(settings))


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    run_standalone()
