"""Full listings: every page of a list, each run, and what it no longer lists is deleted.

A list without ``updated_after`` (MOCO's ``/todos``, ``/invoices/locked``) can only be read in
full. Each page is stored with the listing's position and the ids it served
(``syncer.seen_ids``) in one transaction, so a listing killed in the middle resumes at its
next page. At its end, the live rows it did not serve are deletions, marked behind the
deletion guard (more than ``deletion_guard`` of the table missing at once marks none, and says
why: a key that lost access looks the same).

Offset pages over a set that changes can skip a record, which would then look deleted. So a
listing is trusted only if nothing changed while it ran: every page reports the same
``X-Total`` (where the answer has one), no record served is stamped after the listing began,
and a listing of one page is atomic anyway. A listing that saw a change is read again at once
(at most :data:`MAX_REREADS` times); if it keeps changing, its rows are stored but no
deletion is marked in this run, and the run says so.

The same reading serves ``syncer sweep`` for lists with ``updated_after`` but no ``ids``
filter (per-project tasks, contracts, expenses): their ids listed in full, per parent.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from syncer import shutdown
from syncer.catalog import Stream
from syncer.deletions import guard_warning
from syncer.extract.base import Lister, Options, Page, Query, fetch
from syncer.extract.walker import log_ids
from syncer.results import StreamResult, SyncContext
from syncer.store import leases, marks, pages, runs

log = logging.getLogger(__name__)

MAX_REREADS = 3  # a listing that changed while read is read again this often in one run


@dataclass(frozen=True)
class Listing:
    """Where a listing stands; saved with every page (``syncer.streams.walk``)."""

    page: int = 1  # the next page
    pages: int = 0  # pages stored by this listing
    started_at: datetime | None = None  # the server's clock at its first page
    total: int | None = None  # X-Total of its first page
    stable: bool = True  # nothing changed while it was read, as far as it can tell
    rereads: int = 0
    last_keys: tuple[str, ...] = ()  # the previous page's ids (a server ignoring `page`)
    # A list of several pages without a total cannot show a change while it is read: it is
    # trusted once two passes in a row served the same ids (the digest of the last pass's).
    confirm: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "listing": True,
            "page": self.page,
            "pages": self.pages,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "total": self.total,
            "stable": self.stable,
            "rereads": self.rereads,
            "last_keys": list(self.last_keys),
            "confirm": self.confirm,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Listing | None:
        if not data.get("listing"):
            return None  # another strategy's walk (the stream's strategy changed)
        started = data.get("started_at")
        return cls(
            page=int(data["page"]),
            pages=int(data.get("pages", 0)),
            started_at=datetime.fromisoformat(started) if started else None,
            total=data.get("total"),
            stable=bool(data.get("stable", True)),
            rereads=int(data.get("rereads", 0)),
            last_keys=tuple(data.get("last_keys", ())),
            confirm=data.get("confirm"),
        )

    def after(self, page: Page, *, stamped: bool) -> tuple[Listing, bool]:
        """The listing once ``page`` is stored, and whether the list ends with it."""
        started = self.started_at if self.page > 1 and self.started_at else page.served_at
        total = page.total if self.page == 1 else self.total
        keys = tuple(str(k) for k in page.keys)
        repeated = (
            page.next_link is None and self.page > 1 and bool(keys) and keys == self.last_keys
        )
        done = repeated or not page.has_next
        # The whole list in one answer: nothing could shift between its pages, whatever its
        # records' stamps say (a change in the second it began looks like one while it ran).
        whole = done and self.page == 1
        stable = whole or (
            self.stable
            and not (
                (self.page > 1 and page.total != total)
                or (stamped and any(r.updated_at and r.updated_at >= started for r in page.rows))
            )
        )
        moved = Listing(
            page=self.page + 1,
            pages=self.pages + 1,
            started_at=started,
            total=total,
            stable=stable,
            rereads=self.rereads,
            last_keys=keys,
            confirm=self.confirm,
        )
        return moved, done

    @property
    def blind(self) -> bool:
        """Several pages without a total: a change while it was read would not show."""
        return self.pages > 1 and self.total is None


async def listing_stream(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    options: Options,
    result: StreamResult,
) -> None:
    """The listing strategy for a stream of its own: inside the stream run's row."""
    from syncer.extract.running import stream_run

    source = context.source
    async with context.pool.acquire() as conn:
        state = await pages.load_state(conn, source.name, stream.name)
    listing = Listing.from_json(state.walk) if state.walk is not None else None
    if listing is not None and listing.pages:
        result.resumed_after_pages = listing.pages
    async with stream_run(context, result):
        await read_listing(context, stream, lister, options, result, listing=listing)


