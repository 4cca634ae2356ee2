"""One extraction run of a source: its streams read page by page into the warehouse.

No scheduling here: the CLI and the daemon call :func:`sync_source`. The run's frame (one run
at a time per stream, see ``runframe.py``; bookkeeping, streams in parallel under one rate
limit, errors per stream) is shared; how a stream is read depends on the source. MOCO streams
are walked incrementally, each page stored with the stream's new position in one
transaction, so a run killed at any moment resumes where it stopped and the watermark never
passes a record that was not stored (see ``sources/moco/walk.py``). MOCA streams are scanned (see
``sources/moca/scan.py``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp

from syncer import progress, shutdown
from syncer.config import MocaSourceSettings, SourceSettings
from syncer.errors import SyncerError
from syncer.http.client import ApiClient, RequestStats
from syncer.http.pacing import Limiter, SlidingWindowLimiter
from syncer.runframe import Frame, exclusive_run
from syncer.sources.moca import api as moca
from syncer.sources.moca.scan import ScanContext
from syncer.sources.moca.scan import sync_stream as sync_scanned
from syncer.sources.moco import api as moco
from syncer.sources.moco.stream import finish_stream, log_ids, walk_stream
from syncer.store import locks, runs

log = logging.getLogger(__name__)

RUN_LOCK_CLASS = locks.SYNC  # name: "source.stream"; one run of a stream at a time


@dataclass
class StreamResult:
    stream: str
    outcome: str = "running"
    error: str | None = None
    error_kind: str | None = None  # the error's class: streams failing alike are reported once
    pages: int = 0
    records: int = 0
    upserted: int = 0
    rejected: int = 0
    resumed_after_pages: int | None = None
    watermark: datetime | None = None
    http: RequestStats = field(default_factory=RequestStats)
    committed_requests: int = 0  # requests already counted in stream_runs with their page
    deleted: int = 0  # rows marked deleted (MOCA scans)
    warning: str | None = None  # something the user should know, though the stream succeeded
    left: int | None = None  # records still to read after the last page stored (X-Total)


@dataclass
class SyncResult:
    run_id: int
    source: str
    streams: list[StreamResult]
    elapsed_s: float
    http: RequestStats

    @property
    def ok(self) -> bool:
        return all(s.outcome == "succeeded" for s in self.streams)

    @property
    def errors(self) -> list[str]:
        """One line per kind of failure, in stream order, saying how many streams it hit.

        A dead host or a wrong key fails every stream alike: that is one problem, not eight.
        """
        kinds: dict[str, list[StreamResult]] = {}
        for s in self.streams:
            if s.error:
                kinds.setdefault(s.error_kind or s.error, []).append(s)
        lines = []
        for failed in kinds.values():
            first = failed[0]
            more = f" (and {len(failed) - 1} more streams alike)" if len(failed) > 1 else ""
            lines.append(f"{self.source}.{first.stream}: {first.error}{more}")
        return lines

    @property
    def outcome_interrupted(self) -> bool:
        """A signal stopped it; what was committed stays, and the next run resumes."""
        return any(s.outcome == "interrupted" for s in self.streams)

    @property
    def warnings(self) -> list[str]:
        return [f"{self.source}.{s.stream}: {s.warning}" for s in self.streams if s.warning]


def limiter_for(source: SourceSettings) -> SlidingWindowLimiter:
    """A limit this process keeps to (library use); commands share one across processes."""
    return SlidingWindowLimiter(source.rate_limit.requests, source.rate_limit.per_seconds)


def shared_limiter_for(pool: Any, source: SourceSettings) -> Limiter:
    """The credential's limit as every process using it keeps to it (``syncer.rate_log``)."""
    from syncer.store.rate import SharedRequestLimiter, credential_scope

    secret = source.token if isinstance(source, MocaSourceSettings) else source.api_key
    scope = credential_scope(source.type, source.base_url, secret.value)
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
) -> ApiClient:
    """The HTTP client of one run against ``source``: its credential, limit and retries."""
    if isinstance(source, MocaSourceSettings):
        credential = moca.credential(source.token.value, source.token.env)
    else:
        credential = moco.credential(source.api_key.value, source.api_key.env)
    return ApiClient(
        session,
        credential,
        limiter or limiter_for(source),
        timeout_s=source.timeout_s,
        max_attempts=source.max_attempts,
        backoff_base_s=backoff_base_s,
    )


