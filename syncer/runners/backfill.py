"""Backfills: a stream's history re-extracted in windows, resumably, beside the sync.

Any source type with a catalog and a lister has them (``registry.SourceType``); below, as
MOCO's lists answer it.

``syncer backfill SOURCE --stream NAME --since DATE [--until DATE] [--window 30d]`` cuts the
range ``[since 00:00 UTC, until + 1 day 00:00 UTC)`` (``until`` defaults to today, UTC) into
windows over the records' ``updated_at`` and reads them oldest first. MOCO has
``updated_after`` but no ``updated_before``: a window ``[start, end)`` is read as a walk (see
``extract/walk.py``: keyset steps over ``sort_by=updated_at asc``, offset paging only in
pockets of one second) that begins at ``updated_after = start - 1 s`` and ends once a page
whose records pass ``end`` is confirmed by the next keyset step (whose ``X-Total`` shows that
the order was honoured, so nothing before ``end`` was left unserved). Records past ``end`` are
stored too: upserts are idempotent and never replace a newer version of a row. Where the
order is not honoured, the window is read by offset pages to the query's last page.

State lives in ``syncer.backfill_windows``, one row per window. Every page commits its rows
together with the window's position, and the window's last page marks it done in the same
transaction. A backfill killed at any moment resumes, when run again, at its first unfinished
window (within it, at its last committed page) and never reads a finished window again: a
planned window covered by done windows is skipped, whatever ``--window`` they were read with.

A backfill touches no incremental state: it never reads or writes ``syncer.streams`` (so the
watermark cannot move, backwards or forwards) nor ``syncer.runs``. It takes an advisory lock of
its own class per (source, stream), so two backfills of one stream never overlap, while the
incremental sync of the same stream (another lock class) runs beside it unhindered. Its frame
(lock, lease, end) is the one every exclusive run shares (``runframe.py``); the lease's run is
the backfill's id in ``syncer.backfills``.

One concept: a backfill run and the reading of its windows (their plan is pure, above);
its bookkeeping SQL is ``store/backfills.py``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time

import aiohttp
import asyncpg

from syncer import registry, shutdown
from syncer.catalog import Stream
from syncer.config import SourceSettings
from syncer.errors import (
    ConfigError,
    FatalError,
    SyncerError,
)
from syncer.extract.base import Lister, Page, Query, fetch
from syncer.extract.records import Rejected, Row
from syncer.extract.walk import STEP_OVERLAP, Walk
from syncer.extract.walker import advance, step
from syncer.http.client import ApiClient
from syncer.pacing import Limiter
from syncer.results import BackfillProgress, BackfillResult, Window
from syncer.runframe import Frame, exclusive_run
from syncer.runners.sync import client_for
from syncer.store import backfills, leases, locks
from syncer.store.pages import upsert_rows
from syncer.store.rejected import record_rejected
from syncer.store.types import Connection, Pool
from syncer.warehouse import ensure_schema

log = logging.getLogger(__name__)

# Not the sync's RUN_LOCK_CLASS: a backfill and the incremental sync never wait for each other.
BACKFILL_LOCK_CLASS = locks.BACKFILL

MAX_WINDOWS = 100_000  # a plan larger than this is a typo in --window, not a wish
MAX_REREADS = 3  # a window whose pocket keeps changing while read is read again this often
COMMIT_ATTEMPTS = 3  # a page's transaction is retried after a deadlock with the sync


def backfillable_streams(source: SourceSettings) -> list[str]:
    """The streams of ``source`` a backfill can read (none: its type has no backfill)."""
    kind = registry.source_type(source.type)
    if kind.catalog is None or kind.lister is None:
        return []
    catalog = kind.catalog()
    return [n for n in source.streams if n in catalog and catalog[n].backfillable]


def plan_windows(since: date, until: date, window: timedelta) -> list[Window]:
    """The windows ``[start, end)`` covering the days ``since`` to ``until`` (both included).

    Times are UTC: the range is ``[since 00:00, until + 1 day 00:00)``. Windows are ``window``
    long, aligned on ``since``, the last one cut at the range's end; oldest first.
    """
    if window < timedelta(seconds=1):
        raise ValueError(f"a window must be at least one second long, got {window}")
    if until < since:
        raise ValueError(f"the range ends ({until}) before it begins ({since})")
    start = datetime.combine(since, dt_time(), UTC)
    end = datetime.combine(until + timedelta(days=1), dt_time(), UTC)
    windows: list[Window] = []
    while start < end:
        if len(windows) >= MAX_WINDOWS:
            raise ValueError(
                f"{since}..{until} in windows of {window} would be more than {MAX_WINDOWS} "
                f"windows; choose a larger window"
            )
        windows.append((start, min(start + window, end)))
        start += window
    return windows


def covered(window: Window, done: list[Window]) -> bool:
    """Whether ``window`` lies entirely within the union of the ``done`` windows."""
    start, end = window
    reached = start
    for d_start, d_end in sorted(done):
        if d_start > reached:
            break
        reached = max(reached, d_end)
        if reached >= end:
            return True
    return reached >= end


async def run_backfill(
    pool: Pool,
    session: aiohttp.ClientSession,
    source: SourceSettings,
    stream: str,
    *,
    since: date,
    until: date | None,
    window_s: float,
    command: str,
    progress: Callable[[BackfillProgress], None] | None = None,
    backoff_base_s: float = 1.0,
    limiter: Limiter | None = None,
) -> BackfillResult:
    """Re-extract ``stream`` of ``source`` for the days ``since`` to ``until`` (today if None).

    Raises :class:`ConfigError` for a bad stream, range or window, and :class:`FatalError` if
    another backfill of the stream is running; every other failure is in the result. Pass the
    shared limiter (``runners.sync.shared_limiter_for``) to pace together with other processes.
    """
    kind = registry.source_type(source.type)
    assert kind.catalog is not None
    assert kind.lister is not None
    catalog = kind.catalog()
    windowed = backfillable_streams(source)
    if stream not in catalog or stream not in source.streams:
        raise ConfigError(
            f"--stream: {source.name!r} has no stream {stream!r}; use one of {', '.join(windowed)}"
        )
    spec = catalog[stream]
    if not spec.backfillable:
        raise ConfigError(
            f"--stream {stream}: {spec.strategy_text}, not a list read by updated_at windows "
            f"({kind.vendor} documents no updated_after for it, or its records carry no "
            f"updated_at, or it is listed per parent); a backfill reads one of "
            f"{', '.join(windowed)}; "
            f"`syncer sync {source.name} --stream {stream} --full-refresh` re-reads it all"
        )
    if window_s < 1 or window_s != int(window_s):
        raise ConfigError(
            f"--window must be a whole number of seconds, at least 1s; got {window_s}"
        )
    last_day = until if until is not None else datetime.now(UTC).date()
    try:
        windows = plan_windows(since, last_day, timedelta(seconds=window_s))
    except ValueError as exc:
        raise ConfigError(f"--since/--until/--window: {exc}") from None
    async with pool.acquire() as conn:
        await ensure_schema(conn, source)
    client = client_for(session, source, limiter, backoff_base_s=backoff_base_s)
    started = time.monotonic()
    key = f"{source.name}.{stream}"
    box: dict[str, BackfillResult] = {}

    async def begin(conn: Connection) -> int:
        backfill_id = await backfills.start(conn, source.name, stream, windows, window_s, command)
        box["result"] = BackfillResult(
            backfill_id=backfill_id,
            source=source.name,
            stream=stream,
            range_start=windows[0][0],
            range_end=windows[-1][1],
            windows_total=len(windows),
        )
        return backfill_id

    async def finish(conn: Connection, frame: Frame) -> None:
        result = box["result"]
        if frame.lost and result.outcome != "succeeded":
            result.outcome, result.error = "failed", frame.lost
        await _finish(conn, result)

    async with exclusive_run(
        pool,
        lock_class=BACKFILL_LOCK_CLASS,
        kind="backfill",
        keys=[key],
        busy=lambda _keys: (
            f"another backfill of {key} is running against this database; wait for it "
            f"to finish, then run this command again: it resumes where that one stopped"
        ),
        start=begin,
        close_dead=lambda conn, backfill_id, _previous: backfills.close_dead(
            conn, source.name, stream, backfill_id
        ),
        finish=finish,
    ):
        result = box["result"]
        try:
            async with pool.acquire() as conn:
                todo = await _claim_windows(conn, result, windows)
            result.windows_skipped = len(windows) - len(todo)
            reader = _WindowReader(
                pool, client, kind.lister(source), source, spec, result, progress, started
            )
            reader.report(None)
            for window, walk in todo:
                shutdown.check()
                await reader.read(window, walk)
                result.windows_done += 1
                reader.report(None)
            result.outcome = "succeeded"
        except shutdown.Interrupted:
            result.outcome = "interrupted"
            result.error = "stopped by a signal; the same command resumes where it stopped"
        except SyncerError as exc:
            result.outcome, result.error = "failed", exc.message
            log.info("backfill of %s failed: %s", key, exc.message)
        except asyncio.CancelledError:
            result.outcome = "interrupted"
            result.error = "cancelled; the same command resumes where it stopped"
            raise
        except BaseException as exc:
            result.outcome, result.error = "failed", f"{type(exc).__name__}: {exc}"
            raise
        finally:
            result.elapsed_s = time.monotonic() - started
    return result


@dataclass
class _Reading:
    """One read of a window, in memory: what it served, and whether offset paging saw a loss."""

    served: set[int | str] = field(default_factory=set)
    shrank: bool = False
    past_end: bool = False  # a page in trusted order passed the window's end
    rereads: int = 0


class _WindowReader:
    """Reads windows page by page, committing each page with the window's position."""

    def __init__(
        self,
        pool: Pool,
        client: ApiClient,
        paging: Lister,
        source: SourceSettings,
        spec: Stream,
        result: BackfillResult,
        progress: Callable[[BackfillProgress], None] | None,
        started: float,
    ) -> None:
        self.pool = pool
        self.client = client
        self.paging = paging
        self.source = source
        self.spec = spec
        self.result = result
        self.progress = progress
        self.started = started

    def report(self, window: Window | None) -> None:
        if self.progress is None:
            return
        r = self.result
        self.progress(
            BackfillProgress(
                source=r.source,
                stream=r.stream,
                windows_total=r.windows_total,
                windows_skipped=r.windows_skipped,
                windows_done=r.windows_done,
                window=window,
                pages=r.pages,
                records=r.records,
                upserted=r.upserted,
                requests=r.http.requests,
                elapsed_s=time.monotonic() - self.started,
            )
        )

    async def read(self, window: Window, walk: Walk | None) -> None:
        """Read ``window`` to its end (from ``walk`` if a previous backfill got that far)."""
        start, end = window
        if walk is None:
            # Offset pages to the query's end where the list cannot be read in updated_at order.
            walk = Walk(lower_bound=start - STEP_OVERLAP, keyset=self.spec.strategy == "sorted")
        elif walk.watched:
            # What the interrupted offset-paged query served is not known: read it again.
            walk = _again(walk)
        else:
            log.info("%s: resuming window %s after %d pages", self._name, start, walk.pages)
        reading = _Reading()
        while True:
            shutdown.check()
            walk, state = await self._page(window, walk, reading)
            if state == "done":
                return
            if state == "reread":
                reading = _Reading(rereads=reading.rereads + 1)
                if reading.rereads > MAX_REREADS:
                    raise FatalError(
                        f"{self._name}: records updated at {walk.lower_bound} kept changing "
                        f"while the window {start}..{end} was read; run the same command again "
                        f"to read that part again"
                    )
                log.info("%s: window %s changed while read; reading again", self._name, start)

    @property
    def _name(self) -> str:
        return f"{self.source.name}.{self.spec.name}"

    async def _fetch(self, walk: Walk) -> Page:
        query = Query(
            updated_after=walk.lower_bound, sorted=walk.keyset and self.spec.strategy == "sorted"
        )
        return await fetch(
            self.client, self.paging, self.spec, query, walk.page, stats=self.result.http
        )

    async def _page(self, window: Window, walk: Walk, reading: _Reading) -> tuple[Walk, str]:
        """Fetch and store the walk's next page; the walk to go on with, and the window's
        state: "more" pages to read, "done", or "reread" (the walk starts over a query)."""
        result = self.result
        before = result.http.requests
        requested_at = datetime.now(UTC)
        page = await self._fetch(walk)
        rows, rejected = page.rows, page.rejected
        stamps = [r.updated_at for r in rows]
        total = page.total
        if walk.page > 1 and total is not None and walk.query_total is not None:
            # Fewer records under offset paging: one served may be gone, shifting the rest.
            reading.shrank = reading.shrank or total < walk.query_total
        reading.served.update(r.id for r in rows)
        before_page = walk
        walk = await step(self.client, self.paging, self.spec, walk, page, stats=self.result.http)
        if before_page.keyset and not walk.keyset:
            log.info(
                "%s: window %s: not trusting sort_by=updated_at (%s); reading it by offset pages",
                self._name,
                window[0].date(),
                walk.distrust,
            )
        # Sorted by updated_at (as verified so far), a page past `end` means nothing later
        # belongs to the window, once the next keyset step's X-Total confirms the order (a
        # server ignoring sort_by shows there). Not sorted, only the last page says that.
        confirmed = before_page.expect_total is not None and before_page.page == 1
        passed_end = walk.keyset and reading.past_end and confirmed
        reading.past_end = walk.keyset and (
            reading.past_end or any(u is not None and u >= window[1] for u in stamps)
        )
        state = "more"
        if walk.done or passed_end:
            state = "done"
            if walk.watched and (reading.shrank or await self._moved(walk, reading)):
                state = "reread"
                walk = _again(walk)
        done = state == "done"
        upserted = await self._commit(
            window,
            rows,
            rejected,
            requests=result.http.requests - before,
            walk=None if done else walk,
            done=done,
            requested_at=requested_at,
        )
        result.pages += 1
        result.records += len(rows) + len(rejected)
        result.upserted += upserted
        result.rejected += len(rejected)
        log.info(
            "%s: window %s, %d records, %d changed, %d rejected%s",
            self._name,
            window[0].date(),
            len(rows) + len(rejected),
            upserted,
            len(rejected),
            ", window done" if done else ", reading again" if state == "reread" else "",
        )
        for r in rejected:
            log.info("%s: rejected a record: %s", self._name, r.reason)
        self.report(window)
        return walk, state

    async def _moved(self, walk: Walk, reading: _Reading) -> bool:
        """Whether a record this window served was updated since offset paging began.

        Offset paging skips a record when one served before it moves away: an update sends it
        to the end of the ``updated_at`` order, past where a window stops reading. So once, at
        the window's end, read what changed since the offset-paged query began (usually one
        short page) and look for the window's records. New records only append: they never
        shift what was not served yet, and do not count.
        """
        assert walk.watch_since is not None
        check = Walk(lower_bound=walk.watch_since.replace(microsecond=0) - STEP_OVERLAP)
        while True:
            page = await self._fetch(check)
            if any(r.id in reading.served for r in page.rows):
                return True
            check = advance(check, page)
            if check.done:
                return False

    async def _commit(
        self,
        window: Window,
        rows: list[Row],
        rejected: list[Rejected],
        *,
        requests: int,
        walk: Walk | None,
        done: bool,
        requested_at: datetime,
    ) -> int:
        """One transaction: the page's rows and rejects, and the window's position (or done)."""
        walk_json = walk.to_json() if walk is not None else None
        for attempt in range(1, COMMIT_ATTEMPTS + 1):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    await leases.check(conn)  # refused once another backfill took it over
                    upserted = 0
                    if rows:
                        upserted = await upsert_rows(
                            conn,
                            self.source.schema,
                            self.spec.name,
                            rows,
                            self.spec.volatile,
                            requested_at=requested_at,
                        )
                    await record_rejected(
                        conn, None, self.result.source, self.result.stream, rejected, once=True
                    )
                    await backfills.save_page(
                        conn,
                        self.result.source,
                        self.result.stream,
                        self.result.backfill_id,
                        window,
                        walk_json,
                        backfills.PageCounts(
                            requests, len(rows) + len(rejected), upserted, len(rejected)
                        ),
                        done=done,
                    )
                    return upserted
            except asyncpg.exceptions.DeadlockDetectedError:
                # The sync upserting the same rows at the same moment; nothing was written.
                if attempt == COMMIT_ATTEMPTS:
                    raise
                log.info("%s: page commit deadlocked with another writer; retrying", self._name)
        raise AssertionError("unreachable")


