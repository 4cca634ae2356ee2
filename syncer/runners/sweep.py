"""The deletion sweep: records deleted at the source get ``_deleted_at`` in the warehouse.

It runs for any source type with a catalog and a lister (``registry.SourceType``); below, as
MOCO's lists answer it.

Which streams it checks, and how, is each catalog stream's ``deletions``: lists that take the
``ids`` filter are asked about their stored ids (below); lists with ``updated_after`` but no
``ids`` filter (per-project tasks, contracts, expenses; invoice bookkeeping exports) have their
ids listed in full (``extract/listing.py``), per parent; full and unpaged listings find their
deletions in the sync itself and are not swept. Per-parent lists are checked parent by parent
(a parent whose lists answer 404 is gone, with its children), and the rows of every parent
marked deleted go with it (``store/marks.py``).

MOCO has no tombstones (docs/vendors/moco.md): a deleted record drops out of every list, so an
incremental sync never learns of it. The sweep asks MOCO, per stream, which of the ids the
warehouse holds still exist: MOCO's ``ids`` filter with 100 ids per request, plus the
parameters the sync sends (``include_archived``, ``include_disregarded``: archived is not
deleted). MOCO serves 100 records per page, so one answer lists exactly the ids of the chunk
that still exist, and a sweep costs one request per 100 rows. (Asking first for ``X-Total``
with ``per_page=1`` and paging only the chunks that fall short would cost that much plus one
request per chunk with a deletion.)

- Ids of live rows missing from the answers are deleted: marked ``_deleted_at = now()``,
  never removed. Unless more than ``deletion_guard`` of the stream's live rows are missing at
  once (a key that lost access looks the same, see ``deletions.py``): then none is marked and
  the stream run carries a warning.
- Rows marked deleted are asked about too, and those the source lists again are restored
  (stored as served now, ``_deleted_at`` null). A sync restores a row whenever it reads the
  record again (``store/pages.py`` clears ``_deleted_at`` on upsert), but a record that comes
  back unchanged is older than the watermark, and only the sweep sees it.
- A server that answers more than the ids asked for does not honour the filter: the stream
  fails rather than take most of it for deleted. A server that pages fewer than 100 records
  gets chunks of its page size, so no answer ever needs a second page (offset paging over a
  set that changes could skip a record, which would look deleted).
- Marks are written per stream in one transaction once the whole stream was checked (the
  guard needs the whole picture): a sweep interrupted in a stream marks nothing there, and the
  next one checks it again.
- One sweep of a stream at a time (an advisory lock of its own per stream, ``runframe.py``);
  syncs run beside it. A sync's page requested before a deletion was seen and committed after
  the mark does not clear it: rows are restored only by pages requested after the mark
  (``store/pages.py``). The sweep spends from the credential's rate limit, shared with the syncs.
- Bookkeeping: a run of kind ``sweep`` in ``syncer.runs``; per stream a ``stream_runs`` row
  with ``records`` = ids checked, ``deleted`` = rows marked, ``upserted`` = rows restored,
  ``requests`` and ``warning``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import aiohttp

from syncer import progress, registry, shutdown
from syncer.catalog import Catalog, Stream
from syncer.config import SourceSettings
from syncer.deletions import guard_warning
from syncer.errors import (
    FatalError,
    MalformedResponseError,
)
from syncer.extract.base import Lister, Options, Query
from syncer.extract.listing import read_listing
from syncer.extract.records import Row
from syncer.extract.running import all_or_stop, stream_run_in
from syncer.http.client import ApiClient, RequestStats
from syncer.pacing import Limiter
from syncer.results import StreamResult, StreamSweep, SweepResult, SyncContext
from syncer.runframe import exclusive_run
from syncer.runners.sync import client_for
from syncer.store import leases, locks, marks, runs, sweeps
from syncer.store.types import Pool
from syncer.warehouse import ensure_schema

log = logging.getLogger(__name__)

CHUNK = 100  # ids per request: one MOCO page holds 100 records
SWEEP_LOCK_CLASS = locks.SWEEP  # name: "source.stream"


# --- the pure part -----------------------------------------------------------------------------


def ids_params(lister: Lister, stream: Stream, chunk: Sequence[int]) -> dict[str, str]:
    """The query asking which of ``chunk`` exist, with the sync's fixed parameters."""
    return lister.params(stream, Query(ids=chunk, size=len(chunk)), 1)


