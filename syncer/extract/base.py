"""What every extraction strategy works with: a query of one list, its pages, and the lister.

A :class:`Lister` is a source type's way of listing a catalog stream: the URL and the query
parameters of one page of a query (only those the vendor documents for that list), and how an
answer is read (its records, the total it reports, whether another page follows, the server's
clock). The strategies (``syncer.extract``) decide which queries to ask and in what order; the
lister knows the vendor's paging. MOCO's lister is ``syncer.sources.moco.api.MocoLister``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from typing import Any, Protocol

from syncer.catalog import Stream
from syncer.extract.records import Rejected, Row, parse_http_date
from syncer.http.client import ApiClient, RequestStats, Response
from syncer.pacing import Slot

__all__ = ["Lister", "Options", "Page", "Query", "count", "fetch"]


@dataclass(frozen=True)
class Options:
    """A source's settings that the strategies follow (its type's keys fill them)."""

    overlap_s: float = 300.0  # an incremental query starts this far behind the watermark
    page_concurrency: int = 1  # pages of one sorted query fetched at once (a sprint)
    deletion_guard: float = 0.2  # more than this share of a list gone at once: none deleted
    report_months: int = 24  # reports are pulled for this many months back ...
    report_open_months: int = 2  # ... and the last ones pulled again every run (still open)
    details_budget: int = 100  # detail reads per stream and run, at most
    # A detail read longer ago than this is read again (a project's report changes with its
    # activities, not with the project's own row); None: only when the row changes.
    details_max_age_s: float | None = 86400.0


@dataclass(frozen=True)
class Query:
    """One question to a list; each page of it is asked with the same query."""

    updated_after: datetime | None = None  # records changed after this
    sorted: bool = False  # in updated_at order (where the list takes sort_by)
    newest_first: bool = False  # ... descending (a verify's look at the newest records)
    ids: Sequence[int | str] | None = None  # only these records (where the list takes ids)
    parent: str | None = None  # a per-parent list: the parent record's id
    period: tuple[date, date] | None = None  # a report: its first and last day
    size: int | None = None  # records per page to ask for (None: the lister's page size)


@dataclass(frozen=True)
class Page:
    """One page of a query, as served and read."""

    rows: list[Row]
    rejected: list[Rejected]  # records that cannot be stored, with the reason why
    count: int  # records served (rows and rejected)
    total: int | None  # what the query matches, if the answer says (MOCO's X-Total)
    # Whether the answer links a next page (MOCO's Link rel="next"); None: the answer has no
    # paging headers at all, and only a short page tells the end.
    next_link: bool | None
    served_at: datetime  # the server's clock (Date), else when it was read
    size: int  # records a full page holds: as the answer says (X-Per-Page), else as asked
    missing: bool = False  # the list is gone (404): its parent record was deleted
    items: list[Any] = field(default_factory=list, repr=False)  # the records as parsed
    next_cursor: str | None = None  # a cursor-paged API: the next page's cursor

    @property
    def has_next(self) -> bool:
        """Whether another page follows: never after an empty page, whatever Link says."""
        if self.count == 0:
            return False
        if self.next_link is not None:
            return self.next_link
        return self.count >= self.size

    @property
    def keys(self) -> list[int | str]:
        return [r.id for r in self.rows]


class Lister(Protocol):
    """A source type's paging: requests for a catalog stream's pages, and their answers."""

    @property
    def page_size(self) -> int: ...  # records per page asked for where the list takes it

    @property
    def stable(self) -> bool: ...  # cursor paging: no record shifts between pages as data change

    def url(self, stream: Stream, *, parent: str | None = None, record: str | None = None) -> str:
        """The stream's URL (``parent`` fills a per-parent path, ``record`` a detail's)."""
        ...

    def params(
        self, stream: Stream, query: Query, page: int | None, cursor: str | None = None
    ) -> dict[str, str]:
        """The query parameters of ``page`` of ``query`` (None: the list takes no page); a
        cursor-paged API gets the previous page's ``next_cursor`` as ``cursor`` instead."""
        ...

    def read(self, stream: Stream, response: Response, query: Query) -> Page:
        """One answer read; MalformedResponseError if it is not a page of records."""
        ...

    def body(self, stream: Stream, response: Response) -> Any:
        """An object's or a detail's answer (a JSON object); MalformedResponseError if not."""
        ...


async def fetch(
    client: ApiClient,
    lister: Lister,
    stream: Stream,
    query: Query,
    page: int | None = 1,
    *,
    stats: RequestStats,
    reserved: Slot | None = None,
    cursor: str | None = None,
) -> Page:
    """GET ``page`` of ``query`` (or the page at ``cursor``) and read it. For a per-parent
    list, a 404 is a page with ``missing`` set (the parent record is gone), not an error."""
    url = lister.url(stream, parent=query.parent)
    params = lister.params(stream, query, page, cursor)
    missing_ok = query.parent is not None
    response = await client.get(url, params, stats=stats, reserved=reserved, missing_ok=missing_ok)
    if missing_ok and response.status == 404:
        served = parse_http_date(response.headers.get("Date")) or datetime.now(UTC)
        return Page([], [], 0, None, False, served, lister.page_size, missing=True)
    return lister.read(stream, response, query)


async def count(
    client: ApiClient, lister: Lister, stream: Stream, query: Query, stats: RequestStats
) -> int | None:
    """How many records ``query`` holds, by the total its first page of one reports (MOCO's
    ``X-Total``); None where the answer reports none. One request."""
    page = await fetch(client, lister, stream, replace(query, size=1), 1, stats=stats)
    if page.missing:
        return 0
    return page.total
