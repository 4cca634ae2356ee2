"""A database made by the previous release upgrades in place, nothing lost.

The previous release (migration head 0010) wrote every MOCO source, whatever its name, into
schema ``moco``. Here a database is migrated to 0010 and filled as that release left it (rows in
``moco.*``, watermarks in ``syncer.streams``, MoEngage acks and dead letters), then today's
``syncer`` runs on it: ``[sources.moco]`` continues where it stopped, in ``moco.*``; a MOCO
source of another name is told how to keep its tables, and then keeps them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from syncer.extract.records import parse_timestamp
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.moco_data import MocoData
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moco.catalog import CATALOG
from syncer.store.database import migrations_dir, with_database
from tests.conftest import CLASSIC_STREAMS as MOCO_STREAMS
from tests.conftest import SANDBOX_KEY, sandbox_in_thread
from tests.integration.test_accounts import BUILT_IN_SCHEMAS, ids, sandbox_ids, schemas
from tests.integration.test_cli import Env, Ran, assert_one_error_line, syncer

PREVIOUS_HEAD = "0010"
COUNTS = dict.fromkeys(MOCO_STREAMS, 12)
KEPT_ID = 987_654_321  # a project only the earlier release saw: no sync may lose it


def _upgrade(connection: Any, revision: str) -> None:
    config = Config(str(migrations_dir() / "alembic.ini"))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


@pytest.fixture
async def old_db(pg_admin_url: str) -> AsyncIterator[str]:
    """A database at the previous release's migration head."""
    name = f"u_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(pg_admin_url)
    await admin.execute(f'create database "{name}"')
    url = with_database(pg_admin_url, name)

    async def creator() -> Any:
        return await asyncpg.connect(url)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=creator, poolclass=NullPool)
    try:
        async with engine.begin() as sa_conn:
            await sa_conn.run_sync(_upgrade, PREVIOUS_HEAD)
        yield url
    finally:
        await engine.dispose()
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


@pytest.fixture
async def old_pool(old_db: str) -> AsyncIterator[Any]:
    pool = await asyncpg.create_pool(old_db, min_size=1, max_size=4)
    yield pool
    await pool.close()


@pytest.fixture
async def account() -> AsyncIterator[RunningSandbox]:
    async with sandbox_in_thread(moco=MocoSandbox(MocoData(seed=31, counts=COUNTS))) as running:
        yield running


async def previous_release(pool: Any, moco: MocoSandbox, source: str) -> dict[str, datetime]:
    """Fill the database as the previous release left it after syncing ``source`` (any name)
    into ``moco.*``; the watermark of each stream."""
    marks: dict[str, datetime] = {}
    for stream in MOCO_STREAMS:
        records = moco.data.records(stream)
        rows = [
            (r["id"], parse_timestamp(r["updated_at"]), orjson.dumps(r).decode()) for r in records
        ]
        await pool.executemany(
            f"insert into moco.{stream} (id, updated_at, data) values ($1, $2, $3::jsonb)", rows
        )
        marks[stream] = max(updated for _, updated, _ in rows)
        await pool.execute(
            "insert into syncer.streams (source, stream, watermark, last_success_at)"
            " values ($1, $2, $3, now())",
            source,
            stream,
            marks[stream],
        )
    await pool.execute(
        "insert into moco.projects (id, updated_at, data) values ($1, $2, $3::jsonb)",
        KEPT_ID,
        datetime(2020, 1, 1, tzinfo=UTC),
        orjson.dumps({"id": KEPT_ID, "name": "kept from the earlier release"}).decode(),
    )
    await pool.executemany(
        "insert into syncer.acks (destination, model, key, hash) values ('moengage', $1, $2, $3)",
        [("users", "u-1", "h-1"), ("users", "u-2", "h-2"), ("events", "e-1", "h-3")],
    )
    await pool.execute(
        "insert into syncer.dead_letters (destination, model, key, hash, rule, reason, row)"
        " values ('moengage', 'users', 'u-3', 'h-4', 'forbidden_customer_id', 'r', '{}'::jsonb)"
    )
    return marks


