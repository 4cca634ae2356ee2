"""The typed warehouse views (moco_views, moca_views) over demo-like data synced from the
sandboxes: every column of every view against the raw ``data`` it comes from, records of an
unexpected shape, and deleted records.

The column lists are read from the migration itself, so every column is checked, not samples.
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from types import ModuleType
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest
from alembic import command as commands
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from syncer.catalog import RAW
from syncer.config import RateLimit, Secret
from syncer.runners.sync import sync_source
from syncer.sandbox.moca import MocaSandbox
from syncer.sandbox.moca_data import MocaData
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moca import api as moca
from syncer.sources.moca.settings import MocaSourceSettings
from syncer.sources.moco.catalog import CATALOG
from syncer.store.database import migrate, migrations_dir
from syncer.warehouse import ensure_schema
from tests.conftest import moco_source, sandbox_in_thread


def _migration() -> ModuleType:
    path = migrations_dir() / "versions" / "0006_warehouse_views.py"
    spec = importlib.util.spec_from_file_location("warehouse_views_0006", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VIEWS = _migration()
# (view schema, raw schema, stream, columns) for every view with one row per record.
ALL: list[tuple[str, str, str, dict[str, str]]] = [
    ("moco_views", "moco", name, columns) for name, columns in VIEWS.MOCO_VIEWS.items()
] + [("moca_views", "moca", name, columns) for name, columns in VIEWS.MOCA_VIEWS.items()]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The PostgreSQL type (udt_name) each kind of column must have.
PG_TYPES = {
    "text": "text",
    "bigint": "int8",
    "numeric": "numeric",
    "boolean": "bool",
    "date": "date",
    "timestamptz": "timestamptz",
    "epoch_ms": "timestamptz",
    "text[]": "_text",
    "jsonb": "jsonb",
}


@pytest.fixture
async def synced(pool: Any, moco: MocoSandbox) -> AsyncIterator[RunningSandbox]:
    """The MOCO and MOCA demo data sets, synced into this test's database."""
    async with sandbox_in_thread(moco=moco, moca=MocaSandbox(MocaData())) as running:
        await sync_both(pool, running)
        yield running


async def sync_both(pool: Any, running: RunningSandbox) -> None:
    moca_settings = MocaSourceSettings(
        name="moca",
        base_url=running.moca_base_url,
        token=Secret("MOCA_API_TOKEN", "sandbox-moca-token"),
        rate_limit=RateLimit(1000, 1.0),
        analytics_since_s=10 * 86400.0,
    )
    async with aiohttp.ClientSession() as session:
        for settings in (moco_source(running.moco_base_url), moca_settings):
            result = await sync_source(pool, session, settings, backoff_base_s=0.01)
            assert result.ok, result.errors


# -- what a view column should hold --------------------------------------------------------------


