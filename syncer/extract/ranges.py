"""Reading a range of a list again, page by page, without touching the stream's position.

``syncer verify`` re-reads the windows of ``updated_at`` where the warehouse and the source
differ: a sorted list from the window's lower bound until its records pass the window's upper
bound (each page's order verified, as the walk does), an unsorted one everything after the
lower bound by offset pages, watched; a full list, every page. What it reads is stored by the
caller (idempotent upserts), never the sync's watermark or walk: a verify killed in the
middle leaves the sync exactly as it was, and is simply run again.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

from syncer.catalog import Stream
from syncer.extract.base import Lister, Page, Query, fetch
from syncer.extract.walk import Walk
from syncer.extract.walker import step
from syncer.http.client import ApiClient, RequestStats

__all__ = ["Reading", "read_range"]


@dataclass
class Reading:
    """How a range read ended: whether what it served can be taken as all of the range."""

    complete: bool = False  # it read to the range's end
    trusted: bool = True  # nothing moved under offset pages while it read
    missing: bool = False  # the list answered 404 (its parent is gone)


async def read_range(
    client: ApiClient,
    lister: Lister,
    stream: Stream,
    reading: Reading,
    *,
    lower: datetime | None = None,
    upper: datetime | None = None,
    parent: str | None = None,
    stats: RequestStats,
    first: Page | None = None,
) -> AsyncIterator[Page]:
    """The pages of ``stream`` (one parent's list) with ``updated_at`` after ``lower`` (None:
    all), in a sorted list up to ``upper``; ``reading`` says at the end how it ended.
    ``first``: the read's first page, fetched already (its query's page 1)."""
    incremental = lower is not None and stream.takes("updated_after")
    sorted_ = stream.strategy == "sorted" and incremental
    walk = Walk(lower_bound=lower) if sorted_ else Walk.unsorted(lower if incremental else None)
    paged = stream.takes("page") or stream.takes("limit") or stream.takes("cursor")
    previous: list[int | str] | None = None
    while True:
        query = Query(
            updated_after=walk.lower_bound if incremental else None,
            sorted=sorted_ and walk.keyset,
            parent=parent,
        )
        if first is not None:
            page, first = first, None
        else:
            page = await fetch(
                client,
                lister,
                stream,
                query,
                walk.page if paged else None,
                stats=stats,
                cursor=walk.cursor,
            )
        if page.missing:
            reading.missing = True
            return
        if not paged or (page.next_link is None and walk.page > 1 and page.keys == previous):
            if paged:  # a server ignoring `page` served the same page again: the end
                reading.complete = True
                return
            yield page
            reading.complete = True
            return
        previous = page.keys
        before = walk
        walk = await step(client, lister, stream, walk, page, parent=parent, stats=stats)
        yield page
        stamps = [r.updated_at for r in page.rows if r.updated_at is not None]
        if walk.done:
            reading.complete = True
            reading.trusted = not (walk.disturbed or (walk.distrust is not None and not sorted_))
            return
        past = sorted_ and walk.keyset and before.keyset
        # Sorted: once a page passed ``upper``, what follows it lies beyond the range too.
        if upper is not None and past and stamps and max(stamps) > upper:
            reading.complete = True
            return