@dataclass(frozen=True)
class Listed:
    """How a full listing ended."""

    found: bool  # False: the list is gone (404), its parent was deleted
    missing: tuple[int | str, ...] = ()  # live rows it did not list (marked, unless deferred)
    trusted: bool = True  # nothing changed while it was read, as far as it can tell


async def read_listing(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    options: Options,
    result: StreamResult,
    *,
    listing: Listing | None = None,
    parent: str | None = None,
    positioned: bool = True,
    mark: bool = True,
) -> Listed:
    """List ``stream`` (one parent's list, if given) in full, from ``listing`` if it resumes
    one; mark what it no longer lists deleted (behind the guard), unless ``mark`` is False:
    then the caller decides, given what is returned (a sweep weighs every parent's together).
    Not ``positioned`` (a sweep's listing): the stream's sync position is left alone, and a
    listing killed in the middle starts over."""
    source, pool = context.source, context.pool
    if listing is None:
        async with pool.acquire() as conn:
            await marks.clear_seen(conn, source.name, stream.name, parent)
        listing = Listing()
    while True:
        shutdown.check()
        requested_at = datetime.now(UTC)
        before = result.http.requests
        page = await fetch(
            context.client,
            lister,
            stream,
            Query(parent=parent),
            listing.page,
            stats=result.http,
        )
        if page.missing:
            return Listed(False)
        moved, done = listing.after(page, stamped=stream.replication_key is not None)
        if done and moved.blind and moved.stable:  # trusted once two passes agree
            async with pool.acquire() as conn:
                digest = await marks.seen_digest(conn, source.name, stream.name, parent, page.keys)
            if digest != listing.confirm:
                moved = replace(moved, stable=False, confirm=digest)
        if done and not moved.stable and moved.rereads < MAX_REREADS:
            if moved.confirm is None or moved.rereads:
                log.info(
                    "%s.%s: changed while listed; listing it again",
                    source.name,
                    stream.name,
                    extra=log_ids(context.run_id, source.name, stream.name),
                )
            listing = Listing(rereads=moved.rereads + 1, confirm=moved.confirm)
            await _store(
                context,
                stream,
                page,
                result,
                parent,
                listing,
                requested_at,
                before,
                positioned,
                restart=True,
            )
            continue
        if not done:
            await _store(
                context, stream, page, result, parent, moved, requested_at, before, positioned
            )
            listing = moved
            continue
        return await _finish(
            context,
            stream,
            page,
            moved,
            options,
            result,
            parent,
            requested_at,
            before,
            positioned,
            mark,
        )


