"""The warehouse's schemas: Alembic's target metadata, and the schema of each source.

The bookkeeping tables (schema ``syncer``) are declared in ``syncer.store.tables``; each source
type declares its own tables (``SourceType.tables``). The built-in types' tables live in the
schema named after the type (``moco``, ``moca``) and are created by the migrations, so they
are part of the metadata Alembic compares the database with (:func:`target_metadata`).

Every other source (a second MOCO account, a plugin's source) has its tables in a schema named
after it (or its ``schema`` key), created by :func:`ensure_schema` when the source is first
used, at the layout of this release: the same table definitions the migrations follow.
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from syncer import registry
from syncer.config import SourceSettings
from syncer.errors import ConfigError
from syncer.store import locks, tables
from syncer.store.types import Connection

__all__ = ["ensure_schema", "schema_ddl", "schema_ready", "target_metadata"]


def target_metadata() -> MetaData:
    """The bookkeeping tables and the migrated schemas of every registered source type."""
    for kind in registry.source_types().values():
        if kind.migrated_schema is not None:
            declared = f"{kind.migrated_schema}."
            if not any(key.startswith(declared) for key in tables.metadata.tables):
                kind.tables(kind.migrated_schema, tables.metadata)
    return tables.metadata


def schema_ddl(source: SourceSettings) -> list[str]:
    """The statements that create ``source``'s schema, tables, indexes and views (each one a
    no-op where it exists)."""
    kind = registry.source_type(source.type)
    schema = source.schema
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    statements = [f'create schema if not exists "{schema}"']
    for table in kind.tables(schema, MetaData(naming_convention=tables.NAMING_CONVENTION)):
        statements.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            statements.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
    if kind.views is not None:
        views = f"{schema}_views"
        statements.append(f'create schema if not exists "{views}"')
        statements += kind.views(schema, views)
    return statements


async def ensure_schema(conn: Connection, source: SourceSettings) -> None:
    """Create ``source``'s schema and tables unless they exist (the built-in sources' schemas
    are the migrations' business). ConfigError when the source was synced by an earlier
    release into its type's schema, which this release would otherwise leave behind."""
    if await _in_place(conn, source):
        return
    async with conn.transaction():
        await conn.execute(
            "select pg_advisory_xact_lock($1, hashtext($2))", locks.PROVISION, source.schema
        )
        await _refuse_earlier_layout(conn, source)
        for statement in schema_ddl(source):
            await conn.execute(statement)


async def schema_ready(conn: Connection, source: SourceSettings) -> bool:
    """Whether ``source``'s tables exist, creating nothing (``syncer status`` reads through
    it). ConfigError as :func:`ensure_schema` when an earlier release synced the source into
    its type's schema."""
    if await _in_place(conn, source):
        return True
    await _refuse_earlier_layout(conn, source)
    return False


async def _in_place(conn: Connection, source: SourceSettings) -> bool:
    """Whether ``source``'s tables are there: its type's migrated schema, or provisioned."""
    kind = registry.source_type(source.type)
    return source.schema == kind.migrated_schema or await _provisioned(conn, source)


async def _refuse_earlier_layout(conn: Connection, source: SourceSettings) -> None:
    """ConfigError if the source was synced (it has watermarks) while its own schema does not
    exist: an earlier release kept every source of a built-in type in the type's schema."""
    kind = registry.source_type(source.type)
    if kind.migrated_schema is None:
        return
    exists = await conn.fetchval(
        "select exists (select from pg_namespace where nspname = $1)", source.schema
    )
    synced = not exists and await conn.fetchval(
        "select exists (select from syncer.streams where source = $1)", source.name
    )
    if synced:
        raise ConfigError(
            f'source "{source.name}" was synced by an earlier syncer into schema '
            f'"{kind.migrated_schema}"; add schema = "{kind.migrated_schema}" to '
            f"[sources.{source.name}] to keep using those tables"
        )


async def _provisioned(conn: Connection, source: SourceSettings) -> bool:
    """Whether ``source``'s tables (and view schema) exist already: then nothing is run, so
    that a command starting beside a write, or an analyst's query on a view, does not wait for
    the locks that ``create index`` and ``create or replace view`` take even when they change
    nothing. A schema is provisioned in one transaction, so its tables imply their indexes
    and views."""
    kind = registry.source_type(source.type)
    names = [
        f'"{source.schema}"."{table.name}"'
        for table in kind.tables(
            source.schema, MetaData(naming_convention=tables.NAMING_CONVENTION)
        )
    ]
    views = f"{source.schema}_views" if kind.views is not None else None
    missing = await conn.fetchval(
        "select count(*) filter (where to_regclass(n) is null) from unnest($1::text[]) n",
        names,
    )
    views_there = views is None or await conn.fetchval(
        "select exists (select from pg_namespace where nspname = $1)", views
    )
    return missing == 0 and bool(views_there)
