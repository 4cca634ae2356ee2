"""Several accounts of one vendor: ``[sources.acme]`` and ``[sources.globex]``, both MOCO, each
with its own key, schema, watermarks, rate ledger and views; and ``[sources.moco]`` as before.

Real subprocesses running ``syncer``, two MOCO sandboxes (one per account) over loopback, real
PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from syncer.config import Secret
from syncer.configfile import load_settings
from syncer.sandbox.moco import MocoSandbox, MocoSandboxSettings
from syncer.sandbox.moco_data import MocoData
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moca.settings import MocaSourceSettings
from syncer.sources.moco.catalog import CATALOG
from syncer.sources.moco.webhooks import WebhookReceiver, webhook_config
from syncer.store.rate import credential_scope
from syncer.warehouse import ensure_schema
from tests.conftest import CLASSIC_STREAMS as MOCO_STREAMS
from tests.conftest import moco_source, sandbox_in_thread
from tests.integration.test_cli import Env, Ran, syncer
from tests.integration.test_webhooks import SECRET, Receiver, project

ACME_KEY = "acme-key-1f7c3a"
GLOBEX_KEY = "globex-key-9e4b2d"
COUNTS = dict.fromkeys(MOCO_STREAMS, 15)
# The schemas a database has before any source other than the built-in ones is used.
BUILT_IN_SCHEMAS = {"syncer", "moco", "moca", "moco_views", "moca_views"}


@dataclass(frozen=True)
class Accounts:
    acme: RunningSandbox
    globex: RunningSandbox
    config: Path
    env: Env
    cwd: Path

    async def run(self, *args: str) -> Ran:
        return await syncer(*args, "--config", self.config, env=self.env, cwd=self.cwd)


def _account(seed: int, key: str) -> MocoSandbox:
    return MocoSandbox(
        MocoData(seed=seed, counts=COUNTS), MocoSandboxSettings(api_keys=frozenset({key}))
    )


@pytest.fixture
async def accounts(db_url: str, tmp_path: Path) -> AsyncIterator[Accounts]:
    """Two MOCO accounts with different data and keys, and a configuration naming both."""
    async with (
        sandbox_in_thread(moco=_account(21, ACME_KEY)) as acme,
        sandbox_in_thread(moco=_account(22, GLOBEX_KEY)) as globex,
    ):
        config = tmp_path / "schedules.toml"
        config.write_text(
            f"""
[sources.acme]
type = "moco"
base_url = "{acme.moco_base_url}"
api_key_env = "ACME_MOCO_KEY"
streams = ["activities", "projects", "companies", "contacts",
    "users", "invoices", "offers", "deals"]
rate_limit = {{ requests = 1000, per_seconds = 1 }}

[sources.globex]
type = "moco"
base_url = "{globex.moco_base_url}"
api_key_env = "GLOBEX_MOCO_KEY"
streams = ["activities", "projects", "companies", "contacts",
    "users", "invoices", "offers", "deals"]
