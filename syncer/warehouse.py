"""A source's schema: its tables and typed views, made to follow its type's stream catalog.

The bookkeeping tables (schema ``syncer``) are Alembic's: declared in ``syncer.store.tables``,
made and evolved by the migrations (:func:`target_metadata`). A source's own tables live in a
schema named after it (or its ``schema`` key) and follow its type's declarations
(``SourceType.tables`` and ``SourceType.views``, for MOCO derived from its catalog): they are
provisioned by :func:`ensure_schema` when the source is first used and again whenever those
declarations change (a new stream's table, new view columns). What was provisioned is recorded
in ``syncer.provisioned`` (the schema and a digest of its statements), so a command whose
source is up to date runs no DDL at all: ``create index`` and ``create or replace view`` take
locks even when they change nothing, which would make a command wait for an analyst's query.

Provisioning never drops a table. A view is replaced in place (``create or replace view``,
which keeps what depends on it) when its columns only grow; a view whose columns already go
beyond this release's (a newer release made it, and runs beside this one) is left as it is; a
view whose columns changed otherwise is dropped and made again.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Collection

import asyncpg
from sqlalchemy import MetaData
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateIndex, CreateTable

from syncer import registry
from syncer.config import SourceSettings
from syncer.errors import ConfigError
from syncer.store import locks, provisioned, tables
from syncer.store.types import Connection

__all__ = [
    "ensure_schema",
    "layout_digest",
    "schema_ddl",
    "schema_ready",
    "stream_catalog",
    "target_metadata",
]

_VIEW = re.compile(r'create or replace view ("[^"]+"\.(?:"[^"]+"|\w+)) as\n(.*)', re.DOTALL)


def target_metadata() -> MetaData:
    """The bookkeeping tables: what Alembic's migrations make (a source's tables are not)."""
    return tables.metadata


def _table_ddl(source: SourceSettings) -> list[str]:
    kind = registry.source_type(source.type)
    dialect = postgresql.dialect()  # type: ignore[no-untyped-call]
    statements = [f'create schema if not exists "{source.schema}"']
    declared = kind.tables(source.schema, MetaData(naming_convention=tables.NAMING_CONVENTION))
    for table in declared:
        statements.append(str(CreateTable(table, if_not_exists=True).compile(dialect=dialect)))
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            statements.append(str(CreateIndex(index, if_not_exists=True).compile(dialect=dialect)))
    return statements


def _view_ddl(source: SourceSettings) -> list[str]:
    kind = registry.source_type(source.type)
    if kind.views is None:
        return []
    views = f"{source.schema}_views"
    return [f'create schema if not exists "{views}"', *kind.views(source.schema, views)]


def schema_ddl(source: SourceSettings) -> list[str]:
    """The statements that make ``source``'s schema, tables, indexes and views (each a no-op
    where it exists, views replaced)."""
    return _table_ddl(source) + _view_ddl(source)


def layout_digest(source: SourceSettings) -> str:
    """A digest of :func:`schema_ddl`: what ``syncer.provisioned`` records once it ran."""
    return _digest(source.type, source.schema, source)


_DIGESTS: dict[tuple[str, str], str] = {}


def _digest(kind: str, schema: str, source: SourceSettings) -> str:
    # The statements depend on the type and the schema alone; made once per process.
    key = (kind, schema)
    if key not in _DIGESTS:
        text = "\n;\n".join(schema_ddl(source))
        _DIGESTS[key] = f"{kind}:{hashlib.sha256(text.encode()).hexdigest()[:24]}"
    return _DIGESTS[key]


async def ensure_schema(conn: Connection, source: SourceSettings) -> None:
    """Bring ``source``'s schema to its type's declarations unless it is there already.
    ConfigError when the source was synced by an earlier release into its type's schema,
    which this release would otherwise leave behind."""
    digest = layout_digest(source)
    if await _recorded(conn, source) == digest:
        return
    async with conn.transaction():
        await conn.execute(
            "select pg_advisory_xact_lock($1, hashtext($2))", locks.PROVISION, source.schema
        )
        if await _recorded(conn, source) == digest:  # another process did it meanwhile
            return
        await _refuse_earlier_layout(conn, source)
        for statement in _table_ddl(source):
            await conn.execute(statement)
        for statement in _view_ddl(source):
            await _replace_view(conn, statement)
        await provisioned.record(conn, source.schema, source.type, digest)


async def schema_ready(conn: Connection, source: SourceSettings) -> bool:
    """Whether ``source``'s tables exist (at this or another layout), creating nothing
    (``syncer status`` reads through it). ConfigError as :func:`ensure_schema` when an
    earlier release synced the source into its type's schema."""
    if await _recorded(conn, source) is not None:
        return True
    kind = registry.source_type(source.type)
    if source.schema == kind.migrated_schema and await _schema_exists(conn, source.schema):
        return True  # made by the migrations of a release before 0.3
    await _refuse_earlier_layout(conn, source)
    return False