def sweepable_streams(source: SourceSettings) -> list[str]:
    """The streams of ``source`` that ``syncer sweep`` checks (none: its type has no sweep)."""
    kind = registry.source_type(source.type)
    if kind.catalog is None or kind.lister is None or kind.options is None:
        return []
    catalog = kind.catalog()
    return [n for n in source.streams if n in catalog and catalog[n].sweepable]


@dataclass(frozen=True)
class Decision:
    gone: list[int]  # live rows to mark deleted
    back: list[int]  # deleted rows the source lists again
    missing: int  # live rows the source no longer lists (gone, unless withheld)
    warning: str | None  # why the missing ones are not marked


def decide(
    stream: str,
    live: Collection[int],
    deleted: Collection[int],
    present: Collection[int],
    guard: float,
) -> Decision:
    """What a complete check of a stream changes, with the deletion guard applied."""
    found = set(present)
    missing = sorted(set(live) - found)
    back = sorted(found & set(deleted))
    warning = guard_warning(
        stream,
        len(missing),
        len(live),
        guard,
        missing_from="the source",
        advice="If they really were deleted, raise deletion_guard for one sweep and run it "
        "again; otherwise check that the key still sees every record",
    )
    return Decision([] if warning else missing, back, len(missing), warning)


# --- the run -----------------------------------------------------------------------------------


async def sweep_source(
    pool: Pool,
    session: aiohttp.ClientSession,
    source: SourceSettings,
    *,
    streams: Sequence[str] = (),
    command: str = "sweep",
    limiter: Limiter | None = None,
    backoff_base_s: float = 1.0,
) -> SweepResult:
    """Check every stored id of ``source`` (its sweepable streams, or ``streams``) and mark
    deletions."""
    kind = registry.source_type(source.type)
    assert kind.catalog is not None
    assert kind.lister is not None
    assert kind.options is not None
    catalog = kind.catalog()
    names = list(streams) or sweepable_streams(source)
    async with pool.acquire() as conn:
        await ensure_schema(conn, source)
    client = client_for(session, source, limiter, backoff_base_s=backoff_base_s)
    started = time.monotonic()
    results = [StreamSweep(name) for name in names]
    progress.watch(results)
    async with exclusive_run(
        pool,
        lock_class=SWEEP_LOCK_CLASS,
        kind="sweep",
        source=source.name,
        command=command,
        keys=[f"{source.name}.{name}" for name in names],
        busy=lambda keys: (
            f"a sweep of {', '.join(keys)} is running against this database; "
            "wait for it to finish (see `syncer status`)"
        ),
    ) as frame:
        run_id = frame.run_id
        gate = asyncio.Semaphore(source.concurrency)
        context = SyncContext(pool, client, source, run_id, False)
        sweeper = _Sweeper(context, catalog, kind.lister(source), kind.options(source))

        async def one(result: StreamSweep) -> None:
            async with gate:
                await sweeper.sweep(catalog[result.stream], result)

        by_name = {r.stream: r for r in results}
        for level in catalog.levels(names):  # parents before their children
            await all_or_stop(one(by_name[n]) for n in level)
        frame.end_as(results)
    return SweepResult(run_id, source.name, results, time.monotonic() - started, client.stats)