async def _claim_windows(
    conn: Connection, result: BackfillResult, windows: list[Window]
) -> list[tuple[Window, Walk | None]]:
    """The planned windows not yet done, oldest first, each with where it resumes.

    A window is done if done windows cover it (a rerun with another ``--window`` skips what an
    earlier backfill read). The others get a row, 'pending' until their last page is stored.
    """
    stored = await backfills.windows_within(
        conn, result.source, result.stream, result.range_start, result.range_end
    )
    done = [w.window for w in stored if w.done]
    walks = {w.window: Walk.from_json(w.walk) for w in stored if not w.done and w.walk}
    todo = [w for w in windows if not covered(w, done)]
    await backfills.claim(conn, result.source, result.stream, result.backfill_id, todo)
    return [(w, walks.get(w)) for w in todo]


async def _finish(conn: Connection, result: BackfillResult) -> None:
    await backfills.finish(
        conn,
        result.backfill_id,
        backfills.Finished(
            outcome=result.outcome,
            error=result.error,
            windows_skipped=result.windows_skipped,
            windows_done=result.windows_done,
            requests=result.http.requests,
            records=result.records,
            upserted=result.upserted,
            rejected=result.rejected,
        ),
    )


def _again(walk: Walk) -> Walk:
    """A walk that reads ``walk``'s watched query again from its lower bound, keeping the
    verdict on the order (a server found to ignore ``sort_by`` is not trusted again)."""
    return Walk(lower_bound=walk.watch_lower, keyset=walk.keyset, distrust=walk.distrust)
