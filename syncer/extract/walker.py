"""Walking a list into its table: pages fetched ahead, committed in order, position with each.

The walk's rules (what to request next, how far the watermark may move) are pure, in
``extract/walk.py``; this module does the I/O for the two incremental strategies:

* **sorted** (the list takes ``updated_after`` and ``sort_by``): keyset steps by ``updated_at``,
  verified on every page. Where the rate limit allows far more than one request at a time can
  use, a walk *sprints*: several pages of one query at once, trusted only under the conditions
  of ``extract/sprint.py``.
* **unsorted** (``updated_after`` without ``sort_by``, or records without ``updated_at``): one
  query from the watermark less the overlap, read by offset pages and watched: a change seen
  while it is read (a record stamped after it began, ``X-Total`` moving) means a record may
  have been skipped, and the watermark stays where the query began. Without ``updated_at`` on
  the records or without ``X-Total``, a query of more than one page is checked once at its end
  (did anything change since it began?). The watermark is the server's clock at the query's
  first page, so records without ``updated_at`` are incremental too.

The next page is requested while the current one commits, since the walk knows its next
request as soon as a page is parsed. A page and the walk's new position are committed in one
transaction, to the stream's row or, for a per-parent list, to the parent's
(``syncer.parent_positions``), so a run killed at any point resumes where it stopped.

One concept: the walk of one paged list, its fetching ahead, committing in order and the
checks at its end; the pure rules it follows are ``walk.py`` and ``sprint.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from syncer import shutdown
from syncer.catalog import Stream
from syncer.errors import MalformedResponseError
from syncer.extract import sprint
from syncer.extract.base import Lister, Options, Page, Query, fetch
from syncer.extract.records import Row
from syncer.extract.walk import STEP_OVERLAP, Walk
from syncer.http.client import ApiClient, RequestStats
from syncer.pacing import Slot
from syncer.progress import records_left
from syncer.results import StreamResult, SyncContext
from syncer.store import leases, pages

log = logging.getLogger(__name__)

PREFETCH_GRACE_S = 2.0


def log_ids(run_id: int, source: str, stream: str) -> dict[str, Any]:
    """Fields a structured log line carries (``--log-format json``)."""
    return {"run_id": run_id, "source": source, "stream": stream}


def first_walk(
    stream: Stream,
    saved: Walk | None,
    watermark: datetime | None,
    *,
    overlap_s: float,
    full_refresh: bool,
) -> tuple[Walk, bool]:
    """The walk to read ``stream`` with, and whether it resumes a saved one: the saved walk
    (unless a full refresh asks to read everything), else a new one from the watermark less
    the overlap. A saved walk of the other kind (the stream's strategy changed since) starts
    over from where it started."""
    unsorted = stream.strategy == "unsorted"
    if saved is not None and saved.clock != unsorted:
        lower = saved.start if saved.start is not None else saved.lower_bound
        saved = None if full_refresh else _new(unsorted, lower)
        return (saved or _new(unsorted, None)), False
    if full_refresh and (saved is None or saved.lower_bound is not None):
        return _new(unsorted, None), False
    if saved is not None:
        return saved, True
    lower = watermark - timedelta(seconds=overlap_s) if watermark else None
    return _new(unsorted, lower), False


def _new(unsorted: bool, lower: datetime | None) -> Walk:
    return Walk.unsorted(lower) if unsorted else Walk(lower_bound=lower)


@dataclass(frozen=True)
class _Fetched:
    """One page, parsed, with the walk as it stands once the page is stored."""

    page: int
    fetched: Page
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


class Walker:
    """Reads one list (a stream, or one parent's list) to the end of its walk."""

    def __init__(
        self,
        context: SyncContext[Any],
        stream: Stream,
        lister: Lister,
        result: StreamResult,
        *,
        parent: str | None = None,
        sprints: bool = True,
        page_concurrency: int = 1,
        through: Stream | None = None,
    ) -> None:
        self.context, self.stream, self.lister, self.result = context, stream, lister, result
        # The list actually asked: the stream's own, or (``through``) a list of its own that
        # holds the same records (a per-project list's twin), the rows then stored as the
        # stream's, each under the parent its record names.
        self.listed = through or stream
        self.parent = parent
        self.client: ApiClient = context.client
        self.width = page_concurrency
        self.sprints = sprints and page_concurrency > 1 and self.listed.strategy == "sorted"
        self.missing = False  # the list answered 404: its parent is gone
        self._last_keys: list[int | str] | None = None
        # The ids the current query served in this run, and whether from its first page (a
        # resumed walk did not see the pages before the kill).
        self._query_keys: set[int | str] = set()
        self._whole_query = False
        self._query_pages = 0  # pages the current query has served (from its first)

    @property
    def _name(self) -> str:
        where = f" (parent {self.parent})" if self.parent is not None else ""
        return f"{self.context.source.name}.{self.stream.name}{where}"

    def _query(
        self, walk: Walk, *, lower: datetime | None = None, size: int | None = None
    ) -> Query:
        return Query(
            updated_after=walk.lower_bound if lower is None else lower,
            sorted=walk.keyset and self.listed.strategy == "sorted",
            parent=self.parent,
            size=size,
        )

    async def run(self, walk: Walk, watermark: datetime | None) -> datetime | None:
        """Read from ``walk`` to its end, committing each page with the walk's position; the
        watermark once done. Pipelined: the next page (or sprint) is requested while this one
        commits; commits stay in page order, one at a time."""
        result = self.result
        prefetch: asyncio.Task[list[_Fetched]] | None = None
        stats = RequestStats()
        try:
            shutdown.check()
            task = prefetch = asyncio.create_task(self._first(walk, stats))
            while True:
                try:
                    batch = await task
                finally:
                    _merge(result.http, stats)
                prefetch = None
                last = batch[-1]
                if last.fetched.missing:
                    self.missing = True
                    return watermark
                if not last.done:
                    stats = RequestStats()
                    task = prefetch = asyncio.create_task(self._next(last, stats))
                watermark = await self._commit(batch, watermark)
                if last.walk.distrust is not None and result.warning is None:
                    result.warning = (
                        f"not listed in updated_at order as asked ({last.walk.distrust}); read "
                        f"by offset pages in this run, which costs more requests"
                    )
                if last.done:
                    return watermark
                shutdown.check()
        except asyncio.CancelledError:
            if prefetch is not None:  # stopped: no grace for pages not yet requested
                prefetch.cancel()
            raise
        finally:
            if prefetch is not None:  # pages requested but not needed any more
                await _settle_prefetch(prefetch)
                _merge(result.http, stats)

    async def _get(
        self, walk: Walk, page: int, stats: RequestStats, reserved: Slot | None = None
    ) -> Page:
        fetched = await fetch(
            self.client,
            self.lister,
            self.listed,
            self._query(walk),
            page,
            stats=stats,
            reserved=reserved,
            cursor=walk.cursor if page == walk.page else None,
        )
        if fetched.next_cursor is not None and fetched.next_cursor == walk.cursor:
            raise MalformedResponseError(
                f"{self.lister.url(self.listed, parent=self.parent)} answered the cursor it was "
                "asked for as the next one; the API loops, report it to its maintainers"
            )
        return fetched

    async def _first(self, walk: Walk, stats: RequestStats) -> list[_Fetched]:
        return [await self._step(walk, stats)]

    async def _next(self, previous: _Fetched, stats: RequestStats) -> list[_Fetched]:
        query = previous.query
        if query is not None and self.sprints:
            remaining = len(sprint.pages_to_fetch(query.next_page, query.total, query.size, 10**6))
            limit = self.context.source.rate_limit
            rate = limit.requests / limit.per_seconds
            if sprint.worth_it(rate, query.latency_s, remaining, self.width):
                fetched = await self._sprint(previous.walk, query, stats)
                if fetched:
                    return fetched
                self.sprints = False
        return [await self._step(previous.walk, stats)]

    async def _step(self, walk: Walk, stats: RequestStats) -> _Fetched:
        """The walk's next page, as one request."""
        requested_at = datetime.now(UTC)
        started, waited = time.monotonic(), stats.waited_s
        page = await self._get(walk, walk.page, stats)
        if page.missing:
            return _Fetched(walk.page, page, walk, True, stats.requests, requested_at)
        latency = time.monotonic() - started - (stats.waited_s - waited)
        page = self._unrepeated(walk, page)
        if walk.page == 1:
            self._query_keys, self._whole_query, self._query_pages = set(), True, 0
        self._query_keys.update(page.keys)
        self._query_pages += 1
        after = await self._advance(walk, page, stats)
        if walk.keyset and not after.keyset:
            log.info(
                "%s: not trusting sort_by=updated_at (%s); %s",
                self._name,
                after.distrust,
                "reading again from the walk's start by offset pages"
                if walk.stepped
                else "reading on by offset pages",
            )
        if after.done and after.clock and after.watch_since is not None:
            after = await self._checked_at_end(after, stats)
        stamps = [r.updated_at for r in page.rows]
        query = None
        stepped = walk.page == 1 and after.stepped and after.page == 1 and not after.done
        if stepped and page.total is not None:
            known = [s for s in stamps if s is not None]
            if known and len(known) == page.count and known == sorted(known):
                query = _Query(
                    walk.lower_bound, page.total, page.count, 2, page.served_at, known[-1], latency
                )
        return _Fetched(walk.page, page, after, after.done, stats.requests, requested_at, query)

    def _unrepeated(self, walk: Walk, page: Page) -> Page:
        """A page of a list without paging headers that repeats the previous one (the server
        ignores ``page``): the list's end."""
        keys = page.keys
        repeated = (
            page.next_link is None and walk.page > 1 and bool(keys) and keys == self._last_keys
        )
        self._last_keys = keys
        return replace(page, rows=[], rejected=[], count=0) if repeated else page

    async def _advance(self, walk: Walk, page: Page, stats: RequestStats) -> Walk:
        return await step(
            self.client, self.lister, self.listed, walk, page, parent=self.parent, stats=stats
        )

    async def _checked_at_end(self, walk: Walk, stats: RequestStats) -> Walk:
        """An offset-paged query that cannot see a change while it is read is checked once
        at its end. Records without ``updated_at``: did anything change since it began (a
        second before its first page, as ``updated_after`` is whole seconds)? A list without
        ``X-Total``: a deletion shows nowhere, so a query of several pages is read once more (one
        page is one answer, whole); what the second
        pass serves that the first did not (a record shifted across a page boundary) is
        stored, and if the passes differ, the watermark stays where the query began."""
        if walk.disturbed or self.lister.stable:
            return walk
        if walk.query_total is None:
            if self._whole_query and self._query_pages == 1:
                return walk  # one answer held the whole query: no record could shift
            return await self._read_again(walk, stats)
        if self.listed.replication_key is not None:
            return walk
        assert walk.watch_since is not None
        since = walk.watch_since.replace(microsecond=0) - STEP_OVERLAP
        check = Walk.unsorted(since)
        answer = await fetch(
            self.client, self.lister, self.listed, self._query(check, size=1), 1, stats=stats
        )
        changed = (answer.total or 0) > 0 or answer.count > 0
        if changed:
            log.info("%s: records changed while read; read again from there next run", self._name)
        return replace(walk, disturbed=True) if changed else walk

    async def _read_again(self, walk: Walk, stats: RequestStats) -> Walk:
        again = Walk.unsorted(walk.watch_lower if walk.watch_lower else walk.start)
        served: set[int | str] = set()
        lacking: list[Row] = []
        previous: list[int | str] | None = None
        while True:
            page = await self._get(again, again.page, stats)
            if page.missing or (again.page > 1 and page.keys == previous):
                break
            previous = page.keys
            served.update(page.keys)
            lacking += [r for r in page.rows if r.id not in self._query_keys]
            again = advance(again, page)
            if again.done:
                break
        if lacking:
            await self._store_lacking(lacking)
        same = self._whole_query and served == self._query_keys
        if not same:
            log.info(
                "%s: a second pass served other records (%d new); read again from the query's "
                "start next run",
                self._name,
                len(lacking),
            )
        return walk if same else replace(walk, disturbed=True)

    async def _store_lacking(self, rows: list[Row]) -> None:
        """Rows a second pass served that the first did not: stored now (the position is
        the query's own, committed with its last page)."""
        context, stream = self.context, self.stream
        async with context.pool.acquire() as conn, conn.transaction():
            await leases.check(conn)
            await pages.upsert_rows(
                conn,
                context.source.schema,
                stream.name,
                rows,
                stream.volatile,
                requested_at=datetime.now(UTC),
                parent=self.parent,
                text_ids=stream.key_type == "text",
                parent_path=self._parent_path(),
            )

    async def _sprint(self, walk: Walk, query: _Query, stats: RequestStats) -> list[_Fetched]:
        """The query's next pages at once, then whether anything changed meanwhile; the pages
        as walk steps if the sprint can be trusted, else none."""
        limit = self.context.source.rate_limit
        width = min(self.width, limit.requests)
        numbers = sprint.pages_to_fetch(query.next_page, query.total, query.size, width)
        requested_at = datetime.now(UTC)
        before = stats.requests
        # One step of the rate limiter for the whole sprint (the shared one is a transaction).
        started = time.monotonic()
        slot = await self.client.reserve(len(numbers))
        stats.waited_s += time.monotonic() - started
        base = Walk(lower_bound=query.lower)
        try:
            served = await asyncio.gather(*(self._get(base, n, stats, slot) for n in numbers))
        finally:
            await slot.settle()
        check = await self._get(Walk(lower_bound=query.since - sprint.CHECK_OVERLAP), 1, stats)
        changed = (
            check.total is None
            or check.total > check.count
            or bool(check.rejected)
            or any(r.updated_at is None or r.updated_at >= query.since for r in check.rows)
        )
        pages_ = [
            sprint.SprintPage(p.total, p.count, [r.updated_at for r in p.rows], p.has_next)
            for p in served
        ]
        verdict = sprint.judge(query.total, query.size, query.last_stamp, pages_, changed)
        if verdict.reason is not None:
            log.info(
                "%s: pages %d-%d of a sprint: %d trusted (%s)%s",
                self._name,
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
            walk = advance(walk, page, offset=(number - 1) * query.size)
            if not walk.done and not (walk.keyset and walk.stepped and walk.page == 1):
                break  # the walk cannot step past this page by keyset: read on from the last
            steps.append(_Fetched(number, page, walk, walk.done, requests, requested_at))
            requests = 0
        if len(steps) == len(numbers) and not steps[-1].done:  # all trusted: sprint on
            newest = max(s for s in pages_[-1].stamps if s is not None)
            steps[-1] = replace(
                steps[-1],
                query=replace(
                    query, next_page=numbers[-1] + 1, since=check.served_at, last_stamp=newest
                ),
            )
        return steps

    def _parent_path(self) -> tuple[str, ...] | None:
        """Read through a twin: where a record names its parent (``project.id``)."""
        if self.listed is self.stream or self.stream.parent is None:
            return None
        column = next(c for c in self.stream.columns if c.name == self.stream.parent.column)
        return column.path

    async def _commit(self, batch: list[_Fetched], watermark: datetime | None) -> datetime | None:
        """Store pages (one, or a sprint's) with the walk's new position in one transaction;
        the new watermark. A crash keeps all of them or none, and resumes after the last kept."""
        context, result, stream = self.context, self.result, self.stream
        source = context.source
        last = batch[-1]
        rows = [row for f in batch for row in f.fetched.rows]
        rejected = [r for f in batch for r in f.fetched.rejected]
        requests = sum(f.requests for f in batch)
        if last.done:
            watermark = last.walk.watermark(watermark)
        async with context.pool.acquire() as conn:
            upserted = await pages.commit_page(
                conn,
                pages.PageCommit(
                    schema=source.schema,
                    table=stream.name,
                    volatile=stream.volatile,
                    source=source.name,
                    stream=stream.name,
                    run_id=context.run_id,
                    rows=rows,
                    rejected=rejected,
                    requests=requests,
                    walk=None if last.done else last.walk.to_json(),
                    watermark=watermark,
                    requested_at=min(f.requested_at for f in batch),
                    pages=len(batch),
                    parent=self.parent,
                    text_ids=stream.key_type == "text",
                    parent_path=self._parent_path(),
                ),
            )
        result.pages += len(batch)
        result.committed_requests += requests
        result.records += len(rows) + len(rejected)
        result.upserted += upserted
        result.rejected += len(rejected)
        if self.parent is None:
            per_page = len(rows) // len(batch)
            result.left = records_left(last.walk.query_total, last.page, per_page, last.done)
        numbers = f"page {last.page}" if len(batch) == 1 else f"pages {batch[0].page}-{last.page}"
        ids = log_ids(context.run_id, source.name, stream.name)
        log.info(
            "%s: %s, %d records, %d changed, %d rejected",
            self._name,
            numbers,
            len(rows) + len(rejected),
            upserted,
            len(rejected),
            extra=ids,
        )
        for r in rejected:
            log.info("%s: rejected a record: %s", self._name, r.reason, extra=ids)
        return watermark


async def step(
    client: ApiClient,
    lister: Lister,
    stream: Stream,
    walk: Walk,
    page: Page,
    *,
    parent: str | None = None,
    stats: RequestStats,
) -> Walk:
    """``walk`` once ``page``, its next one, is stored; where the walk asks for it (fewer
    records than a sorted order leaves: deletions?), after one more request, for the X-Total
    of the query from ``walk.recheck_lower``."""
    recheck = None
    if walk.needs_recheck(page.total):
        query = Query(
            updated_after=walk.recheck_lower,
            sorted=stream.strategy == "sorted",
            parent=parent,
            size=1,
        )
        recheck = (await fetch(client, lister, stream, query, 1, stats=stats)).total
    return advance(walk, page, recheck_total=recheck)


def advance(
    walk: Walk, page: Page, *, offset: int | None = None, recheck_total: int | None = None
) -> Walk:
    """``walk`` once ``page``, its next one, is stored (``Walk.after_page``)."""
    return walk.after_page(
        served_at=page.served_at,
        total=page.total,
        updated_ats=[r.updated_at for r in page.rows],
        has_next=page.has_next,
        count=page.count,
        offset=offset,
        recheck_total=recheck_total,
        cursor=page.next_cursor,
    )


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


async def walk_stream(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    options: Options,
    result: StreamResult,
    *,
    through: Stream | None = None,
) -> None:
    """The sorted and unsorted strategies for a stream of its own (not per parent): resumes
    an interrupted walk where it stopped, else reads from the watermark less the overlap (or
    everything, with ``full_refresh``), inside the stream run's row."""
    from syncer.extract.running import stream_run

    source = context.source
    async with context.pool.acquire() as conn:
        state = await pages.load_state(conn, source.name, stream.name)
    saved = Walk.from_json(state.walk) if state.walk is not None else None
    walk, resumed = first_walk(
        through or stream,
        saved,
        state.watermark,
        overlap_s=options.overlap_s,
        full_refresh=context.full_refresh,
    )
    if resumed:
        result.resumed_after_pages = walk.pages
        log.info(
            "%s.%s: resuming after %d pages",
            source.name,
            stream.name,
            walk.pages,
            extra=log_ids(context.run_id, source.name, stream.name),
        )
    async with stream_run(context, result):
        walker = Walker(
            context,
            stream,
            lister,
            result,
            page_concurrency=options.page_concurrency,
            through=through,
        )
        result.watermark = await walker.run(walk, state.watermark)