async def load_state(pool: Any) -> list[tuple[Any, ...]]:
    acks = await pool.fetch("select destination, model, key, hash from syncer.acks order by key")
    letters = await pool.fetch(
        "select destination, model, key, hash, rule from syncer.dead_letters order by key"
    )
    return [tuple(r) for r in acks] + [tuple(r) for r in letters]


CLASSIC = (
    'streams = ["activities", "projects", "companies", "contacts",',
    '    "users", "invoices", "offers", "deals"]',
)


def write_config(
    path: Path,
    running: RunningSandbox,
    source: str,
    *extra: str,
    streams: tuple[str, ...] = CLASSIC,
) -> Path:
    path.write_text(
        "\n".join(
            [
                f"[sources.{source}]",
                'type = "moco"',
                f'base_url = "{running.moco_base_url}"',
                'api_key_env = "MOCO_API_KEY"',
                *streams,
                "rate_limit = { requests = 1000, per_seconds = 1 }",
                *extra,
                "",
                "[destinations.moengage]",
                'type = "moengage"',
                f'base_url = "{running.moengage_base_url}"',
                'workspace_id_env = "MOENGAGE_WORKSPACE_ID"',
                'api_key_env = "MOENGAGE_API_KEY"',
                "",
            ]
        )
    )
    return path


def environment(url: str, tmp_path: Path, running: RunningSandbox) -> Env:
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
    env.update(
        SYNCER_DATABASE_URL=url,
        SYNCER_HOME=str(tmp_path),
        MOCO_API_KEY=SANDBOX_KEY,
        MOENGAGE_WORKSPACE_ID=running.moengage.settings.workspace_id,
        MOENGAGE_API_KEY=running.moengage.settings.api_key,
    )
    return env


def assert_incremental(moco: MocoSandbox, marks: dict[str, datetime]) -> None:
    """Every list request asked only for what changed since (about) the old watermark."""
    streams = {f"/api/v1{CATALOG[s].path}": s for s in MOCO_STREAMS}
    requests = [r for r in moco.requests if r.path.startswith("/api/v1/")]
    assert {streams.get(r.path) for r in requests} == set(MOCO_STREAMS), requests
    for r in requests:
        stream = streams[r.path]
        since = parse_timestamp(r.query.get("updated_after"))
        assert since is not None, r
        assert marks[stream] - timedelta(days=1) <= since <= marks[stream], (r, marks[stream])


def expected_ids(moco: MocoSandbox) -> dict[str, set[int]]:
    expected = sandbox_ids(moco)
    expected["projects"] = expected["projects"] | {KEPT_ID}
    return expected


async def test_the_moco_source_continues_in_the_moco_schema_after_the_upgrade(
    old_db: str, old_pool: Any, account: RunningSandbox, tmp_path: Path
) -> None:
    moco = account.moco
    marks = await previous_release(old_pool, moco, "moco")
    before = await load_state(old_pool)
    changed = moco.data.update("projects", 2)
    moco.reset_log()
    config = write_config(tmp_path / "schedules.toml", account, "moco")
    env = environment(old_db, tmp_path, account)

    async def run(*args: str) -> Ran:
        return await syncer(*args, "--config", config, env=env, cwd=tmp_path)

    ran = await run("sync", "moco")
    assert ran.code == 0, ran
    assert_incremental(moco, marks)
    assert await ids(old_pool, "moco") == expected_ids(moco)
    served = {p["id"]: p["name"] for p in moco.data.records("projects")}
    for project in changed:
        name = await old_pool.fetchval(
            "select data->>'name' from moco.projects where id = $1", project
        )
        assert name == served[project]
    kept = await old_pool.fetchval("select data->>'name' from moco.projects where id = $1", KEPT_ID)
    assert kept == "kept from the earlier release"
    streams = await old_pool.fetch("select source, stream, watermark from syncer.streams")
    assert {r["source"] for r in streams} == {"moco"}
    assert all(r["watermark"] >= marks[r["stream"]] for r in streams)
    assert await schemas(old_pool) == BUILT_IN_SCHEMAS  # nothing outside moco.*
    assert await load_state(old_pool) == before

    ran = await run("migrate")
    assert ran.code == 0, ran
    ran = await run("status", "--json")
    assert ran.code == 0, ran
    document = orjson.loads(ran.stdout)
    rows = {s["stream"]: s["rows"] for s in document["streams"] if s["source"] == "moco"}
    assert rows == {  # every stream of the type; those not configured hold nothing
        s: len(expected_ids(moco)[s]) if s in MOCO_STREAMS else 0 for s in CATALOG.names
    }
    models = {m["model"]: m for m in document["destinations"]["moengage"]}
    assert (models["users"]["sent"], models["events"]["sent"]) == (2, 1)
    assert models["users"]["dead_letters"] == {"forbidden_customer_id": 1}
    assert await load_state(old_pool) == before