async def sync_source(
    pool: Any,
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
    names = list(streams) or list(source.streams)
    client = client_for(session, source, limiter, backoff_base_s=backoff_base_s)
    started = time.monotonic()
    results = [StreamResult(name) for name in names]
    progress.watch(results)
    outcome = "failed"
    error: str | None = "the run was cancelled"

    async def finish(conn: Any, frame: Frame) -> None:
        if frame.lost:
            await runs.fail_unfinished_streams(conn, frame.run_id, frame.lost)
            for r in results:
                if r.outcome in ("running", "interrupted"):
                    r.outcome, r.error, r.error_kind = "failed", frame.lost, "LeaseLost"
        if frame.lost and outcome != "succeeded":
            await runs.finish_run(conn, frame.run_id, "failed", frame.lost)
        else:
            await runs.finish_run(conn, frame.run_id, outcome, error)

    async with exclusive_run(
        pool,
        lock_class=RUN_LOCK_CLASS,
        kind="sync",
        keys=[f"{source.name}.{name}" for name in names],
        busy=lambda keys: (
            f"another sync of {', '.join(keys)} is running against this database; "
            f"wait for it to finish (see `syncer status`)"
        ),
        start=lambda conn: runs.start_run(conn, kind="sync", source=source.name, command=command),
        close_dead=lambda conn, run_id, previous: runs.mark_interrupted(
            conn, kind="sync", source=source.name, current_run=run_id, previous=previous
        ),
        finish=finish,
    ) as frame:
        run_id = frame.run_id
        try:
            gate = asyncio.Semaphore(source.concurrency)

            async def one(result: StreamResult) -> None:
                async with gate:
                    if isinstance(source, MocaSourceSettings):
                        context = ScanContext(pool, client, source, run_id, full_refresh)
                        await _scan_stream(pool, context, run_id, result)
                    else:
                        await walk_stream(
                            pool,
                            client,
                            source,
                            moco.STREAMS[result.stream],
                            run_id,
                            result,
                            full_refresh=full_refresh,
                        )

            # Parents before children (MOCA lists campaigns per app); MOCO has one level.
            by_name = {r.stream: r for r in results}
            levels = moca.LEVELS if isinstance(source, MocaSourceSettings) else (names,)
            for level in levels:
                runnable = []
                for name in (n for n in level if n in by_name):
                    parent = by_name.get(moca.parent_of(name) or "")
                    if parent is not None and parent.outcome != "succeeded":
                        await _skip(pool, run_id, by_name[name], parent)
                    else:
                        runnable.append(by_name[name])
                await _all_or_stop(one(r) for r in runnable)
            ok = all(r.outcome == "succeeded" for r in results)
            stopped = any(r.outcome == "interrupted" for r in results)
            outcome = "succeeded" if ok else "interrupted" if stopped else "failed"
            failed = [r for r in results if r.error]
            error = "; ".join(f"{r.stream}: {r.error}" for r in failed) or None
        except asyncio.CancelledError:
            outcome, error = "interrupted", "stopped by a signal before it finished"
            raise
    return SyncResult(run_id, source.name, results, time.monotonic() - started, client.stats)


async def _all_or_stop(work: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` side by side; an error none of them handles (the database failed) stops
    the others at once, rather than leaving them to run on unawaited."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _skip(pool: Any, run_id: int, result: StreamResult, parent: StreamResult) -> None:
    """A child whose parent failed fails alike: it is listed per parent record."""
    result.outcome, result.error = "failed", parent.error
    result.error_kind = parent.error_kind
    async with pool.acquire() as conn:
        await runs.start_stream_run(conn, run_id, result.stream, None)
    await finish_stream(pool, run_id, result)


async def _scan_stream(pool: Any, context: ScanContext, run_id: int, result: StreamResult) -> None:
    async with pool.acquire() as conn:
        await runs.start_stream_run(conn, run_id, result.stream, None)
    try:
        await sync_scanned(context, result.stream, result)
        result.outcome = "succeeded"
    except shutdown.Interrupted:
        result.outcome, result.error = "interrupted", "stopped by a signal; scans again next run"
    except SyncerError as exc:
        result.outcome, result.error = "failed", exc.message
        result.error_kind = type(exc).__name__
        log.info(
            "%s.%s failed: %s",
            context.source.name,
            result.stream,
            exc.message,
            extra=log_ids(run_id, context.source.name, result.stream),
        )
    except asyncio.CancelledError:
        result.outcome, result.error = "interrupted", "cancelled"
        raise
    finally:
        await asyncio.shield(finish_stream(pool, run_id, result))
