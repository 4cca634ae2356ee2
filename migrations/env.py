"""Alembic environment: online migrations only, in one transaction under an advisory lock.

``syncer.store.database.migrate`` passes an open connection in ``config.attributes`` (it holds
the session-level migration lock already, on a connection of its own). Run by hand (``alembic -c
migrations/alembic.ini upgrade head``), the database is resolved and migrated as syncer does it.
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy import text
from sqlalchemy.engine import Connection

from syncer.warehouse import target_metadata

# A second guard for callers that pass a connection without holding the migration lock: taken
# before anything else in the transaction (even `create schema if not exists`, which two
# transactions at once can fail on), so a second migration waits and then finds nothing to do.
MIGRATION_LOCK = 7_233_911_001


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        include_schemas=True,
        version_table_schema="syncer",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        connection.execute(text(f"select pg_advisory_xact_lock({MIGRATION_LOCK})"))
        connection.execute(text("create schema if not exists syncer"))
        context.run_migrations()


def run_standalone() -> None:
    """``alembic upgrade head`` (or any Alembic command) by hand: the database resolved as syncer
    resolves it, migrated in this Alembic context (not through ``syncer.store.database.migrate``,
    which would start a second one)."""
    import os
    import sys

    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    from syncer.configfile import load_settings
    from syncer.errors import SyncerError
    from syncer.store.database import connect, resolve_url

    async def main() -> None:
        url = await resolve_url(load_settings(None, os.environ))

        async def creator() -> object:
            return await connect(url)

        engine = create_async_engine(
            "postgresql+asyncpg://", async_creator=creator, poolclass=NullPool
        )
        try:
            async with engine.connect() as conn:
                await conn.run_sync(run_migrations)
                await conn.commit()
        finally:
            await engine.dispose()

    try:
        asyncio.run(main())
    except SyncerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)


connection = context.config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    run_standalone()
