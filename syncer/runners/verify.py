"""``syncer verify``: prove each stream complete against the source's own counts, and repair.

An incremental sync trusts its cursor: a record whose ``updated_at`` is behind the watermark
(an import, a restore, a server clock behind) is never read, and a deletion is never seen. A
verify asks the source how many records each list holds and compares with the warehouse:

* **counts** (a list with ``updated_after`` and ``X-Total``): the total and what changed after
  the stream's watermark (the next sync's, compared on neither side), taken together: one
  request where the list sorts (its newest records' page, ``sort_by=updated_at desc``), else
  two. Equal: the stream is verified. Otherwise the counts above a ladder of times find the
  windows of ``updated_at`` that differ, bisection narrows them (``extract/completeness.py``),
  and only those windows are read again (``extract/ranges.py``): what the source serves there
  and the warehouse lacks is missing (stored), what the warehouse holds there and the source
  no longer lists is asked about by id and, if gone, extra (marked ``_deleted_at``, behind the
  deletion guard). Then counted again, until the counts agree (at most ``ROUNDS`` times). A
  list short enough, or differing in so many records that cutting costs more, is read whole;
* **whole** (no ``updated_at`` on the records, no ``X-Total``, full and unpaged lists): the
  total where the list reports one; where it differs (or cannot be counted), the whole list
  read and compared both ways;
* **parents** (per-parent lists): counted over every parent with the list that holds the same
  records (``/projects/expenses``) or, where none does, with what each parent's record names
  (a project's ``tasks``); then only the parents that differ are counted and read again;
* **scan** (a type that reads its lists its own way, ``SourceType.rescan``: MOCA): each list's
  total (a per-parent list's: each parent's, summed) against the live rows; where they differ,
  or the list gives none, the type lists the stream again in full and compares both ways
  (``sources/moca/verify.py``); a per-parent list of about a page a parent is listed at once
  (counting it would cost as much);
* reports, objects and details are not verified (re-pulled per period, read whole each run,
  read per record).

Records that change while a verify runs are no difference: each count leaves out, on both
sides, what the source lists after the compared time (the stored row of a record changed
since is an older version: ``store.verify.Stale``); where the list sorts, as at the moment of
each count (its newest records' page shows what changed by then), else as at the round's
beginning (a record changed while the ladder is counted can then hide a difference, which the
next round's count finds). A list that does not sort is counted by two requests, its total and
what changed after the compared time; where records kept being created between them (a take
again and again listing one the warehouse lacks, stamped since the total), no count tells
whether the total holds it, and the list is compared whole. Counts see net differences: a
record missing and another deleted in one window cancel out (``extract/completeness.py``).

Repairs never move a stream's watermark or walk: a verify killed at any point leaves the sync
as it was, and the next verify finds what is left. A verify holds the streams' sync locks
(a sync of a stream waits for its verify, as for another sync), pays from the credential's
shared rate budget, and records a completeness report per stream (``syncer.verifications``:
``syncer status`` shows it) with the run in ``syncer.runs``. ``--no-repair`` reads as much,
and changes nothing.

One concept: a verify of one source, its plan and its methods (counts, whole, parents)
sharing one reading and repairing path; the pure parts are ``extract/completeness.py``.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from syncer import progress, registry, shutdown
from syncer.catalog import Catalog, Stream
from syncer.config import SourceSettings
from syncer.deletions import guard_warning
from syncer.errors import ConfigError, MalformedResponseError
from syncer.extract import completeness
from syncer.extract.base import Lister, Options, Page, Query, fetch
from syncer.extract.ranges import Reading, read_range
from syncer.extract.records import Row
from syncer.extract.running import all_or_stop, stream_run_in
from syncer.pacing import Limiter
from syncer.results import StreamVerify, SyncContext, VerifyResult
from syncer.runframe import exclusive_run
from syncer.runners.sync import RUN_LOCK_CLASS, client_for
from syncer.store import leases, marks, pages, runs
from syncer.store import verify as store
from syncer.warehouse import ensure_schema

__all__ = ["method_of", "report_of", "verify_source"]

log = logging.getLogger(__name__)

CLOCK_SLACK = timedelta(minutes=1)  # compared up to a minute before now at most (clocks differ)
CHUNK = 100  # ids asked about per request
SMALL_PAGES = 4  # a list this many pages long is read whole rather than cut into windows
ROUNDS = 3  # counted again after repairs, until the counts agree, at most this many times
STALE_PAGES = 2  # records changed after the compared time: read to leave out, up to this many
TAKES = 3  # a list's total and what changed after the compared time: taken again, at most


def report_of(result: StreamVerify, source: str) -> store.Verification:
    """A stream's completeness report as ``syncer.verifications`` keeps it."""
    outcome = result.verdict
    if result.outcome == "failed":
        outcome = "failed"
    elif result.outcome == "interrupted":
        outcome = "interrupted"
    return store.Verification(
        source,
        result.stream,
        outcome,
        result.method,
        result.source_count,
        result.warehouse_count,
        result.missing,
        result.extra,
        result.repaired,
        result.unrepaired,
        result.http.requests,
        result.error,
    )


