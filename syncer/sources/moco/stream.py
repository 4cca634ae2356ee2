"""Walking one MOCO stream into its table: pages fetched ahead, committed in order.

The walk's rules (what to request next, how far the watermark may move) are pure, in
``sources/moco/walk.py``; this module does the I/O. The next page is requested while the current
one commits, since the walk knows its next request as soon as a page is parsed. Where the
rate limit allows far more than one request at a time can use, a walk *sprints*: several
pages of one query at once, trusted only under the conditions of ``sources/moco/sprint.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from syncer import shutdown
from syncer.http.client import ApiClient, RequestStats
from syncer.pacing import Slot
from syncer.pipeline import log_ids, stream_run
from syncer.progress import records_left
from syncer.results import StreamResult, SyncContext
from syncer.sources.base import StreamSpec
from syncer.sources.moco import api as moco
from syncer.sources.moco import sprint
from syncer.sources.moco.settings import MocoSourceSettings
from syncer.sources.moco.walk import Walk
from syncer.store import pages
from syncer.store.types import Pool

log = logging.getLogger("syncer.pipeline")

PREFETCH_GRACE_S = 2.0


async def walk_stream(
    context: SyncContext[MocoSourceSettings], spec: StreamSpec, result: StreamResult
) -> None:
    """Read ``spec``'s stream into its table, inside :func:`~syncer.pipeline.stream_run` (the
    stream run's row and how it ends): resumes an interrupted walk where it stopped, else reads
    from the watermark less the overlap (or everything, with ``full_refresh``)."""
    pool, source, run_id = context.pool, context.source, context.run_id
    async with pool.acquire() as conn:
        state = await pages.load_state(conn, source.name, spec.name)
    walk = Walk.from_json(state.walk) if state.walk is not None else None
    if context.full_refresh and (walk is None or walk.lower_bound is not None):
        walk = Walk(lower_bound=None)
    elif walk is None:
        lower = state.watermark - timedelta(seconds=source.overlap_s) if state.watermark else None
        walk = Walk(lower_bound=lower)
    else:
        result.resumed_after_pages = walk.pages
        log.info(
            "%s.%s: resuming after %d pages",
            source.name,
            spec.name,
            walk.pages,
            extra=log_ids(run_id, source.name, spec.name),
        )
    watermark = state.watermark
    # Pipelined: the next page (or sprint of pages) is requested while this one is committed.
    # Commits stay in page order, one at a time.
    prefetch: asyncio.Task[list[_Fetched]] | None = None
    stats = RequestStats()
    ahead = _Ahead(context.client, source, spec)
    async with stream_run(context, result):
        try:
            shutdown.check()
            task = prefetch = asyncio.create_task(ahead.first(walk, stats))
            while True:
                try:
                    batch = await task
                finally:
                    _merge(result.http, stats)
                prefetch = None
                last = batch[-1]
                if not last.done:
                    stats = RequestStats()
                    task = prefetch = asyncio.create_task(ahead.next(last, stats))
                watermark = await _commit(pool, source, spec, run_id, batch, watermark, result)
                if last.walk.distrust is not None and result.warning is None:
                    result.warning = (
                        f"not listed in updated_at order as asked ({last.walk.distrust}); read "
                        f"by offset pages in this run, which costs more requests"
                    )
                if last.done:
                    break
                shutdown.check()
            result.watermark = watermark
        except asyncio.CancelledError:
            if prefetch is not None:  # stopped: no grace for pages not yet requested
                prefetch.cancel()
            raise
        finally:
            if prefetch is not None:  # pages requested but not needed any more
                await _settle_prefetch(prefetch)
                _merge(result.http, stats)


async def _settle_prefetch(prefetch: asyncio.Task[list[_Fetched]]) -> None:
    """Let requests already sent land (so each is counted as the server saw it), but wait no
    longer than a moment: a prefetch still queued for the rate limit is simply cancelled."""
    try:
        await asyncio.wait({prefetch}, timeout=PREFETCH_GRACE_S)
    finally:  # also when the run is stopped meanwhile (it lost its lock)
        prefetch.cancel()
        prefetch.add_done_callback(_retrieve)  # its failure, if any, is nobody's news
    await asyncio.gather(prefetch, return_exceptions=True)


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _merge(total: RequestStats, part: RequestStats) -> None:
    total.requests += part.requests
    total.retries += part.retries
    total.rate_limited += part.rate_limited
    total.waited_s += part.waited_s
    part.requests = part.retries = part.rate_limited = 0
    part.waited_s = 0.0


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
    query: _Query | None = None  # set when a sprint may follow this page


@dataclass(frozen=True)
class _Query:
    """A keyset query whose later pages a sprint may fetch at once."""

    lower: datetime | None  # its updated_after
    total: int  # its X-Total
    size: int  # records per page, as served
    next_page: int
    since: datetime  # when (the source's clock) it was last seen unchanged
    last_stamp: datetime  # updated_at of the last record read so far
    latency_s: float  # of one request, without waiting for the rate limit


class _Ahead:
    """Fetches what the walk reads next: one page, or a sprint of several (``sprint.py``)."""

    def __init__(self, client: ApiClient, source: MocoSourceSettings, spec: StreamSpec) -> None:
        self.client, self.source, self.spec = client, source, spec
        self.url = f"{source.base_url}{spec.path}"
        self.sprints = source.page_concurrency > 1  # off for the run once one is not trusted

    async def first(self, walk: Walk, stats: RequestStats) -> list[_Fetched]:
        return [await self._step(walk, stats)]

    async def next(self, previous: _Fetched, stats: RequestStats) -> list[_Fetched]:
        query = previous.query
        if query is not None and self.sprints:
            remaining = len(sprint.pages_to_fetch(query.next_page, query.total, query.size, 10**6))
            rate = self.source.rate_limit.requests / self.source.rate_limit.per_seconds
            if sprint.worth_it(rate, query.latency_s, remaining, self.source.page_concurrency):
                pages = await self._sprint(previous.walk, query, stats)
                if pages:
                    return pages
                self.sprints = False
        return [await self._step(previous.walk, stats)]

    async def _get(
        self, params: dict[str, str], stats: RequestStats, reserved: Slot | None = None
    ) -> moco.Page:
        return await moco.fetch_page(
            self.client, self.url, params, self.spec, stats=stats, reserved=reserved
        )

    async def _step(self, walk: Walk, stats: RequestStats) -> _Fetched:
        """The walk's next page, as one request."""
        params = moco.page_params(
            self.spec, page=walk.page, per_page=self.source.per_page, updated_after=walk.lower_bound
        )
        requested_at = datetime.now(UTC)
        started, waited = time.monotonic(), stats.waited_s
        page = await self._get(params, stats)
        latency = time.monotonic() - started - (stats.waited_s - waited)
        after = await moco.walk_on(self.client, self.url, self.spec, walk, page, stats=stats)
        stamps = [r.updated_at for r in page.rows]
        if walk.keyset and not after.keyset:
            log.info(
                "%s.%s: not trusting sort_by=updated_at (%s); %s",
                self.source.name,
                self.spec.name,
                after.distrust,
                "reading again from the walk's start by offset pages"
                if walk.stepped
                else "reading on by offset pages",
            )
        query = None
        stepped = walk.page == 1 and after.stepped and after.page == 1 and not after.done
        if stepped and page.total is not None:
            known = [s for s in stamps if s is not None]
            if known and len(known) == page.count and known == sorted(known):
                query = _Query(
                    walk.lower_bound, page.total, page.count, 2, page.served_at, known[-1], latency
                )
        return _Fetched(
            walk.page,
            page.rows,
            page.rejected,
            after,
            after.done,
            stats.requests,
            requested_at,
            query,
        )

    async def _sprint(self, walk: Walk, query: _Query, stats: RequestStats) -> list[_Fetched]:
        """The query's next pages at once, then whether anything changed meanwhile; the pages
        as walk steps if the sprint can be trusted, else none."""
        width = min(self.source.page_concurrency, self.source.rate_limit.requests)
        numbers = sprint.pages_to_fetch(query.next_page, query.total, query.size, width)
        requested_at = datetime.now(UTC)
        before = stats.requests
        # One step of the rate limiter for the whole sprint (the shared one is a transaction).
        started = time.monotonic()
        slot = await self.client.reserve(len(numbers))
        stats.waited_s += time.monotonic() - started
        try:
            served = await asyncio.gather(
                *(
                    self._get(
                        moco.page_params(
                            self.spec,
                            page=n,
                            per_page=self.source.per_page,
                            updated_after=query.lower,
                        ),
                        stats,
                        slot,
                    )
                    for n in numbers
                )
            )
        finally:
            await slot.settle()
        check = await self._get(
            moco.page_params(
                self.spec,
                page=1,
                per_page=self.source.per_page,
                updated_after=query.since - sprint.CHECK_OVERLAP,
            ),
            stats,
        )
        changed = (
            check.total is None
            or check.total > check.count
            or bool(check.rejected)
            or any(r.updated_at is None or r.updated_at >= query.since for r in check.rows)
        )
        pages = [
            sprint.SprintPage(p.total, p.count, [r.updated_at for r in p.rows], p.has_next)
            for p in served
        ]
        verdict = sprint.judge(query.total, query.size, query.last_stamp, pages, changed)
        if verdict.reason is not None:
            log.info(
                "%s.%s: pages %d-%d of a sprint: %d trusted (%s)%s",
                self.source.name,
                self.spec.name,
                numbers[0],
                numbers[-1],
                verdict.trusted,
                verdict.reason,
                "; one page at a time from here" if verdict.churn else "",
            )
        if verdict.churn:
            self.sprints = False
        steps: list[_Fetched] = []
        requests = stats.requests - before  # the sprint's, counted with its first page
        for number, page in zip(numbers[: verdict.trusted], served, strict=False):
            # The sprint's pages continue the query the walk stepped past; whatever follows
            # them is checked against what that query served (``walk.py``).
            walk = page.advance(walk, offset=(number - 1) * query.size)
            if not walk.done and not (walk.keyset and walk.stepped and walk.page == 1):
                break  # the walk cannot step past this page by keyset: read on from the last
            steps.append(
                _Fetched(
                    number,
                    page.rows,
                    page.rejected,
                    walk,
                    walk.done,
                    requests,
                    requested_at,
                )
            )
            requests = 0
        if len(steps) == len(numbers) and not steps[-1].done:  # all trusted: sprint on
            newest = max(s for s in pages[-1].stamps if s is not None)
            steps[-1] = replace(
                steps[-1],
                query=replace(
                    query, next_page=numbers[-1] + 1, since=check.served_at, last_stamp=newest
                ),
            )
        return steps