async def _recorded(conn: Connection, source: SourceSettings) -> str | None:
    return await provisioned.fingerprint(conn, source.schema)


async def _schema_exists(conn: Connection, schema: str) -> bool:
    return bool(
        await conn.fetchval("select exists (select from pg_namespace where nspname = $1)", schema)
    )


async def _replace_view(conn: Connection, statement: str) -> None:
    """Run a ``create or replace view``; where the view's columns changed in a way that cannot
    be replaced in place, keep a view that is wider than this one, else make it again."""
    if not statement.startswith("create or replace view"):
        await conn.execute(statement)
        return
    try:
        async with conn.transaction():  # a savepoint: a failed replace leaves nothing behind
            await conn.execute(statement)
        return
    except asyncpg.InvalidTableDefinitionError:
        pass
    match = _VIEW.match(statement)
    assert match is not None, statement
    name, select = match.group(1), match.group(2)
    existing = await _columns(conn, name)
    await conn.execute("create temp view _syncer_probe as " + select)
    try:
        wanted = await _columns(conn, "pg_temp._syncer_probe")
    finally:
        await conn.execute("drop view pg_temp._syncer_probe")
    if existing[: len(wanted)] == wanted:
        return  # a newer release's view, with every column of ours: leave it
    try:
        async with conn.transaction():
            await conn.execute(f"drop view {name}")
            await conn.execute(statement)
    except asyncpg.DependentObjectsStillExistError:
        raise ConfigError(
            f"the view {name} must be made again (its columns changed: {', '.join(existing)} "
            f"-> {', '.join(wanted)}), but other views depend on it; drop those, run again, "
            "and make them again"
        ) from None


async def _columns(conn: Connection, relation: str) -> list[str]:
    rows = await conn.fetch(
        "select attname from pg_attribute where attrelid = $1::regclass and attnum > 0"
        " and not attisdropped order by attnum",
        relation,
    )
    return [r["attname"] for r in rows]


async def _refuse_earlier_layout(conn: Connection, source: SourceSettings) -> None:
    """ConfigError if the source was synced (it has watermarks) while its own schema does not
    exist: an earlier release kept every source of a built-in type in the type's schema."""
    kind = registry.source_type(source.type)
    if kind.migrated_schema is None or source.schema == kind.migrated_schema:
        return
    synced = not await _schema_exists(conn, source.schema) and await provisioned.has_sync_state(
        conn, source.name
    )
    if synced:
        raise ConfigError(
            f'source "{source.name}" was synced by an earlier syncer into schema '
            f'"{kind.migrated_schema}"; add schema = "{kind.migrated_schema}" to '
            f"[sources.{source.name}] to keep using those tables"
        )


def stream_catalog(
    source_type: str, schema: str, enabled: Collection[str]
) -> list[dict[str, object]]:
    """``syncer streams``: each stream a source of ``source_type`` can have, where the vendor
    lists it and how syncer reads it, where it is kept (in ``schema``), how its deletions are
    found, which webhook target changes it, and whether it is synced (in ``enabled``)."""
    from syncer.catalog import DELETIONS

    kind = registry.source_type(source_type)
    views = f"{schema}_views" if kind.views is not None else None
    if kind.catalog is None:
        return [
            {
                "stream": name,
                "path": None,
                "title": "",
                "strategy": None,
                "strategy_text": None,
                "parent": kind.parent_of(name),
                "table": f"{schema}.{name}",
                "view": None,
                "deletions": None,
                "webhook_target": None,
                "webhook_targets": [],
                "enabled": name in enabled,
            }
            for name in kind.streams
        ]
    return [
        {
            "stream": s.name,
            "path": s.path,
            "title": s.title,
            "strategy": s.strategy,
            "strategy_text": s.strategy_text,
            "parent": s.parent.stream if s.parent else s.detail_of,
            "table": f"{schema}.{s.name}",
            "view": f"{views}.{s.name}" if views else None,
            "deletions": DELETIONS[s.deletions],
            "webhook_target": s.webhook_targets[0] if s.webhook_targets else None,
            "webhook_targets": list(s.webhook_targets),
            "enabled": s.name in enabled,
        }
        for s in kind.catalog()
    ]
