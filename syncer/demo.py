"""``syncer demo``: the whole path with zero set-up, on loopback and the embedded PostgreSQL.

It starts the MOCO, MOCA and MoEngage sandboxes, syncs every MOCO record stream of the catalog
into a fresh ``syncer_demo`` database (the user's own ``syncer`` database is never touched),
changes records at the source and syncs again incrementally; then makes records appear at the
source with an old ``updated_at`` (as an import or a restore does) and deletes a few, which an
incremental sync cannot see, and shows ``syncer verify`` finding and repairing them; checks the
warehouse against the source, loads users and business events into MoEngage with the default
models plus each MOCO activity as a "Time Logged" event (some generated descriptions are longer
than the 512 characters MoEngage keeps, so the summary shows values cut and counted, the events
still sent), and prints what happened.
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
from syncer.destinations.moengage.load import MoengageDestination
from syncer.destinations.moengage.settings import ModelSettings, MoengageRateLimit, MoengageSettings
from syncer.errors import EXIT_FAILED, EXIT_OK
from syncer.results import LoadResult, SyncResult, VerifyResult
from syncer.runners.load import load
from syncer.runners.sync import sync_source
from syncer.runners.verify import verify_source
from syncer.sandbox.moco import MocoSandbox, MocoSandboxSettings
from syncer.sandbox.server import running_sandbox
from syncer.sources.moca import api as moca_streams
from syncer.sources.moca.settings import MocaSourceSettings
from syncer.sources.moco.catalog import CATALOG
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

# Every record stream (reports and detail reads are opt-in).
source_streams = CATALOG.defaults
# The sandbox's limit for the demo: MOCO's "unlimited" plan is 1,200 a 2 minutes; the sandbox
# allows more, so the demo's two thousand requests take seconds, paced all the same.
DEMO_RATE = RateLimit(6000, 60.0)
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
    sandbox = MocoSandbox(
        settings=MocoSandboxSettings(
            rate_limit_requests=DEMO_RATE.requests, rate_limit_window_s=DEMO_RATE.per_seconds
        )
    )
    async with (
        running_sandbox(moco=sandbox) as running,
        database.open_pool(url, max_size=8) as pool,
        aiohttp.ClientSession() as session,
    ):
        console.print(f"  MOCO      {running.moco_base_url}  (sandbox, generated data)")
        source = MocoSourceSettings(
            name="moco",
            base_url=running.moco_base_url,
            api_key=Secret("MOCO_API_KEY", SANDBOX_KEY),
            streams=source_streams,
            rate_limit=DEMO_RATE,
        )
        first = await sync_source(pool, session, source, command="syncer demo (full)")
        _print_by_strategy(console, f"1. first sync: {len(source_streams)} MOCO streams", first)

        changed = sandbox.data.update("activities", 120) + sandbox.data.update("deals", 15)
        changed += sandbox.data.update("receipts", 3) + sandbox.data.update("todos", 2)
        created = sandbox.data.create("activities", 40) + sandbox.data.create("contacts", 5)
        created += sandbox.data.create("project_tasks", 4) + sandbox.data.create("schedules", 6)
        console.print(
            f"\n  meanwhile at the source: {len(changed)} records changed, {len(created)} created"
        )
        second = await sync_source(pool, session, source, command="syncer demo (incremental)")
        _print_changed(console, "2. incremental sync: only what changed", second)

        hidden = sandbox.data.backdate(9, ["activities", "contacts", "deals", "invoices"])
        gone = sandbox.data.delete("activities", 2) + sandbox.data.delete("companies", 1)
        blind = await sync_source(pool, session, source, command="syncer demo (incremental)")
        console.print(
            f"\n  then {sum(len(v) for v in hidden.values())} records appear with an updated_at "
            f"6 to 12 weeks old (an import, a restore) and {len(gone)} are deleted: the next "
            f"incremental sync cannot see them ({blind.http.requests} requests, "
            f"{sum(s.upserted for s in blind.streams)} changed)"
        )
        verified = await verify_source(pool, session, source, command="syncer demo (verify)")
        _print_verify(console, verified)
        again = await verify_source(pool, session, source, command="syncer demo (verify)")
        console.print(
            f"  verify again: {sum(s.missing + s.extra for s in again.streams)} differences, "
            f"{again.http.requests} requests ({len(again.streams)} streams)"
        )

        mismatches = await _compare(pool, sandbox)
        total = sum(len(sandbox.data.live(s)) for s in source_streams if CATALOG[s].verifiable)

        moca = MocaSourceSettings(
            name="moca",
            base_url=running.moca_base_url,
            token=Secret("MOCA_API_TOKEN", sorted(running.moca.settings.tokens)[0]),
            # MOCA documents no limit; syncer's default is a polite 10/s. The sandbox has none.
            rate_limit=RateLimit(100, 1.0),
        )
        console.print(f"\n  MOCA      {running.moca_base_url}  (sandbox, generated data)")
        scanned = await sync_source(pool, session, moca, command="syncer demo (moca)")
        _print_run(console, "4. MOCA sync: beacons, places, campaigns, analytics", scanned, "moca")
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
        moengage = MoengageDestination(destination)
        loaded = await load(pool, session, moengage, command="syncer demo (load)")
        _print_load(console, loaded, running.moengage)
    if mismatches:
        console.print(f"[red]✗ the warehouse differs from the source: {', '.join(mismatches)}")
    else:
        console.print(
            f"\n[green]✓[/green] warehouse equals the sources: {total} records in "
            f"{len(compared) + len(moca_streams.STREAMS)} tables, one row each"
        )
    console.print(f"  done in {time.monotonic() - started:.1f}s")
    console.print(
        f'\nLook around:  psql "{url}"\n'
        "  e.g. select name, active, customer_id, budget from moco_views.projects limit 5;\n"
        "  (moco.* and moca.* hold the records as served; moco_views.* and moca_views.* type them)"
    )
    ok = first.ok and second.ok and verified.ok and scanned.ok and not mismatches and loaded.ok
    return EXIT_OK if ok else EXIT_FAILED


compared = [s for s in source_streams if CATALOG[s].verifiable]


async def _compare(pool: Pool, sandbox: MocoSandbox) -> list[str]:
    """Streams whose live rows differ from the source (ignoring per-read fields)."""
    mismatches = []
    for name in compared:
        spec = CATALOG[name]
        rows = await pool.fetch(f"select id, data from moco.{name} where _deleted_at is null")
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
        "\n[bold]5. load MoEngage[/bold]: users and business events "
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


def _print_by_strategy(console: Console, title: str, result: SyncResult) -> None:
    """A sync of many streams, a row per strategy."""
    table = Table(title=title, title_justify="left")
    for column in ("strategy", "streams", "requests", "records", "failed"):
        table.add_column(column, justify="left" if column == "strategy" else "right")
    groups: dict[str, list[Any]] = {}
    for s in result.streams:
        groups.setdefault(CATALOG[s.stream].strategy_text, []).append(s)
    for strategy, streams in groups.items():
        table.add_row(
            strategy,
            str(len(streams)),
            str(sum(s.http.requests for s in streams)),
            str(sum(s.records for s in streams)),
            str(sum(1 for s in streams if s.outcome != "succeeded")),
        )
    console.print()
    console.print(table)
    http = result.http
    console.print(
        f"  {http.requests} requests, {http.rate_limited} answered 429, {result.elapsed_s:.1f}s"
    )


def _print_changed(console: Console, title: str, result: SyncResult) -> None:
    """A sync: the streams that read anything changed, and the cost of the rest."""
    table = Table(title=title, title_justify="left")
    for column in ("table", "requests", "records", "changed"):
        table.add_column(column, justify="left" if column == "table" else "right")
    quiet = [s for s in result.streams if not s.upserted]
    for s in result.streams:
        if s.upserted:
            table.add_row(f"moco.{s.stream}", str(s.http.requests), str(s.records), str(s.upserted))
    console.print()
    console.print(table)
    console.print(
        f"  {len(quiet)} streams unchanged: {sum(s.http.requests for s in quiet)} requests "
        "(one each; one a project for a project's tasks and contracts)"
    )
    console.print(
        f"  {result.http.requests} requests, {result.http.rate_limited} answered 429, "
        f"{result.elapsed_s:.1f}s"
    )


def _print_verify(console: Console, result: VerifyResult) -> None:
    table = Table(
        title="3. verify: the warehouse against MOCO's own counts, repaired", title_justify="left"
    )
    for column in ("table", "source", "warehouse", "missing", "extra", "repaired", "requests"):
        table.add_column(column, justify="left" if column == "table" else "right")
    for s in result.streams:
        if s.missing or s.extra:
            table.add_row(
                f"moco.{s.stream}",
                str(s.source_count),
                str(s.warehouse_count),
                str(s.missing),
                str(s.extra),
                str(s.repaired),
                str(s.http.requests),
            )
    console.print()
    console.print(table)
    exact = sum(1 for s in result.streams if s.verdict == "verified")
    console.print(
        f"  {exact} streams verified equal; {result.http.requests} requests "
        f"(planned {result.planned} if nothing differed), {result.elapsed_s:.1f}s"
    )


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
