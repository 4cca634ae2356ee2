"""One sync run of a source, whatever its type: its streams read into the warehouse.

No scheduling here: commands (``syncer.commands``) call :func:`sync_source`, for the CLI and
the daemon alike. The run's frame (one run at a time per stream, see ``runframe.py``;
bookkeeping, streams in parallel under one rate limit, errors per stream) is shared; how a
stream is read is its source type's ``sync_stream`` (``syncer.registry``). MOCO streams are
walked incrementally, each page stored with the stream's new position in one transaction, so a
run killed at any moment resumes where it stopped and the watermark never passes a record that
was not stored (``syncer/extract``). MOCA streams are scanned (``sources/moca/scan.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence

import aiohttp

from syncer import progress, registry
from syncer.config import SourceSettings
from syncer.extract.running import all_or_stop, finish_stream
from syncer.http.client import ApiClient
from syncer.pacing import Limiter, SlidingWindowLimiter
from syncer.results import StreamResult, SyncContext, SyncResult
from syncer.runframe import Frame, exclusive_run, record_end
from syncer.store import locks, runs
from syncer.store.types import Connection, Pool
from syncer.warehouse import ensure_schema

log = logging.getLogger(__name__)

RUN_LOCK_CLASS = locks.SYNC  # name: "source.stream"; one run of a stream at a time


def limiter_for(source: SourceSettings) -> SlidingWindowLimiter:
    """A limit this process keeps to (library use); commands share one across processes."""
    return SlidingWindowLimiter(source.rate_limit.requests, source.rate_limit.per_seconds)


def shared_limiter_for(pool: Pool, source: SourceSettings) -> Limiter:
    """The credential's limit as every process using it keeps to it (``syncer.rate_log``)."""
    from syncer.store.rate import SharedRequestLimiter, credential_scope

    scope = credential_scope(source.type, source.base_url, source.secret.value)
    return SharedRequestLimiter(
        pool,
        scope,
        source.rate_limit.requests,
        source.rate_limit.per_seconds,
        pending_s=source.timeout_s,
    )


def client_for(
    session: aiohttp.ClientSession,
    source: SourceSettings,
    limiter: Limiter | None = None,
    *,
    backoff_base_s: float = 1.0,
    timeout_s: float | None = None,
    max_attempts: int | None = None,
) -> ApiClient:
    """The HTTP client of one run against ``source``: its credential, limit and retries
    (``timeout_s`` and ``max_attempts`` override the source's)."""
    return ApiClient(
        session,
        registry.source_type(source.type).credential(source),
        limiter or limiter_for(source),
        timeout_s=source.timeout_s if timeout_s is None else timeout_s,
        max_attempts=source.max_attempts if max_attempts is None else max_attempts,
        backoff_base_s=backoff_base_s,
    )


async def sync_source(
    pool: Pool,
    session: aiohttp.ClientSession,
    source: SourceSettings,
    *,
    streams: Sequence[str] = (),
    full_refresh: bool = False,
    command: str = "sync",
    limiter: Limiter | None = None,
    backoff_base_s: float = 1.0,
) -> SyncResult:
    """Run one incremental extraction of ``source`` (all its streams unless ``streams``)."""
    kind = registry.source_type(source.type)
    names = list(streams) or list(source.streams)
    async with pool.acquire() as conn:  # its tables follow its type's catalog
        await ensure_schema(conn, source)
    client = client_for(session, source, limiter, backoff_base_s=backoff_base_s)
    started = time.monotonic()
    results = [StreamResult(name) for name in names]
    progress.watch(results)

    async def finish(conn: Connection, frame: Frame) -> None:
        if frame.lost:  # what the streams were doing, they stopped for this
            for r in results:
                if r.outcome in ("running", "interrupted"):
                    r.outcome, r.error, r.error_kind = "failed", frame.lost, "LeaseLost"
        await record_end(conn, frame)

    async with exclusive_run(
        pool,
        lock_class=RUN_LOCK_CLASS,
        kind="sync",
        source=source.name,
        command=command,
        keys=[f"{source.name}.{name}" for name in names],
        finish=finish,
    ) as frame:
        run_id = frame.run_id
        gate = asyncio.Semaphore(source.concurrency)
        context = SyncContext(pool, client, source, run_id, full_refresh)

        async def one(result: StreamResult) -> None:
            async with gate:
                await kind.sync_stream(context, result)

        # Parents before children (MOCA lists campaigns per app); most types have one level.
        by_name = {r.stream: r for r in results}
        for level in kind.levels(names):
            runnable = []
            for name in (n for n in level if n in by_name):
                parent = by_name.get(kind.parent_of(name) or "")
                if parent is not None and parent.outcome != "succeeded":
                    await _skip(pool, run_id, by_name[name], parent)
                else:
                    runnable.append(by_name[name])
            await all_or_stop(one(r) for r in runnable)
        frame.end_as(results)
    return SyncResult(run_id, source.name, results, time.monotonic() - started, client.stats)


async def _skip(pool: Pool, run_id: int, result: StreamResult, parent: StreamResult) -> None:
    """A child whose parent failed fails alike: it is listed per parent record."""
    result.outcome, result.error = "failed", parent.error
    result.error_kind = parent.error_kind
    async with pool.acquire() as conn:
        await runs.start_stream_run(conn, run_id, result.stream, None)
    await finish_stream(pool, run_id, result)
