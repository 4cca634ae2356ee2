"""The migrations produce exactly the schema that syncer.store.tables declares."""

from __future__ import annotations

from typing import Any

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from syncer.store.database import migrate
from syncer.store.tables import metadata


async def test_migrations_produce_exactly_the_declared_tables(db_url: str) -> None:
    async def creator() -> Any:
        return await asyncpg.connect(db_url)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=creator, poolclass=NullPool)

    def diff(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(
            sync_conn,
            opts={
                "include_schemas": True,
                "include_name": lambda name, kind, parent: (
                    kind != "schema" or name in ("syncer", "moco", "moca")
                ),
                "include_object": lambda obj, name, kind, reflected, compare_to: (
                    name != "alembic_version"
                ),
            },
        )
        return list(compare_metadata(context, metadata))

    try:
        async with engine.connect() as conn:
            assert await conn.run_sync(diff) == []
    finally:
        await engine.dispose()


async def test_migrating_an_up_to_date_database_again_changes_nothing(db_url: str) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from syncer.store.database import migrations_dir

    head = ScriptDirectory.from_config(
        Config(str(migrations_dir() / "alembic.ini"))
    ).get_current_head()
    conn = await asyncpg.connect(db_url)
    try:
        before = await conn.fetchval("select version_num from syncer.alembic_version")
        await migrate(db_url)
        after = await conn.fetchval("select version_num from syncer.alembic_version")
    finally:
        await conn.close()
    assert before == after == head
