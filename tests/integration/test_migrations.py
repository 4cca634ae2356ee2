"""The migrations produce exactly the bookkeeping schema that syncer.store.tables declares
(a source's own tables follow its catalog: tests/integration/test_provisioning.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from syncer.store.database import migrate
from syncer.warehouse import target_metadata

ROOT = Path(__file__).resolve().parents[2]


async def test_migrations_produce_exactly_the_declared_tables(db_url: str) -> None:
    async def creator() -> Any:
        return await asyncpg.connect(db_url)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=creator, poolclass=NullPool)

    def diff(sync_conn: Any) -> list[Any]:
        context = MigrationContext.configure(
            sync_conn,
            opts={
                "include_schemas": True,
                "include_name": lambda name, kind, parent: kind != "schema" or name == "syncer",
                "include_object": lambda obj, name, kind, reflected, compare_to: (
                    name != "alembic_version"
                ),
            },
        )
        return list(compare_metadata(context, target_metadata()))

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


def test_the_fast_head_check_agrees_with_alembic() -> None:
    """``migrate`` skips Alembic when the database is at ``head_revision()``: that must be the
    head Alembic would upgrade to (migration files named NNNN_*.py, revision "NNNN")."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from syncer.store.database import head_revision, migrations_dir

    script = ScriptDirectory.from_config(Config(str(migrations_dir() / "alembic.ini")))
    assert head_revision() == script.get_current_head()
    for revision in script.walk_revisions():
        assert Path(str(revision.path)).name.startswith(f"{revision.revision}_")


async def test_an_older_schema_is_still_upgraded(db_url: str) -> None:
    from syncer.store.database import head_revision

    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("drop schema moco_views cascade; drop schema moca_views cascade")
        await conn.execute("drop table moca.analytics_ranges")  # created by 0010
        await conn.execute("drop table syncer.job_fires")  # 0008
        await conn.execute("drop table syncer.leases")  # 0007
        await conn.execute(  # 0011
            "drop table syncer.parent_positions, syncer.seen_ids, syncer.provisioned,"
            " syncer.verifications"
        )
        await conn.execute("update syncer.alembic_version set version_num = '0005'")
        await migrate(db_url)
        views = await conn.fetchval(
            "select count(*) from information_schema.views where table_schema = 'moco_views'"
        )
        version = await conn.fetchval("select version_num from syncer.alembic_version")
    finally:
        await conn.close()
    assert views == 8
    assert version == head_revision()


async def test_alembic_upgrade_head_from_the_repository_root(pg_admin_url: str) -> None:
    """`alembic upgrade head` by hand, as the root alembic.ini says, on a fresh database."""
    import asyncio
    import os
    import sys
    import uuid

    from syncer.store.database import head_revision, with_database

    name = f"alembic_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(pg_admin_url)
    try:
        await admin.execute(f'create database "{name}"')
        url = with_database(pg_admin_url, name)
        env = {**os.environ, "SYNCER_DATABASE_URL": url}
        env.pop("DATABASE_URL", None)
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "alembic",
            "upgrade",
            "head",
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await asyncio.wait_for(child.communicate(), 120)
        assert child.returncode == 0, err.decode()
        assert b"Traceback" not in err
        conn = await asyncpg.connect(url)
        try:
            version = await conn.fetchval("select version_num from syncer.alembic_version")
        finally:
            await conn.close()
        assert version == head_revision()
    finally:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()