def method_of(stream: Stream, *, scan: bool = False) -> str:
    """How ``stream`` is verified (module docstring); ``scan``: its type compares its lists
    its own way (``SourceType.rescan``)."""
    if not stream.verifiable:
        return "none"
    if scan:
        return "scan"
    if stream.parent is not None:
        return "parents" if (stream.parent.twin or stream.parent.embedded) else "whole"
    counted = stream.strategy in ("sorted", "unsorted") and stream.paged_headers
    return "counts" if counted and stream.replication_key else "whole"


def planned_requests(
    stream: Stream, live: int, page_size: int, *, method: str | None = None, parents: int = 1
) -> int:
    """What verifying ``stream`` costs when nothing differs (repairs come on top); ``parents``:
    the live records of its parent stream, if it has one."""
    method = method or method_of(stream)
    if method == "none":
        return 0
    if method == "scan":
        return parents if stream.parent is not None else 1  # a total per parent's list
    if method == "counts":
        return 1 if stream.takes("sort_by") else 2  # the newest records' page; or two counts
    if method == "parents":
        return 1 if stream.parent and stream.parent.twin else 0
    if stream.paged_headers:
        return 1  # a total, then the list only if it differs
    if not stream.takes("page"):
        return 1
    return max(1, math.ceil(live / page_size))


async def verify_source(
    pool: Any,
    session: aiohttp.ClientSession,
    source: SourceSettings,
    *,
    streams: Sequence[str] = (),
    repair: bool = True,
    command: str = "verify",
    limiter: Limiter | None = None,
    backoff_base_s: float = 1.0,
) -> VerifyResult:
    """Verify ``source``'s streams (all it syncs, or ``streams``); ConfigError for a source
    type that cannot count its lists."""
    kind = registry.source_type(source.type)
    if kind.count is None or kind.lister is None or kind.catalog is None:
        raise ConfigError(
            f"verify: {source.name!r} is a {source.type} source, and {kind.vendor} sources "
            "cannot be verified (their type declares no way to count a list)"
        )
    catalog = kind.catalog()
    lister = kind.lister(source)
    options = kind.options(source) if kind.options else Options()
    names = list(streams) or list(source.streams)
    parents = {p.stream for p in (catalog[n].parent for n in names) if p is not None}
    async with pool.acquire() as conn:
        await ensure_schema(conn, source)
        live = {
            n: await store.stored_above(conn, source.schema, n, None)
            for n in {*names, *parents}
            if not catalog[n].snapshots
        }
    client = client_for(session, source, limiter, backoff_base_s=backoff_base_s)
    started = time.monotonic()
    results = [StreamVerify(name) for name in names]
    for r in results:
        stream = catalog[r.stream]
        r.method = method_of(stream, scan=kind.rescan is not None)
        parent = live.get(stream.parent.stream, 0) if stream.parent else 1
        r.planned = planned_requests(
            stream, live.get(r.stream, 0), lister.page_size, method=r.method, parents=parent
        )
    planned = sum(r.planned for r in results)
    log.info(
        "verify %s: %d streams, about %d requests if nothing differs (more where one does)",
        source.name,
        len(results),
        planned,
    )
    progress.watch(results)
    async with exclusive_run(
        pool,
        lock_class=RUN_LOCK_CLASS,
        kind="verify",
        source=source.name,
        command=command,
        keys=[f"{source.name}.{name}" for name in names],
        busy=_busy,
    ) as frame:
        context = SyncContext(pool, client, source, frame.run_id, False)
        verifier = _Verifier(context, catalog, lister, options, kind.count, kind.rescan, repair)
        gate = asyncio.Semaphore(source.concurrency)
        by_name = {r.stream: r for r in results}

        async def one(result: StreamVerify) -> None:
            async with gate:
                await verifier.verify(catalog[result.stream], result)

        for level in catalog.levels(names):  # parents before their children
            await all_or_stop(one(by_name[n]) for n in level)
        frame.end_as(results)
    return VerifyResult(
        frame.run_id,
        source.name,
        results,
        time.monotonic() - started,
        client.stats,
        planned,
        repair,
    )


