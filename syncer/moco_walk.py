"""Walking one MOCO stream into its table: pages fetched ahead, committed in order.

The walk's rules (what to request next, how far the watermark may move) are pure, in
``sources/walk.py``; this module does the I/O. The next page is requested while the current
one commits, since the walk knows its next request as soon as a page is parsed. Where the
rate limit allows far more than one request at a time can use, a walk *sprints*: several
pages of one query at once, trusted only under the conditions of ``sources/sprint.py``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from syncer import shutdown
from syncer.config import MocoSourceSettings
from syncer.errors import MalformedResponseError, SyncerError
from syncer.http.client import ApiClient, RequestStats
from syncer.sources import moco
from syncer.sources.base import StreamSpec, parse_http_date, split_records
from syncer.sources.walk import Walk
from syncer.store import pages, runs
from syncer.store.tables import MOCO_SCHEMA

if TYPE_CHECKING:
    from syncer.pipeline import StreamResult

log = logging.getLogger("syncer.pipeline")


async def walk_stream(
    pool: Any,
    client: ApiClient,
    source: MocoSourceSettings,
    spec: StreamSpec,
    run_id: int,
    result: StreamResult,
    *,
    full_refresh: bool,
) -> None:
    async with pool.acquire() as conn:
        state = await pages.load_state(conn, source.name, spec.name)
        walk = state.walk
        if full_refresh and (walk is None or walk.lower_bound is not None):
            walk = Walk(lower_bound=None)
        elif walk is None:
            lower = (
                state.watermark - timedelta(seconds=source.overlap_s) if state.watermark else None
            )
            walk = Walk(lower_bound=lower)
        else:
            result.resumed_after_pages = walk.pages
            log.info(
                "%s.%s: resuming after %d pages", source.name, spec.name, walk.pages,
                extra=log_ids(run_id, source.name, spec.name),
            )  # fmt: skip
        await runs.start_stream_run(conn, run_id, spec.name, result.resumed_after_pages)
    watermark = state.watermark
    # Pipelined: the next page is requested while this one is committed (the walk knows the
    # next request as soon as a page is parsed). Commits stay in page order, one at a time.
    prefetch: asyncio.Task[_Fetched] | None = None
    stats = RequestStats()
    try:
        shutdown.check()
        task = prefetch = asyncio.create_task(_fetch(client, source, spec, walk, stats))
        while True:
            try:
                fetched = await task
            finally:
                _merge(result.http, stats)
            prefetch = None
            if not fetched.done:
                stats = RequestStats()
                task = prefetch = asyncio.create_task(
                    _fetch(client, source, spec, fetched.walk, stats)
                )
            watermark = await _commit(pool, source, spec, run_id, fetched, watermark, result)
            if fetched.done:
                break
            shutdown.check()
        result.outcome, result.watermark = "succeeded", watermark
    except shutdown.Interrupted:
        result.outcome, result.error = "interrupted", "stopped by a signal; resumes next run"
    except SyncerError as exc:
        result.outcome, result.error = "failed", exc.message
        result.error_kind = type(exc).__name__
        log.info(
            "%s.%s failed: %s", source.name, spec.name, exc.message,
            extra=log_ids(run_id, source.name, spec.name),
        )  # fmt: skip
    except asyncio.CancelledError:
        result.outcome, result.error = "interrupted", "cancelled"
        raise
    finally:
        if prefetch is not None:  # a page requested but not needed any more
            prefetch.cancel()
            await asyncio.gather(prefetch, return_exceptions=True)
            _merge(result.http, stats)
        await asyncio.shield(finish_stream(pool, run_id, result))


def _merge(total: RequestStats, part: RequestStats) -> None:
    total.requests += part.requests
    total.retries += part.retries
    total.rate_limited += part.rate_limited
    total.waited_s += part.waited_s
    part.requests = part.retries = part.rate_limited = 0
    part.waited_s = 0.0


async def finish_stream(pool: Any, run_id: int, result: StreamResult) -> None:
    async with pool.acquire() as conn:
        await runs.finish_stream_run(
            conn,
            run_id,
            result.stream,
            result.outcome,
            result.error,
            result.http.requests - result.committed_requests,
            warning=result.warning,
        )


@dataclass(frozen=True)
class _Fetched:
    """One page, parsed, with the walk as it stands once the page is stored."""

    page: int
    rows: list[Any]
    rejected: list[Any]
    walk: Walk
    done: bool
    requests: int
    requested_at: datetime  # the source served the page no earlier than this


async def _fetch(
    client: ApiClient, source: MocoSourceSettings, spec: StreamSpec, walk: Walk, stats: RequestStats
) -> _Fetched:
    """Request and parse the walk's next page (no database work)."""
    params = moco.page_params(
        spec, page=walk.page, per_page=source.per_page, updated_after=walk.lower_bound
    )
    requested_at = datetime.now(UTC)
    response = await client.get(f"{source.base_url}{spec.path}", params, stats=stats)
    items = response.json()
    if not isinstance(items, list):
        raise MalformedResponseError(
            f"{response.url} answered with a JSON {type(items).__name__}, not the list of "
            f"records MOCO's contract promises; check base_url"
        )
    rows, rejected = split_records(items, spec)
    has_next = bool(items) and moco.has_next(response.headers.get("Link"))
    served_at = parse_http_date(response.headers.get("Date")) or datetime.now(UTC)
    after = walk.after_page(
        served_at=served_at,
        total=_int_header(response.headers.get("X-Total")),
        updated_ats=[r.updated_at for r in rows],
        has_next=has_next,
    )
    return _Fetched(walk.page, rows, rejected, after, not has_next, stats.requests, requested_at)


async def _commit(
    pool: Any,
    source: MocoSourceSettings,
    spec: StreamSpec,
    run_id: int,
    fetched: _Fetched,
    watermark: datetime | None,
    result: StreamResult,
) -> datetime | None:
    """Store a page with the stream's new position in one transaction; the new watermark."""
    rows, rejected, walk = fetched.rows, fetched.rejected, fetched.walk
    if fetched.done:
        watermark = walk.watermark(watermark)
    async with pool.acquire() as conn:
        upserted = await pages.commit_page(
            conn,
            pages.PageCommit(
                schema=MOCO_SCHEMA,
                table=spec.name,
                volatile=spec.volatile,
                source=source.name,
                stream=spec.name,
                run_id=run_id,
                rows=rows,
                rejected=rejected,
                requests=fetched.requests,
                walk=None if fetched.done else walk,
                watermark=watermark,
                requested_at=fetched.requested_at,
            ),
        )
    result.pages += 1
    result.committed_requests += fetched.requests
    result.records += len(rows) + len(rejected)
    result.upserted += upserted
    result.rejected += len(rejected)
    log.info(
        "%s.%s: page %d, %d records, %d changed, %d rejected",
        source.name,
        spec.name,
        fetched.page,
        len(rows) + len(rejected),
        upserted,
        len(rejected),
        extra=log_ids(run_id, source.name, spec.name),
    )
    for r in rejected:
        log.info(
            "%s.%s: rejected a record: %s", source.name, spec.name, r.reason,
            extra=log_ids(run_id, source.name, spec.name),
        )  # fmt: skip
    return watermark


def log_ids(run_id: int, source: str, stream: str) -> dict[str, Any]:
    """Fields a structured log line carries (``--log-format json``)."""
    return {"run_id": run_id, "source": source, "stream": stream}


def _int_header(value: str | None) -> int | None:
    return int(value) if value is not None and value.strip().isdigit() else None