def dig(record: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        record = record.get(key) if isinstance(record, dict) else None
    return record


def has_path(record: Any, path: tuple[str, ...]) -> bool:
    for key in path:
        if not isinstance(record, dict) or key not in record:
            return False
        record = record[key]
    return True


def typed(kind: str, value: Any) -> Any:
    """The typed value a well-shaped raw JSON value must become; AssertionError for a raw value
    whose JSON type does not fit the column's type (a wrong type in the migration)."""
    if value is None or value == "":
        return None
    number = isinstance(value, int | float) and not isinstance(value, bool)
    checks: dict[str, tuple[bool, Any]] = {
        "text": (isinstance(value, str), lambda: value),
        "bigint": (isinstance(value, int) and number, lambda: value),
        "numeric": (number, lambda: Decimal(str(value))),
        "boolean": (isinstance(value, bool), lambda: value),
        "date": (isinstance(value, str), lambda: date.fromisoformat(value)),
        "timestamptz": (isinstance(value, str), lambda: datetime.fromisoformat(value)),
        "epoch_ms": (
            isinstance(value, int) and number,
            lambda: EPOCH + timedelta(milliseconds=value),
        ),
        "text[]": (isinstance(value, list), lambda: [str(v) for v in value]),
        "jsonb": (True, lambda: value),
    }
    fits, convert = checks[kind]
    assert fits, f"a {kind} column got the JSON value {value!r}"
    return convert()


def from_view(kind: str, value: Any) -> Any:
    return orjson.loads(value) if kind == "jsonb" and value is not None else value


def mismatches(
    columns: dict[str, str], raw: dict[Any, Any], view: dict[Any, Any]
) -> list[tuple[Any, str, Any, Any]]:
    """(id, column, expected, found) for every view cell that differs from its raw value."""
    found = []
    for rid, row in view.items():
        data = orjson.loads(raw[rid]["data"])
        for column, spec in columns.items():
            if spec == VIEWS.COLUMN:
                expected, kind = raw[rid][column], "jsonb" if column == "query" else "text"
                expected = from_view(kind, expected)
            else:
                kind, path = VIEWS.field(spec, column)
                expected = typed(kind, dig(data, path))
            actual = from_view(kind, row[column])
            if actual != expected:
                found.append((rid, column, expected, actual))
        for column in ("updated_at", "_synced_at"):
            if row[column] != raw[rid][column]:
                found.append((rid, column, raw[rid][column], row[column]))
    return found


async def rows(pool: Any, sql: str, *args: Any) -> dict[Any, Any]:
    return {r["id"]: r for r in await pool.fetch(sql, *args)}


# -- the tests -----------------------------------------------------------------------------------


async def test_every_stream_of_both_sources_has_a_view_with_exactly_the_declared_columns(
    pool: Any,
) -> None:
    async with pool.acquire() as conn:
        await ensure_schema(conn, moco_source("http://127.0.0.1:1/api/v1"))
        await ensure_schema(conn, moca_source("http://127.0.0.1:1/v2"))
    assert set(VIEWS.MOCO_VIEWS) <= set(CATALOG.names)
    assert set(VIEWS.MOCA_VIEWS) == set(moca.STREAMS)
    for schema, raw_schema, name, columns in ALL[len(VIEWS.MOCO_VIEWS) :]:
        view = await column_types(pool, schema, name)
        raw = await column_types(pool, raw_schema, name)
        expected = [("id", raw["id"])]
        expected += [
            (c, raw[c] if s == VIEWS.COLUMN else PG_TYPES[VIEWS.field(s, c)[0]])
            for c, s in columns.items()
        ]
        expected += [("updated_at", "timestamptz"), ("_synced_at", "timestamptz")]
        assert list(view.items()) == expected, name
    for stream in CATALOG:  # every MOCO stream: the catalog's columns, typed as declared
        view = await column_types(pool, "moco_views", stream.name)
        raw = await column_types(pool, "moco", stream.name)
        expected = [
            (
                c.name,
                raw[c.path[0] if c.path else c.name] if c.type == RAW else PG_TYPES[c.type],
            )
            for c in stream.columns
        ]
        assert list(view.items()) == expected, stream.name


def moca_source(base_url: str) -> MocaSourceSettings:
    return MocaSourceSettings(
        name="moca",
        base_url=base_url,
        token=Secret("MOCA_API_TOKEN", "sandbox-moca-token"),
        rate_limit=RateLimit(1000, 1.0),
        analytics_since_s=10 * 86400.0,
    )


async def column_types(pool: Any, schema: str, table: str) -> dict[str, str]:
    found = await pool.fetch(
        "select column_name, udt_name from information_schema.columns"
        " where table_schema = $1 and table_name = $2 order by ordinal_position",
        schema,
        table,
    )
    return {r["column_name"]: r["udt_name"] for r in found}


async def test_every_view_selects_and_has_one_row_per_record_that_is_not_deleted(
    pool: Any, synced: RunningSandbox
) -> None:
    for schema, raw_schema, name, _ in ALL:
        raw = await pool.fetchval(
            f"select count(*) from {raw_schema}.{name} where _deleted_at is null"
        )
        assert raw > 0, name
        assert await pool.fetchval(f"select count(*) from {schema}.{name}") == raw, name
    buckets = await pool.fetchval("select count(*) from moca.analytics")
    assert buckets > 0
    assert await pool.fetchval("select count(*) from moca_views.analytics") == buckets


async def test_every_typed_column_of_every_view_equals_its_raw_value(
    pool: Any, synced: RunningSandbox
) -> None:
    problems: dict[str, Any] = {}
    for schema, raw_schema, name, columns in ALL:
        raw = await rows(pool, f"select * from {raw_schema}.{name}")
        view = await rows(pool, f"select * from {schema}.{name}")
        assert set(view) == set(raw), name
        records = [orjson.loads(r["data"]) for r in raw.values()]
        found = [*missing_paths(columns, records), *mismatches(columns, raw, view)[:5]]
        if found:
            problems[f"{schema}.{name}"] = found
    assert problems == {}


def missing_paths(columns: dict[str, str], records: list[Any]) -> list[str]:
    """Columns whose path is in no record (a misspelt key would be NULL on both sides), unless
    the reference holding it is null throughout (projects' secondary_contact in the sandbox)."""
    missing = []
    for column, spec in columns.items():
        if spec == VIEWS.COLUMN:
            continue
        path = VIEWS.field(spec, column)[1]
        parent = path[:-1]
        if not any(has_path(r, path) for r in records) and not (
            parent and all(has_path(r, parent) and dig(r, parent) is None for r in records)
        ):
            missing.append(f"{column}: no {'.'.join(path)} in data")
    return missing


async def test_analytics_view_equals_the_raw_buckets(pool: Any, synced: RunningSandbox) -> None:
    raw = await pool.fetch(
        'select app_id, metric, "interval", bucket_start, key, value from moca.analytics'
    )
    view = await pool.fetch(
        'select app_id, metric, "interval", bucket_start, geohash, value from moca_views.analytics'
    )
    expected = {(*r[:4], r["key"] or None, r["value"]) for r in raw}
    assert {tuple(r) for r in view} == expected
    assert any(r["geohash"] for r in view)
    assert any(r["geohash"] is None for r in view)


GOOD: dict[str, Any] = {
    "text": "Grüße aus Köln 🚀",
    "bigint": 9_007_199_254_740_993,
    "numeric": 1234567.891,
    "boolean": True,
    "date": "2024-02-29",
    "timestamptz": "2024-03-31T01:30:00.123+02:00",
    "epoch_ms": 1_700_000_000_123,
    "text[]": ["Süd", "Priorität ⭐"],
    "jsonb": {"Jira-Link": "https://jira.example.de/PRJ-1", "n": [1, 2]},
}
BAD: dict[str, Any] = {
    "text": "",
    "bigint": "zwölf",
    "numeric": "1,5",
    "boolean": "ja",
    "date": "31.12.2024",
    "timestamptz": "gestern 14 Uhr",
    "epoch_ms": "heute",
    "text[]": "Print",
    "jsonb": "",
}


def set_path(record: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        if not isinstance(record.get(key), dict):
            record[key] = {}
        record = record[key]
    record[path[-1]] = value


def reshaped(record: dict[str, Any], columns: dict[str, str], values: dict[str, Any]) -> Any:
    """`record` with a new field and every view column's value replaced by `values[type]`; for
    the bad values, nested references are replaced by a string (a parent of the wrong shape)."""
    record = {**copy.deepcopy(record), "a_field_added_later": {"nested": ["ä", 1, None]}}
    fields = [VIEWS.field(s, c) for c, s in columns.items() if s != VIEWS.COLUMN]
    for kind, path in sorted(fields, key=lambda f: len(f[1]), reverse=values is BAD):
        if values is BAD and len(path) > 1:
            record[path[0]] = "unerwartet"
        else:
            set_path(record, path, copy.deepcopy(values[kind]))
    return record


async def test_a_new_field_or_values_of_another_shape_do_not_break_a_view(
    pool: Any, synced: RunningSandbox
) -> None:
    for schema, raw_schema, name, columns in ALL:
        template = await pool.fetchval(f"select data from {raw_schema}.{name} limit 1")
        ids: tuple[Any, Any] = (
            (8_000_000_001, 8_000_000_002) if raw_schema == "moco" else ("new-good", "new-bad")
        )
        for rid, values in zip(ids, (GOOD, BAD), strict=True):
            data = orjson.dumps(reshaped(orjson.loads(template), columns, values)).decode()
            await pool.execute(
                f"insert into {raw_schema}.{name} (id, updated_at, data) values ($1, now(), $2)",
                rid,
                data,
            )
        raw = await rows(pool, f"select * from {raw_schema}.{name} where id = any($1)", ids)
        view = await rows(pool, f"select * from {schema}.{name} where id = any($1)", ids)
        assert set(view) == set(ids), name  # both visible: the view still selects
        # Well-shaped values, edges included (ids above 2**53, a leap day, an offset), are
        # typed exactly; values of another shape are NULL.
        good, bad = view[ids[0]], view[ids[1]]
        assert mismatches(columns, {ids[0]: raw[ids[0]]}, {ids[0]: good}) == [], name
        typed_columns = [c for c, s in columns.items() if s != VIEWS.COLUMN]
        assert [c for c in typed_columns if good[c] is None] == [], name
        assert [c for c in typed_columns if bad[c] is not None] == [], name
        assert await pool.fetchval(f"select count(*) from {schema}.{name}") == await pool.fetchval(
            f"select count(*) from {raw_schema}.{name} where _deleted_at is null"
        )


async def test_deleted_records_are_absent_from_the_views_and_kept_in_the_raw_tables(
    pool: Any, synced: RunningSandbox
) -> None:
    # MOCA: records deleted at the source, marked by the next sync.
    deleted = set(synced.moca.data.delete("beacons", 5))
    await sync_both(pool, synced)
    raw = await pool.fetch("select id from moca.beacons where _deleted_at is not null")
    assert {r["id"] for r in raw} == deleted
    view = await pool.fetch("select id from moca_views.beacons where id = any($1)", list(deleted))
    assert view == []
    # Every stream: a row marked deleted leaves its view and stays in its raw table.
    for schema, raw_schema, name, _ in ALL:
        rid = await pool.fetchval(
            f"update {raw_schema}.{name} set _deleted_at = now()"
            f" where id = (select min(id) from {raw_schema}.{name} where _deleted_at is null)"
            " returning id"
        )
        assert await pool.fetchval(f"select count(*) from {raw_schema}.{name} where id = $1", rid)
        assert not await pool.fetchval(f"select count(*) from {schema}.{name} where id = $1", rid)
        assert await pool.fetchval(f"select count(*) from {schema}.{name}") == await pool.fetchval(
            f"select count(*) from {raw_schema}.{name} where _deleted_at is null"
        )


async def test_a_downgrade_drops_the_views_and_their_schemas_and_keeps_the_raw_data(
    pool: Any, db_url: str, synced: RunningSandbox
) -> None:
    before = await pool.fetchval("select count(*) from moco.activities")
    await downgrade(db_url, "0005")
    schemas = "select count(*) from pg_namespace where nspname in ('moco_views', 'moca_views')"
    assert await pool.fetchval(schemas) == 0
    assert await pool.fetchval("select count(*) from moco.activities") == before
    await migrate(db_url)
    assert await pool.fetchval(schemas) == 2
    assert await pool.fetchval("select count(*) from moco_views.activities") == before


async def downgrade(url: str, revision: str) -> None:
    """Downgrades ``url`` to ``revision`` the way ``syncer.store.database.migrate`` upgrades."""

    async def creator() -> Any:
        return await asyncpg.connect(url)

    def run(connection: Any) -> None:
        config = Config(str(migrations_dir() / "alembic.ini"))
        config.attributes["connection"] = connection
        commands.downgrade(config, revision)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=creator, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            await conn.run_sync(run)
            await conn.commit()
    finally:
        await engine.dispose()