async def _commit(
    pool: Pool,
    source: MocoSourceSettings,
    spec: StreamSpec,
    run_id: int,
    batch: list[_Fetched],
    watermark: datetime | None,
    result: StreamResult,
) -> datetime | None:
    """Store pages (one, or a sprint's) with the stream's new position in one transaction;
    the new watermark. A crash keeps all of them or none, and resumes after the last kept."""
    last = batch[-1]
    rows = [row for fetched in batch for row in fetched.rows]
    rejected = [r for fetched in batch for r in fetched.rejected]
    requests = sum(fetched.requests for fetched in batch)
    if last.done:
        watermark = last.walk.watermark(watermark)
    async with pool.acquire() as conn:
        upserted = await pages.commit_page(
            conn,
            pages.PageCommit(
                schema=source.schema,
                table=spec.name,
                volatile=spec.volatile,
                source=source.name,
                stream=spec.name,
                run_id=run_id,
                rows=rows,
                rejected=rejected,
                requests=requests,
                walk=None if last.done else last.walk.to_json(),
                watermark=watermark,
                requested_at=min(fetched.requested_at for fetched in batch),
                pages=len(batch),
            ),
        )
    result.pages += len(batch)
    result.committed_requests += requests
    result.records += len(rows) + len(rejected)
    result.upserted += upserted
    result.rejected += len(rejected)
    result.left = records_left(last.walk.query_total, last.page, len(rows) // len(batch), last.done)
    numbers = f"page {last.page}" if len(batch) == 1 else f"pages {batch[0].page}-{last.page}"
    log.info(
        "%s.%s: %s, %d records, %d changed, %d rejected",
        source.name,
        spec.name,
        numbers,
        len(rows) + len(rejected),
        upserted,
        len(rejected),
        extra=log_ids(run_id, source.name, spec.name),
    )
    for r in rejected:
        log.info(
            "%s.%s: rejected a record: %s",
            source.name,
            spec.name,
            r.reason,
            extra=log_ids(run_id, source.name, spec.name),
        )
    return watermark