rate_limit = {{ requests = 1000, per_seconds = 1 }}
"""
        )
        home = tmp_path / "home"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
        env.update(
            SYNCER_DATABASE_URL=db_url,
            SYNCER_HOME=str(home),
            ACME_MOCO_KEY=ACME_KEY,
            GLOBEX_MOCO_KEY=GLOBEX_KEY,
        )
        yield Accounts(acme, globex, config, env, tmp_path)


async def ids(pool: Any, schema: str) -> dict[str, set[int]]:
    return {
        s: {r["id"] for r in await pool.fetch(f'select id from "{schema}"."{s}"')}
        for s in MOCO_STREAMS
    }


def sandbox_ids(moco: MocoSandbox) -> dict[str, set[int]]:
    return {s: {r["id"] for r in moco.data.records(s)} for s in MOCO_STREAMS}


async def schemas(pool: Any) -> set[str]:
    rows = await pool.fetch(
        "select nspname from pg_namespace"
        " where nspname not like 'pg\\_%' and nspname not in ('information_schema', 'public')"
    )
    return {r["nspname"] for r in rows}


def list_requests(moco: MocoSandbox) -> list[Any]:
    return [r for r in moco.requests if r.path.startswith("/api/v1/")]


async def test_two_moco_accounts_sync_into_their_own_schemas(accounts: Accounts, pool: Any) -> None:
    acme, globex = accounts.acme.moco, accounts.globex.moco
    assert sandbox_ids(acme) != sandbox_ids(globex)  # different accounts, different records

    # Before any sync, `syncer status` shows both sources' streams empty, and creates nothing.
    ran = await accounts.run("status", "--json")
    assert ran.code == 0, ran
    streams = orjson.loads(ran.stdout)["streams"]
    assert {(s["source"], s["stream"], s["rows"]) for s in streams} == {
        (source, s, 0) for source in ("acme", "globex") for s in CATALOG.names
    }
    assert await schemas(pool) == BUILT_IN_SCHEMAS

    ran = await accounts.run("sync", "acme")
    assert ran.code == 0, ran
    assert await schemas(pool) == BUILT_IN_SCHEMAS | {"acme", "acme_views"}
    assert await ids(pool, "acme") == sandbox_ids(acme)
    assert list_requests(globex) == []

    ran = await accounts.run("sync", "globex")
    assert ran.code == 0, ran
    assert await schemas(pool) == BUILT_IN_SCHEMAS | {
        "acme",
        "acme_views",
        "globex",
        "globex_views",
    }
    assert await ids(pool, "acme") == sandbox_ids(acme)
    assert await ids(pool, "globex") == sandbox_ids(globex)
    # Nothing in the built-in source's tables.
    assert await ids(pool, "moco") == {s: set() for s in MOCO_STREAMS}

    # Watermarks per source and stream.
    marks = await pool.fetch("select source, stream, watermark from syncer.streams")
    assert {(r["source"], r["stream"]) for r in marks} == {
        (source, s) for source in ("acme", "globex") for s in MOCO_STREAMS
    }
    assert all(r["watermark"] is not None for r in marks)

    # The rate ledger: one scope per credential (the two keys at their two base URLs).
    scopes = {r["scope"] for r in await pool.fetch("select distinct scope from syncer.rate_log")}
    assert scopes == {
        credential_scope("moco", accounts.acme.moco_base_url, ACME_KEY),
        credential_scope("moco", accounts.globex.moco_base_url, GLOBEX_KEY),
    }

    # Each source's typed views, over its own tables.
    for schema, moco in (("acme", acme), ("globex", globex)):
        names = await pool.fetch(f"select id, name from {schema}_views.projects order by id")
        expected = sorted((p["id"], p["name"] or None) for p in moco.data.records("projects"))
        assert [(r["id"], r["name"]) for r in names] == expected

    # `syncer status --json`: both sources' streams with their rows.
    ran = await accounts.run("status", "--json")
    assert ran.code == 0, ran
    streams = orjson.loads(ran.stdout)["streams"]
    rows = {(s["source"], s["stream"]): s["rows"] for s in streams}
    assert rows == {  # every stream of the type; those not configured hold nothing
        (source, s): len(moco.data.records(s)) if s in MOCO_STREAMS else 0
        for source, moco in (("acme", acme), ("globex", globex))
        for s in CATALOG.names
    }

    # A second sync of acme is incremental, reads nothing of globex, and picks up the changes.
    acme.reset_log()
    globex.reset_log()
    changed = acme.data.update("projects", 3)
    ran = await accounts.run("sync", "acme")
    assert ran.code == 0, ran
    requests = list_requests(acme)
    assert len(requests) == len(MOCO_STREAMS), requests  # one page per stream
    assert all("updated_after" in r.query for r in requests), requests
    assert list_requests(globex) == []
    served = {p["id"]: p["name"] for p in acme.data.records("projects")}
    stored = {
        r["id"]: r["name"]
        for r in await pool.fetch(
            "select id, data->>'name' as name from acme.projects where id = any($1::bigint[])",
            changed,
        )
    }
    assert stored == {i: served[i] for i in changed}


async def test_two_accounts_synced_at_the_same_instant_both_succeed(
    accounts: Accounts, pool: Any
) -> None:
    """Two processes provision and fill their sources' schemas side by side."""
    first, second = await asyncio.gather(
        accounts.run("sync", "acme"), accounts.run("sync", "globex")
    )
    assert first.code == 0, first
    assert second.code == 0, second
    assert await ids(pool, "acme") == sandbox_ids(accounts.acme.moco)
    assert await ids(pool, "globex") == sandbox_ids(accounts.globex.moco)
    outcomes = await pool.fetch("select source, outcome from syncer.runs order by source")
    assert [(r["source"], r["outcome"]) for r in outcomes] == [
        ("acme", "succeeded"),
        ("globex", "succeeded"),
    ]


async def test_a_source_named_moco_still_writes_the_moco_schema(
    db_url: str, tmp_path: Path, sandbox: RunningSandbox, pool: Any
) -> None:
    config = tmp_path / "schedules.toml"
    config.write_text(
        f"""
[sources.moco]
type = "moco"
base_url = "{sandbox.moco_base_url}"
api_key_env = "MOCO_API_KEY"
streams = ["activities", "projects", "companies", "contacts",
    "users", "invoices", "offers", "deals"]
rate_limit = {{ requests = 1000, per_seconds = 1 }}
"""
    )
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
    env.update(
        SYNCER_DATABASE_URL=db_url, SYNCER_HOME=str(tmp_path), MOCO_API_KEY="sandbox-moco-key"
    )
    ran = await syncer("sync", "moco", "--config", config, env=env, cwd=tmp_path)
    assert ran.code == 0, ran
    assert await schemas(pool) == BUILT_IN_SCHEMAS
    assert await ids(pool, "moco") == sandbox_ids(sandbox.moco)
    live = await pool.fetchval("select count(*) from moco_views.projects")
    assert live == len(sandbox.moco.data.records("projects"))


# --- provisioning (syncer.warehouse.ensure_schema) ---------------------------------------------


async def relations(pool: Any, schema: str, kind: str) -> int:
    count: int = await pool.fetchval(
        "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace"
        " where n.nspname = $1 and c.relkind::text = $2",
        schema,
        kind,
    )
    return count


