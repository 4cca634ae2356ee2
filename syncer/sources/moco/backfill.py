"""Backfills: a MOCO stream's history re-extracted in windows, resumably, beside the sync.

``syncer backfill SOURCE --stream NAME --since DATE [--until DATE] [--window 30d]`` cuts the
range ``[since 00:00 UTC, until + 1 day 00:00 UTC)`` (``until`` defaults to today, UTC) into
windows over the records' ``updated_at`` and reads them oldest first. MOCO has
``updated_after`` but no ``updated_before``: a window ``[start, end)`` is read as a walk (see
``sources/moco/walk.py``: keyset steps over ``sort_by=updated_at asc``, offset paging only in
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
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dt_time

import aiohttp
import asyncpg
import orjson

from syncer import shutdown
from syncer.errors import (
    ConfigError,
    FatalError,
    SyncerError,
)
from syncer.http.client import ApiClient, RequestStats
from syncer.pacing import Limiter
from syncer.pipeline import client_for
from syncer.results import SingleReport
from syncer.runframe import Frame, exclusive_run
from syncer.sources.base import Rejected, Row, StreamSpec
from syncer.sources.moco import api as moco
from syncer.sources.moco.settings import MocoSourceSettings
from syncer.sources.moco.walk import STEP_OVERLAP, Walk
from syncer.store import leases, locks
from syncer.store.pages import upsert_rows
from syncer.store.types import Connection, Pool

log = logging.getLogger(__name__)

# Not the sync's RUN_LOCK_CLASS: a backfill and the incremental sync never wait for each other.
BACKFILL_LOCK_CLASS = locks.BACKFILL

MAX_WINDOWS = 100_000  # a plan larger than this is a typo in --window, not a wish
MAX_REREADS = 3  # a window whose pocket keeps changing while read is read again this often
COMMIT_ATTEMPTS = 3  # a page's transaction is retried after a deadlock with the sync


Window = tuple[datetime, datetime]


@dataclass(frozen=True)
class BackfillProgress:
    """Where a backfill stands; passed to the progress callback after every page."""

    source: str
    stream: str
    windows_total: int  # windows in the plan
    windows_skipped: int  # done before this backfill began
    windows_done: int  # finished by this backfill
    window: Window | None  # the window being read, if any
    pages: int  # pages stored by this backfill
    records: int
    upserted: int
    requests: int
    elapsed_s: float

    @property
    def windows_finished(self) -> int:
        """Windows that need no more reading: skipped plus done (the progress bar's value)."""
        return self.windows_skipped + self.windows_done

    @property
    def records_per_s(self) -> float:
        return self.records / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass
class BackfillResult(SingleReport):
    backfill_id: int
    source: str
    stream: str
    range_start: datetime
    range_end: datetime
    windows_total: int = 0
    windows_skipped: int = 0  # already done when this backfill began
    windows_done: int = 0  # finished by this backfill
    pages: int = 0
    records: int = 0
    upserted: int = 0  # rows inserted or changed
    rejected: int = 0
    elapsed_s: float = 0.0
    outcome: str = "running"  # succeeded, failed, interrupted
    error: str | None = None
    http: RequestStats = field(default_factory=RequestStats)

    @property
    def requests(self) -> int:
        return self.http.requests


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
    source: MocoSourceSettings,
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
    shared limiter (``pipeline.shared_limiter_for``) to pace together with other processes.
    """
    spec = moco.STREAMS.get(stream)
    if spec is None:
        raise ConfigError(
            f"--stream: {source.name!r} has no stream {stream!r}; "
            f"use one of {', '.join(moco.STREAMS)}"
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
    client = client_for(session, source, limiter, backoff_base_s=backoff_base_s)
    started = time.monotonic()
    key = f"{source.name}.{stream}"
    box: dict[str, BackfillResult] = {}

    async def begin(conn: Connection) -> int:
        backfill_id = await _start(conn, source.name, stream, windows, window_s, command)
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
        close_dead=lambda conn, backfill_id, _previous: _close_dead(
            conn, source.name, stream, backfill_id
        ),
        finish=finish,
    ):
        result = box["result"]
        try:
            async with pool.acquire() as conn:
                todo = await _claim_windows(conn, result, windows)
            result.windows_skipped = len(windows) - len(todo)
            reader = _WindowReader(pool, client, source, spec, result, progress, started)
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

    served: set[int] = field(default_factory=set)
    shrank: bool = False
    past_end: bool = False  # a page in trusted order passed the window's end
    rereads: int = 0


class _WindowReader:
    """Reads windows page by page, committing each page with the window's position."""

    def __init__(
        self,
        pool: Pool,
        client: ApiClient,
        source: MocoSourceSettings,
        spec: StreamSpec,
        result: BackfillResult,
        progress: Callable[[BackfillProgress], None] | None,
        started: float,
    ) -> None:
        self.pool = pool
        self.client = client
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
            walk = Walk(lower_bound=start - STEP_OVERLAP)
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

    async def _fetch(self, walk: Walk) -> moco.Page:
        params = moco.page_params(
            self.spec,
            page=walk.page,
            per_page=self.source.per_page,
            updated_after=walk.lower_bound,
        )
        return await moco.fetch_page(
            self.client, self._url, params, self.spec, stats=self.result.http
        )

    @property
    def _url(self) -> str:
        return f"{self.source.base_url}{self.spec.path}"

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
        walk = await moco.walk_on(
            self.client, self._url, self.spec, walk, page, stats=self.result.http
        )
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
            check = page.advance(check)
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
        walk_json = orjson.dumps(walk.to_json()).decode() if walk is not None else None
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
                    if rejected:
                        await _reject(conn, self.result, rejected)
                    await conn.execute(
                        """
                        update syncer.backfill_windows set
                            walk = $5::jsonb, pages = pages + 1, requests = requests + $6,
                            records = records + $7, upserted = upserted + $8,
                            rejected = rejected + $9, backfill_id = $10,
                            status = case when $11 then 'done' else status end,
                            finished_at = case when $11 then now() end
                        where source = $1 and stream = $2
                          and window_start = $3 and window_end = $4
                        """,
                        self.result.source,
                        self.result.stream,
                        window[0],
                        window[1],
                        walk_json,
                        requests,
                        len(rows) + len(rejected),
                        upserted,
                        len(rejected),
                        self.result.backfill_id,
                        done,
                    )
                    return upserted
            except asyncpg.exceptions.DeadlockDetectedError:
                # The sync upserting the same rows at the same moment; nothing was written.
                if attempt == COMMIT_ATTEMPTS:
                    raise
                log.info("%s: page commit deadlocked with another writer; retrying", self._name)
        raise AssertionError("unreachable")


async def _reject(conn: Connection, result: BackfillResult, rejected: list[Rejected]) -> None:
    """Rejected records, each once: re-reading history must not count the same record again."""
    await conn.executemany(
        """
        insert into syncer.rejected_records (run_id, source, stream, reason, record)
        select null, $1, $2, $3, $4
        where not exists (select 1 from syncer.rejected_records
                          where source = $1 and stream = $2 and record = $4)
        """,
        [(result.source, result.stream, r.reason, r.record) for r in rejected],
    )


async def _close_dead(conn: Connection, source: str, stream: str, current: int) -> None:
    """Backfills of the stream still 'running' died (we hold the lock, so none is live)."""
    await conn.execute(
        "update syncer.backfills set outcome = 'interrupted', finished_at = now(),"
        " error = 'the process ended before the backfill finished'"
        " where source = $1 and stream = $2 and outcome = 'running' and id <> $3",
        source,
        stream,
        current,
    )


async def _start(
    conn: Connection, source: str, stream: str, windows: list[Window], window_s: float, command: str
) -> int:
    backfill_id: int = await conn.fetchval(
        "insert into syncer.backfills (source, stream, range_start, range_end, window_s,"
        " command, pid, host, windows_total) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " returning id",
        source,
        stream,
        windows[0][0],
        windows[-1][1],
        int(window_s),
        command,
        os.getpid(),
        socket.gethostname(),
        len(windows),
    )
    return backfill_id


async def _claim_windows(
    conn: Connection, result: BackfillResult, windows: list[Window]
) -> list[tuple[Window, Walk | None]]:
    """The planned windows not yet done, oldest first, each with where it resumes.

    A window is done if done windows cover it (a rerun with another ``--window`` skips what an
    earlier backfill read). The others get a row, 'pending' until their last page is stored.
    """
    rows = await conn.fetch(
        "select window_start, window_end, status, walk from syncer.backfill_windows"
        " where source = $1 and stream = $2 and window_start < $4 and window_end > $3",
        result.source,
        result.stream,
        result.range_start,
        result.range_end,
    )
    done = [(r["window_start"], r["window_end"]) for r in rows if r["status"] == "done"]
    walks = {
        (r["window_start"], r["window_end"]): Walk.from_json(orjson.loads(r["walk"]))
        for r in rows
        if r["status"] == "pending" and r["walk"] is not None
    }
    todo = [w for w in windows if not covered(w, done)]
    async with conn.transaction():
        await conn.executemany(
            """
            insert into syncer.backfill_windows (source, stream, window_start, window_end,
                                                 backfill_id)
            values ($1, $2, $3, $4, $5)
            on conflict (source, stream, window_start, window_end) do update
                set backfill_id = excluded.backfill_id
            """,
            [(result.source, result.stream, s, e, result.backfill_id) for s, e in todo],
        )
    return [(w, walks.get(w)) for w in todo]


async def _finish(conn: Connection, result: BackfillResult) -> None:
    await conn.execute(
        """
        update syncer.backfills set outcome = $2, error = $3, finished_at = now(),
            windows_skipped = $4, windows_done = $5, requests = $6, records = $7,
            upserted = $8, rejected = $9
        where id = $1
        """,
        result.backfill_id,
        result.outcome,
        result.error,
        result.windows_skipped,
        result.windows_done,
        result.http.requests,
        result.records,
        result.upserted,
        result.rejected,
    )


def _again(walk: Walk) -> Walk:
    """A walk that reads ``walk``'s watched query again from its lower bound, keeping the
    verdict on the order (a server found to ignore ``sort_by`` is not trusted again)."""
    return Walk(lower_bound=walk.watch_lower, keyset=walk.keyset, distrust=walk.distrust)


def summary(result: BackfillResult) -> str:
    """The one line a finished backfill is reported with."""
    return (
        f"backfill {result.source}.{result.stream}: {result.outcome}; windows "
        f"{result.windows_done} done, {result.windows_skipped} already done before, of "
        f"{result.windows_total}; {result.records} records, {result.upserted} changed, "
        f"{result.elapsed_s:.1f}s"
    )


def progress_lines(source: str, stream: str) -> Callable[[BackfillProgress], None]:
    """A progress callback printing a line each time a window is done (and at the end)."""
    last = [0]

    def show(p: BackfillProgress) -> None:
        done = p.windows_done + p.windows_skipped
        if done != last[0] or p.window is None:
            last[0] = done
            print(
                f"backfill {source}.{stream}: window {done}/{p.windows_total}, "
                f"{p.records} records, {p.records_per_s:.0f}/s",
                flush=True,
            )

    return show
