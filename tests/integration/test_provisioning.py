"""A source's tables and views follow its catalog: made on first use, brought up to date when
the catalog changes, never dropped with data in them, and no DDL at all when up to date."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from syncer.errors import ConfigError
from syncer.sources.moco.catalog import CATALOG
from syncer.store import locks
from syncer.warehouse import ensure_schema, layout_digest, schema_ready
from tests.conftest import moco_source

SOURCE = moco_source("http://127.0.0.1:9/api/v1")


async def relations(pool: Any, schema: str, kind: str) -> set[str]:
    rows = await pool.fetch(
        "select c.relname from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = $1 and c.relkind::text = $2",
        schema,
        kind,
    )
    return {r["relname"] for r in rows}


async def view_columns(pool: Any, view: str) -> list[str]:
    rows = await pool.fetch(
        "select attname from pg_attribute where attrelid = $1::regclass and attnum > 0"
        " and not attisdropped order by attnum",
        view,
    )
    return [r["attname"] for r in rows]


async def test_first_use_makes_every_catalog_table_and_view(pool: Any) -> None:
    async with pool.acquire() as conn:
        await ensure_schema(conn, SOURCE)
    assert await relations(pool, "moco", "r") >= set(CATALOG.names)
    assert await relations(pool, "moco_views", "v") == set(CATALOG.names)
    recorded = await pool.fetchrow("select * from syncer.provisioned where schema = 'moco'")
    assert recorded["source_type"] == "moco"
    assert recorded["fingerprint"] == layout_digest(SOURCE)
    for stream in CATALOG:
        assert await view_columns(pool, f"moco_views.{stream.name}") == [
            c.name for c in stream.columns
        ]
        await pool.fetch(f"select * from moco_views.{stream.name}")  # every view selects


async def test_an_up_to_date_source_runs_no_ddl_and_takes_no_lock(pool: Any) -> None:
    async with pool.acquire() as conn:
        await ensure_schema(conn, SOURCE)
    async with pool.acquire() as holder:  # as a provisioning process in the middle would
        await holder.execute("select pg_advisory_lock($1, hashtext('moco'))", locks.PROVISION)
        async with pool.acquire() as conn:
            await asyncio.wait_for(ensure_schema(conn, SOURCE), timeout=10)
        await holder.execute("select pg_advisory_unlock_all()")


async def test_a_changed_catalog_adds_what_it_lacks_and_keeps_the_rows(pool: Any) -> None:
    async with pool.acquire() as conn:
        await ensure_schema(conn, SOURCE)
    await pool.execute(
        'insert into moco.todos (id, updated_at, data) values (1, now(), \'{"title": "x"}\')'
    )
    # As if an earlier catalog had made these: a table and a view less, a view with fewer
    # columns that an analyst's view depends on.
    await pool.execute("drop view moco_views.tags; drop table moco.tags")
    await pool.execute("drop view moco_views.todos")
    first = CATALOG["todos"].columns[:2]
    assert [c.name for c in first] == ["id", "title"]
    await pool.execute(
        "create view moco_views.todos as select id, nullif(data->>'title', '') as title"
        " from moco.todos"
    )
    await pool.execute("create view public.open_todos as select id from moco_views.todos")
    await pool.execute("update syncer.provisioned set fingerprint = 'moco:earlier'")
    async with pool.acquire() as conn:
        await ensure_schema(conn, SOURCE)
    assert "tags" in await relations(pool, "moco", "r")
    assert "tags" in await relations(pool, "moco_views", "v")
    columns = await view_columns(pool, "moco_views.todos")
    assert columns == [c.name for c in CATALOG["todos"].columns]  # replaced in place: its
    # dependent stays (a newer catalog only ever adds columns at the end)
    assert await pool.fetchval("select count(*) from public.open_todos") == 1
    assert await pool.fetchval("select count(*) from moco.todos") == 1


async def test_a_wider_view_of_a_newer_release_is_left_as_it_is(pool: Any) -> None:
    async with pool.acquire() as conn:
        await ensure_schema(conn, SOURCE)
    wider = [c.name for c in CATALOG["units"].columns]
    body = (await pool.fetchval("select pg_get_viewdef('moco_views.units'::regclass)")).strip()
    await pool.execute(
        "create or replace view moco_views.units as select q.*, 1 as newer_column from ("
        f"{body.rstrip(';')}) q"
    )
    await pool.execute("update syncer.provisioned set fingerprint = 'moco:newer'")
    async with pool.acquire() as conn:
        await ensure_schema(conn, SOURCE)
    assert await view_columns(pool, "moco_views.units") == [*wider, "newer_column"]


async def test_a_view_whose_columns_changed_is_made_again_unless_others_depend_on_it(
    pool: Any,
) -> None:
    async with pool.acquire() as conn:
        await ensure_schema(conn, SOURCE)
    await pool.execute("drop view moco_views.units")
    await pool.execute(
        "create view moco_views.units as select updated_at as first_column, id from moco.units"
    )
    await pool.execute("update syncer.provisioned set fingerprint = 'moco:other'")
    async with pool.acquire() as conn:
        await ensure_schema(conn, SOURCE)
    assert await view_columns(pool, "moco_views.units") == [
        c.name for c in CATALOG["units"].columns
    ]
    await pool.execute("drop view moco_views.units")
    await pool.execute("create view moco_views.units as select updated_at, id from moco.units")
    await pool.execute("create view public.unit_ids as select id from moco_views.units")
    await pool.execute("update syncer.provisioned set fingerprint = 'moco:other'")
    async with pool.acquire() as conn:
        with pytest.raises(ConfigError, match="other views depend on it"):
            await ensure_schema(conn, SOURCE)
    # Nothing was left half-made: the schema is as it was, and so is the record.
    assert await pool.fetchval("select fingerprint from syncer.provisioned") == "moco:other"
    assert await view_columns(pool, "moco_views.units") == ["updated_at", "id"]


async def test_status_of_a_source_never_synced_creates_nothing(pool: Any) -> None:
    acme = moco_source("http://127.0.0.1:9/api/v1", name="acme")
    async with pool.acquire() as conn:
        assert not await schema_ready(conn, acme)
    assert await relations(pool, "acme", "r") == set()
    async with pool.acquire() as conn:
        await ensure_schema(conn, acme)
        assert await schema_ready(conn, acme)
    assert await relations(pool, "acme", "r") >= set(CATALOG.names)