async def test_a_moco_source_of_another_name_is_told_to_keep_the_moco_schema(
    old_db: str, old_pool: Any, account: RunningSandbox, tmp_path: Path
) -> None:
    moco = account.moco
    marks = await previous_release(old_pool, moco, "acme")
    env = environment(old_db, tmp_path, account)

    config = write_config(tmp_path / "schedules.toml", account, "acme")
    ran = await syncer("sync", "acme", "--config", config, env=env, cwd=tmp_path)
    assert_one_error_line(
        ran,
        2,
        'source "acme" was synced by an earlier syncer into schema "moco"',
        'add schema = "moco" to [sources.acme]',
    )
    assert await schemas(old_pool) == BUILT_IN_SCHEMAS  # no schema acme
    assert await old_pool.fetchval("select count(*) from syncer.runs") == 0
    assert moco.requests == []

    # `syncer status` says the same, and creates nothing either.
    ran = await syncer("status", "--json", "--config", config, env=env, cwd=tmp_path)
    assert ran.code == 2, ran
    assert 'add schema = "moco" to [sources.acme]' in ran.output
    assert await schemas(old_pool) == BUILT_IN_SCHEMAS

    config = write_config(tmp_path / "schedules.toml", account, "acme", 'schema = "moco"')
    changed = moco.data.update("projects", 2)
    ran = await syncer("sync", "acme", "--config", config, env=env, cwd=tmp_path)
    assert ran.code == 0, ran
    assert_incremental(moco, marks)
    assert await ids(old_pool, "moco") == expected_ids(moco)
    served = {p["id"]: p["name"] for p in moco.data.records("projects")}
    for project in changed:
        name = await old_pool.fetchval(
            "select data->>'name' from moco.projects where id = $1", project
        )
        assert name == served[project]
    assert await schemas(old_pool) == BUILT_IN_SCHEMAS
    streams = await old_pool.fetch("select source, stream, watermark from syncer.streams")
    assert {r["source"] for r in streams} == {"acme"}
    assert all(r["watermark"] >= marks[r["stream"]] for r in streams)


async def test_a_configuration_of_the_previous_release_syncs_all_of_moco_after_the_upgrade(
    old_db: str, old_pool: Any, account: RunningSandbox, tmp_path: Path
) -> None:
    """A 0.2 configuration names no streams: after the upgrade it syncs every default stream,
    the eight it had incrementally from their watermarks, the others from the start."""
    moco = account.moco
    marks = await previous_release(old_pool, moco, "moco")
    before = await load_state(old_pool)
    moco.reset_log()
    config = write_config(tmp_path / "schedules.toml", account, "moco", streams=())
    env = environment(old_db, tmp_path, account)
    ran = await syncer("sync", "moco", "--config", config, env=env, cwd=tmp_path)
    assert ran.code == 0, ran
    classic = {f"/api/v1{CATALOG[s].path}": s for s in MOCO_STREAMS}
    for r in moco.requests:
        if r.path in classic:
            since = parse_timestamp(r.query.get("updated_after"))
            assert since is not None, r
            assert marks[classic[r.path]] - timedelta(days=1) <= since, r
    assert await ids(old_pool, "moco") == expected_ids(moco)
    for name in CATALOG.defaults:
        if CATALOG[name].verifiable:
            rows = await old_pool.fetch(f"select id from moco.{name} where _deleted_at is null")
            assert {r["id"] for r in rows} == {r["id"] for r in moco.data.records(name)}, name
    assert await load_state(old_pool) == before