async def _store(
    context: SyncContext[Any],
    stream: Stream,
    page: Page,
    result: StreamResult,
    parent: str | None,
    position: Listing,
    requested_at: datetime,
    before: int,
    positioned: bool,
    *,
    restart: bool = False,
) -> None:
    """One page, its ids as seen, and the listing's position, in one transaction. The last
    page of a pass that saw the list change (``restart``): the ids seen are forgotten in the
    same transaction, as the listing starts over (were they forgotten after it, a run killed
    in between would resume the new pass counting as seen what the old one served, and not
    mark what went meanwhile)."""
    source = context.source
    requests = result.http.requests - before
    async with context.pool.acquire() as conn, conn.transaction():
        upserted = await pages.commit_page(
            conn,
            pages.PageCommit(
                schema=source.schema,
                table=stream.name,
                volatile=stream.volatile,
                source=source.name,
                stream=stream.name,
                run_id=context.run_id,
                rows=page.rows,
                rejected=page.rejected,
                requests=requests,
                walk=position.to_json(),
                watermark=None,
                requested_at=requested_at,
                parent=parent,
                text_ids=stream.key_type == "text",
                seen=not restart,
                positioned=positioned and parent is None,
            ),
        )
        if restart:
            await marks.clear_seen(conn, source.name, stream.name, parent)
    _count(result, page, upserted, requests)


def _count(result: StreamResult, page: Page, upserted: int, requests: int) -> None:
    result.pages += 1
    result.committed_requests += requests
    result.records += page.count
    result.upserted += upserted
    result.rejected += len(page.rejected)


async def _finish(
    context: SyncContext[Any],
    stream: Stream,
    page: Page,
    listing: Listing,
    options: Options,
    result: StreamResult,
    parent: str | None,
    requested_at: datetime,
    before: int,
    positioned: bool,
    mark: bool,
) -> Listed:
    """The last page, the deletions the listing shows, and the stream's end, at once."""
    source = context.source
    requests = result.http.requests - before
    text_ids = stream.key_type == "text"
    missing: list[int | str] = []
    async with context.pool.acquire() as conn, conn.transaction():
        await leases.check(conn)
        upserted = await pages.store_rows(
            conn,
            context.run_id,
            source.name,
            source.schema,
            stream.name,
            page.rows,
            page.rejected,
            stream.volatile,
            requested_at=requested_at,
            parent=parent,
            text_ids=text_ids,
        )
        await marks.record_seen(conn, source.name, stream.name, parent, page.keys)
        deleted = 0
        if listing.stable:
            missing = await marks.mark_unseen(
                conn,
                source.schema,
                stream.name,
                source.name,
                stream.name,
                parent,
                at=datetime.now(UTC),
                text_ids=text_ids,
                dry_run=True,
            )
            if mark:
                deleted = await guarded_marks(
                    conn, context, stream, missing, options, result, text_ids=text_ids
                )
        else:
            result.warning = (
                "the list kept changing while it was listed; its records are stored, deletions "
                "are looked for again next run"
            )
        await marks.clear_seen(conn, source.name, stream.name, parent)
        await runs.add_stream_counts(
            conn,
            context.run_id,
            stream.name,
            pages=1,
            requests=requests,
            records=page.count,
            upserted=upserted,
            rejected=len(page.rejected),
            deleted=deleted,
        )
        if positioned and parent is None:
            await pages.save_position(
                conn,
                source.name,
                stream.name,
                watermark=listing.started_at,
                walk=None,
                success=True,
            )
    _count(result, page, upserted, requests)
    result.deleted += deleted
    result.watermark = listing.started_at
    result.left = 0
    return Listed(True, tuple(missing), listing.stable)


async def guarded_marks(
    conn: Any,
    context: SyncContext[Any],
    stream: Stream,
    missing: list[int | str],
    options: Options,
    result: StreamResult | Any,
    *,
    text_ids: bool,
) -> int:
    """Mark ``missing`` deleted unless more than ``deletion_guard`` of the whole stream's live
    rows (every parent's, for a per-parent list) would go at once; how many were marked."""
    source = context.source
    live = len(await marks.live_keys(conn, source.schema, stream.name))
    warning = guard_warning(
        stream.name,
        len(missing),
        live,
        options.deletion_guard,
        missing_from="the listing",
        advice="If they really were deleted, raise deletion_guard for one run",
    )
    if warning is not None:
        result.warning = warning
        log.warning("%s.%s: %s", source.name, stream.name, warning)
        return 0
    return await marks.mark_deleted(
        conn, source.schema, stream.name, missing, datetime.now(UTC), text_ids=text_ids
    )