class _Sweeper:
    """Sweeps one stream at a time, by its ``deletions``."""

    def __init__(
        self,
        context: SyncContext[SourceSettings],
        catalog: Catalog,
        lister: Lister,
        options: Options,
    ):
        self.context, self.catalog, self.lister, self.options = context, catalog, lister, options

    async def sweep(self, stream: Stream, result: StreamSweep) -> None:
        context = self.context
        source = context.source
        interrupted = "stopped by a signal; sweeps again next run"
        async with stream_run_in(
            context.pool, context.run_id, source.name, result, interrupted=interrupted
        ):
            twin = (
                self.catalog[stream.parent.twin] if stream.parent and stream.parent.twin else None
            )
            if twin is not None:  # every parent's records in one list of its own
                await self._by_ids(stream, result, None, through=twin)
            elif stream.parent is None and stream.deletions == "ids":
                await self._by_ids(stream, result, None)
            elif stream.parent is None:
                await self._by_listing(stream, result, None)
            else:
                await self._per_parent(stream, result)
            await self._cascade(stream, result)
            log.info(
                "%s.%s: %d ids checked in %d requests, %d deleted, %d restored",
                source.name,
                stream.name,
                result.checked,
                result.http.requests,
                result.deleted,
                result.restored,
                extra={"run_id": context.run_id, "source": source.name, "stream": stream.name},
            )

    async def _per_parent(self, stream: Stream, result: StreamSweep) -> None:
        """A per-parent list, checked parent by parent; what each no longer lists is marked at
        the end, behind the guard weighed over the whole stream (a key that lost access to
        every project's tasks must not delete them one project at a time). A parent whose
        list is gone (404) is marked deleted with its children."""
        assert stream.parent is not None
        context = self.context
        source = context.source
        async with context.pool.acquire() as conn:
            parents = await marks.live_keys(conn, source.schema, stream.parent.stream)
        missing: list[int | str] = []
        for parent in parents:
            shutdown.check()
            found, gone = (
                await self._by_ids(stream, result, str(parent), defer=True)
                if stream.deletions == "ids"
                else await self._by_listing(stream, result, str(parent), defer=True)
            )
            missing += gone
            if not found:
                async with context.pool.acquire() as conn, conn.transaction():
                    await leases.check(conn)
                    await marks.mark_deleted(
                        conn, source.schema, stream.parent.stream, [parent], datetime.now(UTC)
                    )
        if not missing:
            return
        async with context.pool.acquire() as conn, conn.transaction():
            await leases.check(conn)
            live = len(await marks.live_keys(conn, source.schema, stream.name))
            warning = guard_warning(
                stream.name,
                len(missing),
                live,
                self.options.deletion_guard,
                missing_from="the source",
                advice="If they really were deleted, raise deletion_guard for one sweep and "
                "run it again; otherwise check that the key still sees every record",
            )
            if warning is not None:
                result.warning, result.withheld = warning, result.withheld + len(missing)
                log.warning("%s.%s: %s", source.name, stream.name, warning)
                return
            marked = await marks.mark_deleted(
                conn, source.schema, stream.name, missing, datetime.now(UTC)
            )
            await runs.add_stream_counts(conn, context.run_id, stream.name, deleted=marked)
        result.deleted += marked

    async def _cascade(self, stream: Stream, result: StreamSweep) -> None:
        """The rows of records marked deleted go with them: per-parent lists and details."""
        context = self.context
        source = context.source
        children = [s for s in self.catalog.children(stream.name) if s.name in source.streams]
        if stream.parent is not None:
            children = [stream]
        if not children:
            return
        async with context.pool.acquire() as conn, conn.transaction():
            await leases.check(conn)
            for child in children:
                up = self.catalog.upstream(child.name)
                assert up is not None
                gone = await marks.mark_children(
                    conn, source.schema, child.name, up, by_id=child.detail_of is not None
                )
                if child.name == stream.name:
                    result.deleted += gone
                    await runs.add_stream_counts(conn, context.run_id, stream.name, deleted=gone)

    async def _by_listing(
        self, stream: Stream, result: StreamSweep, parent: str | None, *, defer: bool = False
    ) -> tuple[bool, list[int | str]]:
        """Every id of the list (one parent's) listed again; the rows not listed are deleted
        (behind the guard), or, ``defer``-ed, returned. False if the list is gone."""
        context = self.context
        listed = StreamResult(stream.name)
        try:
            end = await read_listing(
                context,
                stream,
                self.lister,
                self.options,
                listed,
                parent=parent,
                positioned=False,
                mark=not defer,
            )
        finally:
            _merge(result.http, listed.http)
            result.committed_requests += listed.committed_requests
        result.checked += listed.records
        result.present += listed.records
        result.deleted += listed.deleted
        if listed.warning and result.warning is None:
            result.warning = listed.warning
        return end.found, list(end.missing) if defer else []

    async def _by_ids(
        self,
        stream: Stream,
        result: StreamSweep,
        parent: str | None,
        *,
        defer: bool = False,
        through: Stream | None = None,
    ) -> tuple[bool, list[int | str]]:
        """Ask which stored ids (of one parent's rows) still exist; mark the others (or,
        ``defer``-ed, return them: the caller weighs them with the guard). False if the list
        is gone (404)."""
        context = self.context
        source = context.source
        async with context.pool.acquire() as conn:
            local = await sweeps.local_ids(conn, source.schema, stream.name, parent=parent)
        checker = _Checker(context.client, self.lister, through or stream, result.http, parent)
        present: set[int] = set()
        back: list[Row] = []
        ids = sorted(local.live | local.deleted)
        if parent is None:
            result.total = len(ids)
        done = 0
        while done < len(ids):
            shutdown.check()
            chunk = ids[done : done + checker.size]
            rows = await checker.check(chunk)
            if checker.missing:
                return False, []
            if rows is None:  # more than the server serves a page: again, in smaller chunks
                continue
            present.update(int(r.id) for r in rows)
            back += [r for r in rows if r.id in local.deleted]
            done += len(chunk)
            result.checked += len(chunk)
        guard = 1.0 if defer else self.options.deletion_guard  # deferred: weighed by the caller
        decision = decide(stream.name, local.live, local.deleted, present, guard)
        result.present += len(present)
        if decision.warning:
            result.warning, result.withheld = decision.warning, result.withheld + decision.missing
            log.warning("%s.%s: %s", source.name, stream.name, decision.warning)
        async with context.pool.acquire() as conn:
            deleted, restored = await sweeps.commit(
                conn,
                sweeps.SweepCommit(
                    schema=source.schema,
                    table=stream.name,
                    volatile=stream.volatile,
                    run_id=context.run_id,
                    gone=[] if defer else decision.gone,
                    back=back,  # exactly decision.back, with their records
                    checked=len(ids),
                    first_requested_at=checker.first_requested_at,
                    last_answered_at=checker.last_answered_at,
                    parent=parent,
                ),
            )
        result.deleted += deleted
        result.restored += restored
        return True, list(decision.gone) if defer else []


