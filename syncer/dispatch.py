"""Running a command: the database and HTTP session it runs on (:class:`Runtime`), and the
runner each command goes to (:func:`execute`). The CLI and the daemon both call it, with a
command built and checked by ``syncer.commands``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from syncer.commands import Command, Load, Sweep, Sync, Verify, check
from syncer.config import Settings
from syncer.results import Report
from syncer.runners.load import load_destination
from syncer.runners.sync import shared_limiter_for, sync_source
from syncer.store import database
from syncer.store.types import Pool
from syncer.warehouse import ensure_schema

__all__ = ["Runtime", "execute", "pool_size", "runtime"]


@dataclass
class Runtime:
    """What a command that touches the database and the network gets: opened once, at the top."""

    settings: Settings
    pool: Pool
    session: aiohttp.ClientSession
    url: str  # the database's, resolved once (the embedded server is found or started once)


@contextlib.asynccontextmanager
async def runtime(settings: Settings, *, pool_size: int = 10) -> AsyncIterator[Runtime]:
    """The database (migrated to head) and one HTTP session, for the commands of a process."""
    from syncer.observability import http_trace_config

    url = await database.resolve_url(settings)
    await database.migrate(url)
    apis = {s.base_url: s.name for s in settings.sources.values()}
    apis.update({d.base_url: d.name for d in settings.destinations.values()})
    async with (
        database.open_pool(url, max_size=pool_size) as pool,
        aiohttp.ClientSession(trace_configs=[http_trace_config(apis)]) as session,
    ):
        yield Runtime(settings, pool, session, url)


def pool_size(settings: Settings, command: Command) -> int:
    """Connections a command needs: a sync's streams in flight, its lock and a spare; a load's
    lock, its rows' cursor, the lease held while a body is in flight, and one to write."""
    if isinstance(command, Load):
        return 5
    return settings.source(command.source).concurrency + 2


async def execute(
    rt: Runtime,
    command: Command,
    *,
    command_line: str,
    on_progress: Callable[[Any], None] | None = None,
) -> Report:
    """Run ``command``; its result. ``command_line`` is what ``syncer.runs`` records;
    ``on_progress`` is told a backfill's progress."""
    check(rt.settings, command)
    if isinstance(command, Load):
        result: Report = await load_destination(
            rt.pool,
            rt.session,
            rt.settings.destination(command.destination),
            only=command.only,
            dry_run_dir=command.dry_run,
            command=command_line,
        )
        return result
    source = rt.settings.source(command.source)
    async with rt.pool.acquire() as conn:
        await ensure_schema(conn, source)
    limiter = shared_limiter_for(rt.pool, source)
    if isinstance(command, Sync):
        chosen = [s for s in (command.streams or source.streams) if s not in command.skip]
        return await sync_source(
            rt.pool,
            rt.session,
            source,
            streams=chosen,
            full_refresh=command.full_refresh,
            command=command_line,
            limiter=limiter,
        )
    if isinstance(command, Verify):
        from syncer.runners.verify import verify_source

        verified: Report = await verify_source(
            rt.pool,
            rt.session,
            source,
            streams=command.streams,
            repair=command.repair,
            command=command_line,
            limiter=limiter,
        )
        return verified
    if isinstance(command, Sweep):
        from syncer.runners.sweep import sweep_source

        swept: Report = await sweep_source(
            rt.pool,
            rt.session,
            source,
            streams=command.streams,
            command=command_line,
            limiter=limiter,
        )
        return swept
    from syncer.runners.backfill import run_backfill

    backfilled: Report = await run_backfill(
        rt.pool,
        rt.session,
        source,
        command.stream,
        since=command.since,
        until=command.until,
        window_s=command.window_s,
        command=command_line,
        progress=on_progress,
        limiter=limiter,
    )
    return backfilled