@dataclass(frozen=True)
class _Scope:
    """What one round of counting compares: records changed up to ``top``. ``total`` is the
    list's total and ``source_top`` what it holds after ``top``, taken together; ``stale``
    the stored rows of the records it lists after ``top`` (left out of the counts);
    ``uncertain`` how many of those may have been created after the total was taken."""

    top: datetime
    total: int
    source_top: int
    stale: store.Stale
    uncertain: int = 0


def _busy(keys: list[str]) -> str:
    """A verify holds its streams' sync locks: a sync or another verify has them."""
    return (
        f"a sync or verify of {', '.join(keys)} is running against this database; "
        "wait for it to finish (see `syncer status`)"
    )


class _Verifier:
    def __init__(
        self,
        context: SyncContext[Any],
        catalog: Catalog,
        lister: Lister,
        options: Options,
        counter: Any,
        rescan: Any,
        repair: bool,
    ) -> None:
        self.context, self.catalog, self.lister = context, catalog, lister
        self.options, self.counter, self.repair = options, counter, repair
        self.rescan = rescan
        self.source = context.source

    async def verify(self, stream: Stream, result: StreamVerify) -> None:
        context = self.context
        try:
            async with stream_run_in(
                context.pool,
                context.run_id,
                self.source.name,
                result,
                interrupted="stopped by a signal; verify again to finish",
            ):
                if result.method == "none":
                    result.verdict = "not_verified"
                    result.warning = None
                elif result.method == "counts":
                    await self._by_counts(stream, result)
                elif result.method == "parents":
                    await self._by_parents(stream, result)
                elif result.method == "scan":
                    await self._by_scan(stream, result)
                else:
                    await self._whole(stream, result)
        finally:
            await asyncio.shield(self._record(result))
        log.info(
            "%s.%s: verified by %s: source %s, warehouse %s, %d missing, %d extra, %d repaired,"
            " %d requests",
            self.source.name,
            stream.name,
            result.method,
            result.source_count,
            result.warehouse_count,
            result.missing,
            result.extra,
            result.repaired,
            result.http.requests,
        )

    async def _record(self, result: StreamVerify) -> None:
        async with self.context.pool.acquire() as conn:
            await store.record(conn, self.context.run_id, report_of(result, self.source.name))

    # --- counting -------------------------------------------------------------------------

    async def _count(self, stream: Stream, query: Query, result: StreamVerify) -> int | None:
        counted: int | None = await self.counter(
            self.context.client, self.lister, stream, query, result.http
        )
        return counted

    async def _stored(
        self, stream: Stream, after: datetime | None, stale: store.Stale = store.NONE_STALE
    ) -> int:
        async with self.context.pool.acquire() as conn:
            return await store.stored_above(conn, self.source.schema, stream.name, after, stale)

    async def _by_counts(self, stream: Stream, result: StreamVerify) -> None:
        """Counted: the totals; where they differ, the windows that differ, read again and
        repaired; then counted once more (a record changed while the windows were counted
        can hide a difference in them), and where the counts still differ, again."""
        # What changed after the stream's last sync (or after the verify began) is the next
        # sync's: compare up to then.
        top = await self._top(stream)
        scope, first = await self._scope(stream, result, top)
        if scope is None:
            await self._whole(stream, result)
            return
        result.source_count = scope.total
        result.warehouse_count = await self._stored(stream, None)
        before: int | None = None
        for round_ in range(ROUNDS + 1):
            if round_:
                scope, first = await self._scope(stream, result, top)
                if scope is None:
                    raise MalformedResponseError(
                        f"{stream.name}: the list stopped reporting its total (X-Total)"
                    )
            if scope.uncertain:
                # Records kept being created as it was counted: the counts cannot tell.
                await self._whole(stream, result, top=top, counted=True, first=first)
                return
            source = scope.total - scope.source_top
            stored = await self._between(stream, None, scope)
            difference = source - stored
            if difference == 0:
                break
            if round_ == ROUNDS or difference == before:
                result.warning = (
                    f"the counts differ by {difference:+d} after {round_} rounds of repairs, "
                    "but the windows read again hold no more difference (the list changes as "
                    "it is counted?); verify again"
                )
                break
            if not round_ and self._cheaper_whole(max(scope.total, stored), abs(difference)):
                await self._whole(stream, result, top=top, counted=True, first=first)
                return
            # Each window is read again before anything is repaired: what the source serves
            # then decides, so a record changed while the verify runs is no difference.
            found = result.missing + result.extra
            windows = await self._windows(stream, result, scope, source, stored)
            await self._repair_windows(stream, result, windows, scope)
            if not self.repair:
                break  # nothing was repaired: a recount would find the same
            before = difference if result.missing + result.extra == found else None
        self._verdict(result)

    async def _top(self, stream: Stream) -> datetime:
        """The time counts are compared up to: the stream's watermark (what its syncs have
        read; a record created since is the next sync's, not missing), at most the verify's
        beginning, at a whole second no stored row is stamped with."""
        top = datetime.now(UTC).replace(microsecond=0) - CLOCK_SLACK
        async with self.context.pool.acquire() as conn:
            state = await pages.load_state(conn, self.source.name, stream.name)
        if state.watermark is not None:
            top = min(top, state.watermark.replace(microsecond=0))
        return (await self._cuts(stream, [top]))[0]

    async def _newest(
        self, stream: Stream, result: StreamVerify, after: datetime | None, top: datetime
    ) -> tuple[Page, list[int | str] | None]:
        """One request for the newest records changed after ``after`` (all, if None), where
        the list sorts: the page (its total), and which of them changed after ``top`` (None
        where the page cannot tell: not in order, or all of it after ``top``)."""
        page = await fetch(
            self.context.client,
            self.lister,
            stream,
            Query(updated_after=after, sorted=True, newest_first=True),
            1,
            stats=result.http,
        )
        stamps = [r.updated_at for r in page.rows]
        known = [t for t in stamps if t is not None]
        ordered = len(known) == len(stamps) and all(a >= b for a, b in itertools.pairwise(known))
        above = [r.id for r in page.rows if r.updated_at is not None and r.updated_at > top]
        if ordered and (len(above) < len(page.rows) or not page.has_next):
            return page, above
        return page, None

    async def _scope(
        self, stream: Stream, result: StreamVerify, top: datetime
    ) -> tuple[_Scope | None, Page | None]:
        """The list's total and what it holds after ``top``, taken together (None where it
        reports no total); with the list's first page where that was read for the total.

        A list that takes ``sort_by``: its newest records' page tells both at once, and which
        records changed after ``top`` (one request). Else the total from the first page, then
        the records after ``top``, counted and read where they are few (a page or two). A
        record created between the two requests is counted after ``top`` but not in the
        total, and would cancel a missing record: so where one may have been (one the
        warehouse lacks, stamped since the first, and not listed by an earlier take, which
        the total includes), both again. Where one still may have been after ``TAKES`` of
        them, no count can tell whether the total holds it (a total a record shorter hides a
        missing record, one longer an extra one): the scope says so (``uncertain``)."""
        if stream.takes("sort_by"):
            for _ in range(TAKES):
                counted, above = await self._newest(stream, result, None, top)
                if counted.total is None:
                    return None, None
                if above is not None:
                    return self._scoped(stream, top, counted.total, len(above), above), None
            # The newest page could not tell (all of it changed after ``top``): as unsorted.
        listed: set[int | str] = set()
        for _ in range(TAKES):
            first = await fetch(
                self.context.client, self.lister, stream, Query(), 1, stats=result.http
            )
            if first.total is None:
                return None, None
            total: int = first.total
            rows, source_top, complete = await self._after(stream, result, top)
            since = first.served_at - timedelta(seconds=1)
            fresh = [
                r.id
                for r in rows
                if (r.updated_at is None or r.updated_at >= since) and r.id not in listed
            ]
            listed.update(r.id for r in rows)
            uncertain = await self._lacking(stream, fresh)
            if complete and not uncertain:
                break
        moved = [r.id for r in rows]
        scope = self._scoped(stream, top, total, source_top, moved, len(uncertain))
        return scope, first

    async def _after(
        self, stream: Stream, result: StreamVerify, top: datetime
    ) -> tuple[list[Row], int, bool]:
        """The records changed after ``top`` (read where a page or two hold them), how many
        there are, and whether all were read."""
        query = Query(updated_after=top, sorted=stream.strategy == "sorted")
        page = await fetch(self.context.client, self.lister, stream, query, 1, stats=result.http)
        rows, n = list(page.rows), 1
        if page.has_next and (page.total or 0) <= STALE_PAGES * page.size:
            while n < STALE_PAGES and page.has_next:
                n += 1
                page = await fetch(
                    self.context.client, self.lister, stream, query, n, stats=result.http
                )
                rows += page.rows
        return rows, page.total or 0, not page.has_next

    async def _lacking(self, stream: Stream, keys: Sequence[int | str]) -> list[int | str]:
        """Those of ``keys`` the warehouse holds no live row of."""
        if not keys:
            return []
        async with self.context.pool.acquire() as conn:
            live = await store.live_among(
                conn, self.source.schema, stream.name, keys, text_ids=stream.key_type == "text"
            )
        return [k for k in keys if k not in live]

    def _scoped(
        self,
        stream: Stream,
        top: datetime,
        total: int,
        source_top: int,
        moved: Sequence[int | str],
        uncertain: int = 0,
    ) -> _Scope:
        """The stored rows of records the source lists after ``top`` are older versions,
        which the source no longer holds at or before it: counted on neither side (left in,
        each would look extra at its old time and could hide a missing record there)."""
        stale = store.Stale(tuple(moved), top, text_ids=stream.key_type == "text")
        return _Scope(top, total, source_top, stale, uncertain)

    async def _between(
        self,
        stream: Stream,
        after: datetime | None,
        scope: _Scope,
        stale: store.Stale | None = None,
    ) -> int:
        """Live rows changed after ``after`` (None: all) up to ``scope.top``, but the stale."""
        async with self.context.pool.acquire() as conn:
            schema, name = self.source.schema, stream.name
            return await store.stored_above(
                conn, schema, name, after, scope.stale if stale is None else stale
            ) - await store.stored_above(conn, schema, name, scope.top)

    async def _compare(
        self, stream: Stream, result: StreamVerify, scope: _Scope, after: datetime
    ) -> tuple[int, int]:
        """Each side's records changed after ``after`` up to ``scope.top``. Where the list
        sorts, both as at one moment: the source's from its newest records' page (what changed
        after ``top`` by then is left out on both sides), so a record changed or created while
        the verify counts is no difference anywhere. Else the source's count, less what it
        held after ``top`` when the round began."""
        if stream.takes("sort_by"):
            page, above = await self._newest(stream, result, after, scope.top)
            if page.total is not None and above is not None:
                stale = store.Stale(tuple(above), scope.top, text_ids=stream.key_type == "text")
                return page.total - len(above), await self._between(stream, after, scope, stale)
            counted = page.total or 0
        else:
            counted = await self._count(stream, Query(updated_after=after), result) or 0
        return counted - scope.source_top, await self._between(stream, after, scope)

    def _cheaper_whole(self, rows: int, difference: int) -> bool:
        """Whether reading the whole list costs less than finding ``difference`` records by
        counts: a cut each step of the ladder, then about log2(pages) cuts and two pages read
        per record found."""
        pages_ = max(1, math.ceil(rows / self.lister.page_size))
        if pages_ <= SMALL_PAGES:
            return True
        ladder = max(1, math.ceil(math.log2(max(rows, 1) / completeness.FEW)))
        return ladder + difference * (math.log2(pages_) + 2) >= pages_

    async def _windows(
        self,
        stream: Stream,
        result: StreamVerify,
        scope: _Scope,
        source: int,
        stored: int,
    ) -> list[completeness.Window]:
        """The narrow windows where the counts differ (``source`` and ``stored``: each side's
        records up to ``scope.top``): the ladder, then bisection. Counts are of records
        changed after each cut up to ``scope.top``."""
        top, schema = scope.top, self.source.schema
        # Cut points from the warehouse's own rows: a window of about FEW rows, then two,
        # four, ... times that, back to the first (each cut one request).
        offsets = []
        k = completeness.FEW
        while k < stored:
            offsets.append(k)
            k *= 2
        async with self.context.pool.acquire() as conn:
            times = await store.newest_times(conn, schema, stream.name, top, offsets, scope.stale)
        points: list[datetime | None] = [top]
        source_above, stored_above = [0], [0]
        difference = source - stored
        for point in await self._cuts(stream, times):
            shutdown.check()
            source_n, stored_n = await self._compare(stream, result, scope, point)
            points.append(point)
            source_above.append(source_n)
            stored_above.append(stored_n)
            # What lies further back nets to nothing: counts cannot see a difference there.
            if source_n - stored_n == difference:
                break
        else:
            points.append(None)
            source_above.append(source)
            stored_above.append(stored)
        todo = completeness.differing(points, source_above, stored_above)
        found: list[completeness.Window] = []
        while todo:
            shutdown.check()
            window = todo.pop()
            middle = None
            if not window.few:
                async with self.context.pool.acquire() as conn:
                    at = await store.middle_time(
                        conn, schema, stream.name, window.lower, window.upper, scope.stale
                    )
                if at is None and window.lower is not None:
                    at = window.middle()
                cut = await self._cuts(stream, [at] if at else [])
                middle = next(
                    (
                        c
                        for c in cut
                        if (window.lower is None or window.lower < c) and c < window.upper
                    ),
                    None,
                )
            if middle is None:
                found.append(window)
                continue
            source_n, stored_n = await self._compare(stream, result, scope, middle)
            todo += completeness.split(window, source_n, stored_n, middle=middle)
        return sorted(found, key=lambda w: w.upper)

    async def _cuts(self, stream: Stream, times: Sequence[datetime]) -> list[datetime]:
        """Cut points at whole seconds (``updated_after`` is sent so) where no stored row is
        stamped exactly (a server's >= or > would count it on one side only), descending."""
        cuts: list[datetime] = []
        async with self.context.pool.acquire() as conn:
            for at in times:
                point = at.replace(microsecond=0)
                while await store.stamped_at(conn, self.source.schema, stream.name, point):
                    point -= timedelta(seconds=1)
                if not cuts or point < cuts[-1]:
                    cuts.append(point)
        return cuts

    # --- reading again -------------------------------------------------------------------

    async def _repair_windows(
        self,
        stream: Stream,
        result: StreamVerify,
        windows: list[completeness.Window],
        scope: _Scope,
    ) -> None:
        """Read the differing windows again (a sorted list each window, an unsorted one
        everything after the oldest), store what was missing, ask about what was not served."""
        top = scope.top
        ranges: list[tuple[datetime | None, datetime | None]]
        if stream.strategy == "sorted":
            ranges = await self._merged(stream, windows)
        else:
            lowers = [w.lower for w in windows]
            ranges = [(None if None in lowers else min(w for w in lowers if w), None)]
        # Unlisted rows of every range asked about at once where the list takes ids.
        unlisted: list[int | str] = []
        complete = Reading(complete=True)
        for lower, upper in ranges:
            served, reading = await self._read(stream, result, lower=lower, upper=upper, top=top)
            async with self.context.pool.acquire() as conn:
                held = await store.live_in(
                    conn, self.source.schema, stream.name, lower, upper or top, scope.stale
                )
            candidates = [k for k in held if k not in served]
            if stream.takes("ids"):
                unlisted += candidates
            else:
                await self._extra(stream, result, candidates, reading)
        await self._extra(stream, result, unlisted, complete)

    async def _merged(
        self, stream: Stream, windows: list[completeness.Window]
    ) -> list[tuple[datetime | None, datetime | None]]:
        """The windows as ranges to read, neighbours joined where less than a page of rows
        lies between them (one read through costs less than two reads, each ending with a
        page beyond its window)."""
        ranges: list[tuple[datetime | None, datetime | None]] = []
        for w in sorted(windows, key=lambda w: w.upper):
            if ranges:
                lower, upper = ranges[-1]
                assert upper is not None
                between = 0
                if w.lower is not None and w.lower > upper:
                    async with self.context.pool.acquire() as conn:
                        between = await store.stored_above(
                            conn, self.source.schema, stream.name, upper
                        ) - await store.stored_above(conn, self.source.schema, stream.name, w.lower)
                if w.lower is None or w.lower <= upper or between < self.lister.page_size:
                    ranges[-1] = (lower, w.upper)
                    continue
            ranges.append((w.lower, w.upper))
        return ranges

    async def _read(
        self,
        stream: Stream,
        result: StreamVerify,
        *,
        lower: datetime | None,
        upper: datetime | None,
        top: datetime | None,
        parent: str | None = None,
        first: Page | None = None,
    ) -> tuple[set[int | str], Reading]:
        """Read a range; store (or, not repairing, count) what the warehouse lacked. The ids
        served, and how the read ended."""
        served: set[int | str] = set()
        reading = Reading()
        async for page in read_range(
            self.context.client,
            self.lister,
            stream,
            reading,
            lower=lower,
            upper=upper,
            parent=parent,
            stats=result.http,
            first=first,
        ):
            shutdown.check()
            served.update(page.keys)
            rows = [
                r for r in page.rows if top is None or r.updated_at is None or r.updated_at <= top
            ]
            if upper is not None:
                rows = [r for r in rows if r.updated_at is None or r.updated_at <= upper]
            await self._store(stream, result, rows, parent)
        return served, reading

    async def _store(
        self, stream: Stream, result: StreamVerify, rows: list[Row], parent: str | None
    ) -> None:
        """The rows of a page the warehouse does not hold live: missing; stored if repairing."""
        if not rows:
            return
        text_ids = stream.key_type == "text"
        async with self.context.pool.acquire() as conn, conn.transaction():
            live = await store.live_among(
                conn, self.source.schema, stream.name, [r.id for r in rows], text_ids=text_ids
            )
            lacking = [r for r in rows if r.id not in live]
            result.missing += len(lacking)
            if not lacking or not self.repair:
                return
            await leases.check(conn)
            await pages.upsert_rows(
                conn,
                self.source.schema,
                stream.name,
                lacking,
                stream.volatile,
                requested_at=datetime.now(UTC),
                parent=parent,
                text_ids=text_ids,
            )
            await runs.add_stream_counts(
                conn, self.context.run_id, stream.name, upserted=len(lacking)
            )
            result.repaired += len(lacking)

    async def _extra(
        self,
        stream: Stream,
        result: StreamVerify,
        candidates: list[int | str],
        reading: Reading,
        *,
        parent: str | None = None,
        whole: bool = False,
    ) -> None:
        """Rows the read did not serve: gone, where the list says so by id (or, without an
        ids filter or after a read of the ``whole`` list, where the read was complete and
        nothing moved under it: a record the whole list does not hold is gone)."""
        if not candidates:
            return
        gone: list[int | str]
        if whole and reading.complete and reading.trusted:
            gone = candidates
        elif stream.takes("ids"):
            present: set[int | str] = set()
            for i in range(0, len(candidates), CHUNK):
                chunk = candidates[i : i + CHUNK]
                page = await fetch(
                    self.context.client,
                    self.lister,
                    stream,
                    Query(ids=chunk, size=len(chunk), parent=parent),
                    1,
                    stats=result.http,
                )
                present.update(page.keys)
            gone = [k for k in candidates if k not in present]
        elif reading.complete and reading.trusted:
            gone = candidates
        else:
            result.warning = (
                f"{len(candidates)} rows were not listed again while the list changed; "
                "verify again to tell whether they are gone"
            )
            return
        result.extra += len(gone)
        if not gone or not self.repair:
            return
        async with self.context.pool.acquire() as conn, conn.transaction():
            total = await store.stored_above(conn, self.source.schema, stream.name, None)
            warning = guard_warning(
                stream.name,
                len(gone),
                total,
                self.options.deletion_guard,
                missing_from="the source",
                advice="If they really were deleted, raise deletion_guard and verify again",
            )
            if warning is not None:
                result.warning = warning
                return
            await leases.check(conn)
            marked = await marks.mark_deleted(
                conn,
                self.source.schema,
                stream.name,
                gone,
                datetime.now(UTC),
                text_ids=stream.key_type == "text",
            )
            await runs.add_stream_counts(conn, self.context.run_id, stream.name, deleted=marked)
        result.repaired += marked

    # --- whole lists and per-parent lists ----------------------------------------------------

    async def _whole(
        self,
        stream: Stream,
        result: StreamVerify,
        *,
        top: datetime | None = None,
        counted: bool = False,
        first: Page | None = None,
    ) -> None:
        """A list compared whole: its total first where it reports one (``counted``: known
        already to differ, up to ``top``), then (if it differs, or cannot be counted) every
        page of it, both ways (up to ``top``, if given: what changed after is the next
        sync's)."""
        if not counted:
            stored = await self._stored(stream, None)
            result.warehouse_count = stored
            if stream.paged_headers and stream.parent is None:
                total = await self._count(stream, Query(), result)
                if total is not None:
                    result.source_count = total
                    if total == stored:
                        return
        served, reading = await self._read(
            stream, result, lower=None, upper=None, top=top, first=first
        )
        if not reading.missing:
            if not counted:
                result.source_count = len(served)
            async with self.context.pool.acquire() as conn:
                held = await store.live_in(conn, self.source.schema, stream.name, None, top)
            await self._extra(
                stream, result, [k for k in held if k not in served], reading, whole=True
            )
        self._verdict(result)

    async def _by_parents(self, stream: Stream, result: StreamVerify) -> None:
        """A per-parent list: counted over all parents, then the differing parents read."""
        assert stream.parent is not None
        schema = self.source.schema
        async with self.context.pool.acquire() as conn:
            per_parent = await store.live_per_parent(conn, schema, stream.name)
            parents = [str(p) for p in await marks.live_keys(conn, schema, stream.parent.stream)]
            embedded = (
                await store.embedded_counts(
                    conn, schema, stream.parent.stream, stream.parent.embedded
                )
                if stream.parent.embedded
                else None
            )
        stored = sum(per_parent.get(p, 0) for p in parents)
        result.warehouse_count = stored
        suspects: list[str]
        if stream.parent.twin is not None:
            total = await self._count(self.catalog[stream.parent.twin], Query(), result)
            result.source_count = total
            if total is not None and total == stored:
                return
            suspects = parents
        else:
            assert embedded is not None
            result.source_count = sum(embedded.get(p, 0) for p in parents)
            suspects = [p for p in parents if embedded.get(p, 0) != per_parent.get(p, 0)]
        for parent in suspects:
            shutdown.check()
            counted = await self._count(stream, Query(parent=parent), result)
            if counted is not None and counted == per_parent.get(parent, 0):
                continue
            served, reading = await self._read(
                stream, result, lower=None, upper=None, top=None, parent=parent
            )
            if reading.missing:  # the parent is gone, and so are its children
                if self.repair:
                    async with self.context.pool.acquire() as conn, conn.transaction():
                        await leases.check(conn)
                        at = datetime.now(UTC)
                        await marks.mark_deleted(conn, schema, stream.parent.stream, [parent], at)
                        result.extra += per_parent.get(parent, 0)
                        result.repaired += await marks.mark_children(
                            conn, schema, stream.name, stream.parent.stream
                        )
                else:
                    result.extra += per_parent.get(parent, 0)
                continue
            async with self.context.pool.acquire() as conn:
                held = await marks.live_keys(conn, schema, stream.name, parent=parent)
            await self._extra(
                stream, result, [k for k in held if k not in served], reading, parent=parent
            )
        self._verdict(result)

    async def _by_scan(self, stream: Stream, result: StreamVerify) -> None:
        """A list its type compares its own way: the total (each parent's, summed) against
        the live rows; where they differ, or the list gives none, its full comparison."""
        schema = self.source.schema
        parents: list[str | None] = [None]
        if stream.parent is not None:
            async with self.context.pool.acquire() as conn:
                parents = [
                    str(p) for p in await marks.live_keys(conn, schema, stream.parent.stream)
                ]
        result.warehouse_count = await self._stored(stream, None)
        if stream.parent is not None and result.warehouse_count <= len(parents) * (
            self.lister.page_size
        ):
            # About a page each parent: reading each parent's list costs what counting it
            # would, and tells more.
            await self.rescan(self.context, stream.name, result, self.repair)
            self._verdict(result)
            return
        total: int | None = 0
        for parent in parents:
            shutdown.check()
            counted = await self._count(stream, Query(parent=parent), result)
            if counted is None or total is None:
                total = None
                break
            total += counted
        result.source_count = total
        if total is not None and total == result.warehouse_count:
            return
        await self.rescan(self.context, stream.name, result, self.repair)
        if total is not None:
            result.source_count = total  # what the list reports, as where it agreed
        self._verdict(result)

    def _verdict(self, result: StreamVerify) -> None:
        if result.missing or result.extra:
            result.verdict = "repaired" if result.unrepaired == 0 else "differs"
