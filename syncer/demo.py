"""``syncer demo``: the whole path with zero set-up, on loopback and the embedded PostgreSQL.

It starts the MOCO and MoEngage sandboxes, syncs everything into a fresh ``syncer_demo``
database (the user's own ``syncer`` database is never touched), changes a few records at the
source, syncs again incrementally, checks the warehouse against the source, loads users and
business events into MoEngage with the default models plus each MOCO activity as a "Time Logged"
event (some generated descriptions are longer than the 512 characters MoEngage keeps, so the
summary shows values cut and counted, the events still sent), and prints what happened.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import aiohttp
import orjson
from rich.console import Console
from rich.table import Table

from syncer.config import RateLimit, Secret, Settings
from syncer.destinations.moengage import models
from syncer.destinations.moengage.load import load_destination
from syncer.destinations.moengage.settings import ModelSettings, MoengageRateLimit, MoengageSettings
from syncer.errors import EXIT_FAILED, EXIT_OK
from syncer.loading import LoadResult
from syncer.pipeline import sync_source
from syncer.results import SyncResult
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import running_sandbox
from syncer.sources.moca import api as moca_streams
from syncer.sources.moca.settings import MocaSourceSettings
from syncer.sources.moco import api as moco_source
from syncer.sources.moco.settings import MocoSourceSettings
from syncer.store import database
from syncer.store.types import Pool

# The default events, and each activity of a customer's project as "Time Logged" with its hours
# and description: the kind of model a user writes, and the one that meets MoEngage's limits.
DEMO_EVENTS = f"""
select * from ({models.EVENTS}) as business
union all
select 'moco-activity-' || a.id, 'moco-company-' || (a.data #>> '{{customer,id}}'),
       'Time Logged', (a.data->>'date')::timestamptz,
       jsonb_strip_nulls(jsonb_build_object(
           'activity_id', a.id, 'hours', (a.data->>'hours')::numeric,
           'project_id', (a.data #>> '{{project,id}}')::bigint,
           'description', a.data->>'description'
       ))
from moco.activities a
join moco.companies co on co.id = (a.data #>> '{{customer,id}}')::bigint
where a._deleted_at is null and co._deleted_at is null and co.data->>'type' = 'customer'
"""

DEMO_DATABASE = "syncer_demo"
SANDBOX_KEY = "sandbox-moco-key"


async def fresh_demo_database(settings: Settings) -> str:
    admin = await asyncio.to_thread(database.start_embedded, settings.home)
    conn = await database.connect(admin)
    try:
        await conn.execute(f'drop database if exists "{DEMO_DATABASE}" with (force)')
        await conn.execute(f'create database "{DEMO_DATABASE}"')
    finally:
        await conn.close()
    url = database.with_database(admin, DEMO_DATABASE)
    await database.migrate(url)
    return url


async def run_demo(settings: Settings) -> int:
    console = Console(soft_wrap=True)
    started = time.monotonic()
    console.print(
        "[bold]syncer demo[/bold]: MOCO + MOCA sandboxes → embedded PostgreSQL → MoEngage sandbox"
    )
    url = await fresh_demo_database(settings)
    console.print(f"  database  {database.redact(url)}  (fresh, migrated)")
    sandbox = MocoSandbox()
    async with (
        running_sandbox(moco=sandbox) as running,
        database.open_pool(url, max_size=6) as pool,
        aiohttp.ClientSession() as session,
    ):
        console.print(f"  MOCO      {running.moco_base_url}  (sandbox, generated data)")
        source = MocoSourceSettings(
            name="moco",
            base_url=running.moco_base_url,
            api_key=Secret("MOCO_API_KEY", SANDBOX_KEY),
            rate_limit=RateLimit(
                sandbox.settings.rate_limit_requests, sandbox.settings.rate_limit_window_s
            ),
        )
        first = await sync_source(pool, session, source, command="syncer demo (full)")
        _print_run(console, "1. first sync: every record", first)

        changed = sandbox.data.update("activities", 120) + sandbox.data.update("deals", 15)
        created = sandbox.data.create("activities", 40) + sandbox.data.create("contacts", 5)
        console.print(
            f"\n  meanwhile at the source: {len(changed)} records changed, {len(created)} created"
        )
        second = await sync_source(pool, session, source, command="syncer demo (incremental)")
        _print_run(console, "2. incremental sync: only what changed", second)

        mismatches = await _compare(pool, sandbox)
        total = sum(len(sandbox.data.live(s)) for s in moco_source.STREAMS)

        moca = MocaSourceSettings(
            name="moca",
            base_url=running.moca_base_url,
            token=Secret("MOCA_API_TOKEN", sorted(running.moca.settings.tokens)[0]),
            # MOCA documents no limit; syncer's default is a polite 10/s. The sandbox has none.
            rate_limit=RateLimit(100, 1.0),
        )
        console.print(f"\n  MOCA      {running.moca_base_url}  (sandbox, generated data)")
        scanned = await sync_source(pool, session, moca, command="syncer demo (moca)")
        _print_run(console, "2b. MOCA sync: beacons, places, campaigns, analytics", scanned, "moca")
        mismatches += await _compare_moca(pool, running.moca)
        total += sum(len(running.moca.data.records(s)) for s in moca_streams.STREAMS)

        moe = running.moengage.settings
        destination = MoengageSettings(
            name="moengage",
            base_url=running.moengage_base_url,
            workspace_id=Secret("MOENGAGE_WORKSPACE_ID", moe.workspace_id),
            api_key=Secret("MOENGAGE_API_KEY", moe.api_key),
            rate_limit=MoengageRateLimit(moe.users_per_window, moe.events_per_window, moe.window_s),
            events=ModelSettings(DEMO_EVENTS),
        )
        loaded = await load_destination(pool, session, destination, command="syncer demo (load)")
        _print_load(console, loaded, running.moengage)
    if mismatches:
        console.print(f"[red]✗ the warehouse differs from the source: {', '.join(mismatches)}")
    else:
        console.print(
            f"\n[green]✓[/green] warehouse equals the sources: {total} records in "
            f"{len(moco_source.STREAMS) + len(moca_streams.STREAMS)} tables, one row each"
        )
    console.print(f"  done in {time.monotonic() - started:.1f}s")
    console.print(
        f'\nLook around:  psql "{url}"\n'
        "  e.g. select name, active, customer_id, budget from moco_views.projects limit 5;\n"
        "  (moco.* and moca.* hold the records as served; moco_views.* and moca_views.* type them)"
    )
    ok = first.ok and second.ok and scanned.ok and not mismatches and loaded.ok
    return EXIT_OK if ok else EXIT_FAILED


async def _compare(pool: object, sandbox: MocoSandbox) -> list[str]:
    """Streams whose table differs from the source (ignoring per-read fields)."""
    mismatches = []
    for name, spec in moco_source.STREAMS.items():
        rows = await pool.fetch(f"select id, data from moco.{name}")  # type: ignore[attr-defined]
        stored = {r["id"]: _stable(orjson.loads(r["data"]), spec.volatile) for r in rows}
        served = {r["id"]: _stable(r, spec.volatile) for r in sandbox.data.records(name)}
        if stored != served:
            mismatches.append(name)
    return mismatches


async def _compare_moca(pool: Pool, sandbox: Any) -> list[str]:
    """MOCA streams whose live rows differ from the source (secrets are never stored)."""
    mismatches = []
    for name, spec in moca_streams.STREAMS.items():
        rows = await pool.fetch(f"select id, data from moca.{name} where _deleted_at is null")
        stored = {r["id"]: orjson.loads(r["data"]) for r in rows}
        served = {
            r[spec.id_field]: {k: v for k, v in r.items() if k not in spec.redact}
            for r in sandbox.data.records(name)
        }
        if stored != served:
            mismatches.append(f"moca.{name}")
    return mismatches


def _stable(record: dict[str, object], volatile: tuple[str, ...]) -> dict[str, object]:
    return {k: v for k, v in record.items() if k not in volatile}


def _print_load(console: Console, result: LoadResult, sandbox: Any) -> None:
    summary = result.to_json()
    console.print(
        "\n[bold]3. load MoEngage[/bold]: users and business events "
        "(the default models, and activities as Time Logged)"
    )
    table = Table(title_justify="left")
    for column in ("model", "sent", "arrived at MoEngage"):
        table.add_column(column, justify="left" if column == "model" else "right")
    arrived = {
        "users": len(sandbox.users),
        "devices": len(sandbox.devices),
        "events": len(sandbox.events),
    }
    for model in ("users", "devices", "events"):
        table.add_row(model, str(result.sent.get(model, 0)), str(arrived[model]))
    console.print(table)
    console.print(
        f"  {summary['batches']} requests, {summary['bytes']} bytes: mean "
        f"{summary['mean_body_bytes']}, max {summary['max_body_bytes']} bytes per body "
        f"(limit 100000); {summary['rate_limited']} answered 429; "
        f"{len(sandbox.drops)} silently dropped by MoEngage"
    )
    letters = ", ".join(f"{k}: {n}" for k, n in sorted(result.dead_letters.items())) or "none"
    console.print(f"  dead letters (invalid rows kept back, with reasons): {letters}")
    cuts = (
        ", ".join(f"{n} in {where}" for where, n in sorted(summary["truncated"].items())) or "none"
    )
    console.print(f"  values cut to MoEngage's limits and sent (512 characters): {cuts}")
    events = Counter(e.action for e in sandbox.events)
    console.print("  events: " + ", ".join(f"{n} {a}" for a, n in sorted(events.items())))
    if not result.ok:
        console.print(f"[red]✗ {result.error}")


def _print_run(console: Console, title: str, result: SyncResult, schema: str = "moco") -> None:
    table = Table(title=title, title_justify="left")
    for column in ("table", "requests", "records", "changed", "rejected", "outcome"):
        table.add_column(column, justify="left" if column in ("table", "outcome") else "right")
    for s in result.streams:
        table.add_row(
            f"{schema}.{s.stream}",
            str(s.http.requests),
            str(s.records),
            str(s.upserted),
            str(s.rejected),
            s.outcome,
        )
    console.print()
    console.print(table)
    http = result.http
    console.print(
        f"  {http.requests} requests, {http.rate_limited} answered 429, {result.elapsed_s:.1f}s"
    )