async def test_a_new_source_schema_is_made_once_by_processes_starting_together(
    pool: Any,
) -> None:
    acme = moco_source("http://127.0.0.1:9/api/v1", name="acme")
    beacons = MocaSourceSettings(
        name="beacons", base_url="http://127.0.0.1:9/v1", token=Secret("MOCA_TOKEN", "t")
    )
    connections = [await pool.acquire() for _ in range(4)]
    try:
        await asyncio.gather(
            *(
                ensure_schema(c, s)
                for c, s in zip(connections, (acme, acme, beacons, beacons), strict=True)
            )
        )
        await ensure_schema(connections[0], acme)  # again: nothing to do
    finally:
        for conn in connections:
            await pool.release(conn)
    assert await schemas(pool) == BUILT_IN_SCHEMAS | {
        "acme",
        "acme_views",
        "beacons",
        "beacons_views",
    }
    async with pool.acquire() as conn:  # the built-in schemas, provisioned as a sync does
        await ensure_schema(conn, moco_source("http://127.0.0.1:9/api/v1"))
        await ensure_schema(
            conn,
            MocaSourceSettings(
                name="moca", base_url="http://127.0.0.1:9/v1", token=Secret("T", "t")
            ),
        )
    # The same tables, indexes and views as the built-in schemas.
    for schema, built_in in (("acme", "moco"), ("beacons", "moca")):
        for kind in ("r", "i", "v"):
            assert await relations(pool, schema, kind) == await relations(pool, built_in, kind)
        views = f"{schema}_views"
        assert await relations(pool, views, "v") == await relations(pool, f"{built_in}_views", "v")
        assert await relations(pool, views, "v") > 0
    assert await pool.fetchval("select count(*) from acme_views.projects") == 0
    assert await pool.fetchval("select count(*) from beacons_views.analytics_ranges") == 0


async def test_a_provisioned_schema_takes_no_lock_when_used_again(pool: Any) -> None:
    """An analyst's open transaction on a view, and a write in progress, do not hold it up:
    nothing is created again (``create or replace view`` would wait for the reader)."""
    acme = moco_source("http://127.0.0.1:9/api/v1", name="acme")
    async with pool.acquire() as conn:
        await ensure_schema(conn, acme)
    async with pool.acquire() as reader, reader.transaction():
        await reader.fetchval("select count(*) from acme_views.projects")
        await reader.execute("insert into acme.projects (id, data) values (1, '{}')")
        async with pool.acquire() as conn:
            await conn.execute("set lock_timeout = '1ms'")  # any wait for a lock fails
            await ensure_schema(conn, acme)
            await conn.execute("reset lock_timeout")


async def test_the_built_in_schema_is_provisioned_once_per_layout(pool: Any) -> None:
    """The migrations make the eight tables of release 0.2; the first sync provisions the rest
    of the catalog's, once: a view dropped afterwards by hand stays dropped (nothing is made
    again while the catalog's layout is the one recorded)."""
    moco = moco_source("http://127.0.0.1:9/api/v1")
    assert await relations(pool, "moco", "r") == len(MOCO_STREAMS)
    async with pool.acquire() as conn:
        await ensure_schema(conn, moco)
    assert await relations(pool, "moco", "r") == len(CATALOG)
    await pool.execute("drop view moco_views.deals")
    async with pool.acquire() as conn:
        await ensure_schema(conn, moco)
    assert await schemas(pool) == BUILT_IN_SCHEMAS
    assert await pool.fetchval("select to_regclass('moco_views.deals')") is None


# --- webhooks for a source of another name -----------------------------------------------------


async def test_webhooks_of_a_source_of_another_name_land_in_its_schema(
    pool: Any, tmp_path: Path
) -> None:
    config = tmp_path / "schedules.toml"
    config.write_text(
        """
[sources.acme]
type = "moco"
base_url = "http://127.0.0.1:9/api/v1"
api_key_env = "ACME_MOCO_KEY"
streams = ["activities", "projects", "companies", "contacts",
    "users", "invoices", "offers", "deals"]
webhook_secret_env = "ACME_WEBHOOK_SECRET"
"""
    )
    environ = {"ACME_MOCO_KEY": ACME_KEY, "ACME_WEBHOOK_SECRET": SECRET}
    settings = load_settings(config, environ)
    hooks = webhook_config(settings, environ)
    assert (hooks.source, hooks.schema) == ("acme", "acme")
    async with pool.acquire() as conn:  # as `syncer webhooks serve` does before serving
        await ensure_schema(conn, settings.source("acme"))
    served = WebhookReceiver(pool, hooks)
    runner = web.AppRunner(served.app(), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}"
        async with aiohttp.ClientSession() as session:
            receiver = Receiver(url, served, session)
            status, answer = await receiver.post(project(5, 1), event="create")
    finally:
        await runner.cleanup()
    assert (status, answer) == (200, {"status": "applied", "changed": True})
    assert await pool.fetchval("select data->>'name' from acme.projects where id = 5") == "v1"
    assert await pool.fetchval("select count(*) from moco.projects") == 0