def _merge(total: RequestStats, part: RequestStats) -> None:
    total.requests += part.requests
    total.retries += part.retries
    total.rate_limited += part.rate_limited
    total.waited_s += part.waited_s


class _Checker:
    """Asks a stream which ids of a chunk exist, one request per chunk."""

    def __init__(
        self,
        client: ApiClient,
        lister: Lister,
        stream: Stream,
        stats: RequestStats,
        parent: str | None,
    ):
        self._client, self._lister, self._stream, self._stats = client, lister, stream, stats
        self._parent = parent
        self._url = lister.url(stream, parent=parent)
        self.size = CHUNK  # lowered to the server's page size if it serves fewer
        self.first_requested_at: datetime | None = None  # when the first request began
        self.last_answered_at: datetime | None = None  # when the latest answer came in
        self.missing = False  # the list answered 404: its parent is gone

    async def check(self, chunk: Sequence[int]) -> list[Row] | None:
        """The records of ``chunk`` the source lists; None if they take more than one page
        (then :attr:`size` is the server's page size, and the chunk is to be asked again)."""
        self.first_requested_at = self.first_requested_at or datetime.now(UTC)
        response = await self._client.get(
            self._url,
            ids_params(self._lister, self._stream, chunk),
            stats=self._stats,
            missing_ok=self._parent is not None,
        )
        self.last_answered_at = datetime.now(UTC)
        if response.status == 404:  # a per-parent list whose parent is gone
            self.missing = True
            return []
        query = Query(ids=chunk, size=len(chunk), parent=self._parent)
        page = self._lister.read(self._stream, response, query)
        rows, served = page.rows, page.count  # the sync records what cannot be stored
        total = page.total
        asked = set(chunk)
        if any(r.id not in asked for r in rows) or (total is not None and total > len(chunk)):
            raise FatalError(
                f"{self._url} does not honour the ids filter (asked for {len(chunk)} ids, "
                f"it lists {total if total is not None else len(rows)} records); without it "
                "the sweep cannot tell deleted records from the others, so none were marked"
            )
        # Link's rel="next" as sent: on an empty page too, more is a misbehaving server.
        if not page.next_link and (total is None or total <= served):
            return rows
        # Fewer records a page than asked for: from now on, chunks that each fit one page.
        if not served or served >= len(chunk):
            raise MalformedResponseError(
                f"{self._url} answered {served} of {len(chunk)} records asked for by id "
                "and says more follow; the API is misbehaving, try again later"
            )
        self.size = served
        return None
