"""MOCO (mocoapp.com REST API v1): how a catalog stream's pages are asked for and read.

Pagination follows MOCO's contract (https://docs.mocoapp.com/api/docs/v1): ``page`` (1-based)
and ``per_page``, the ``X-Page``/``X-Per-Page``/``X-Total`` headers, and a ``Link`` header
whose ``rel="next"`` is absent on the last page. A list is sent only the parameters MOCO
documents for it (the catalog's ``query``): no ``sort_by`` where the list does not take it, no
``page`` for an unpaged list (a server asked for page 2 of it serves the same list again), no
``per_page`` where it is not documented (the server's page size, 100, then holds). Where the
answer carries no paging headers at all, a short page ends the list. Archived and deactivated
records are asked for too (the catalog's fixed ``include_archived``): archived is not deleted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from syncer.catalog import Stream
from syncer.errors import MalformedResponseError
from syncer.extract.base import Options, Page, Query
from syncer.extract.records import parse_http_date, split_records
from syncer.http.client import Credential, Response
from syncer.http.links import parse_link_header
from syncer.sources.moco.settings import MocoSourceSettings

__all__ = ["DEFAULT_PAGE_SIZE", "SORT", "MocoLister", "credential", "format_updated_after"]

SORT = "updated_at asc"
SORT_NEWEST_FIRST = "updated_at desc"
DEFAULT_PAGE_SIZE = 100  # MOCO's page size where a list takes no per_page
PAGING_HEADERS = ("Link", "X-Total", "X-Page", "X-Per-Page")


def credential(api_key: str, key_env: str) -> Credential:
    return Credential("MOCO", key_env, {"Authorization": f"Token token={api_key}"})


def format_updated_after(value: datetime) -> str:
    """MOCO's ``updated_after`` format: ISO 8601 UTC with ``Z``, whole seconds rounded down."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def has_next(link_header: str | None) -> bool:
    """Whether another page follows: MOCO's ``Link`` header has ``rel="next"``."""
    return "next" in parse_link_header(link_header)


def int_header(value: str | None) -> int | None:
    """A header's whole number (X-Total); None if absent or not a number."""
    return int(value) if value is not None and value.strip().isdigit() else None


@dataclass(frozen=True)
class MocoLister:
    """MOCO's paging for the streams of one account (``syncer.extract.base.Lister``)."""

    base_url: str
    per_page: int = DEFAULT_PAGE_SIZE
    # Years a list taking `years` is asked for (the catalog's "{years}": internal hourly
    # rates), oldest first.
    years: tuple[int, ...] = field(default_factory=lambda: (datetime.now(UTC).year,))

    @property
    def page_size(self) -> int:
        return self.per_page

    @property
    def stable(self) -> bool:
        return False  # offset pages: a change shifts what later pages hold

    def url(self, stream: Stream, *, parent: str | None = None, record: str | None = None) -> str:
        path = stream.path
        if stream.parent is not None:
            if parent is None:
                raise ValueError(f"{stream.name} is listed per {stream.parent.stream} record")
            path = path.replace("{" + stream.parent.param + "}", parent)
        if record is not None:
            path = path.replace("{id}", record)
        return f"{self.base_url}{path}"

    def size(self, stream: Stream, query: Query) -> int:
        """Records a page of ``query`` holds: asked for where the list takes ``per_page``."""
        if not stream.takes("per_page"):
            return DEFAULT_PAGE_SIZE
        size = query.size or self.per_page
        return min(size, stream.max_per_page) if stream.max_per_page else size

    def params(
        self, stream: Stream, query: Query, page: int | None, cursor: str | None = None
    ) -> dict[str, str]:
        params = {k: self._fixed(v) for k, v in stream.params.items()}
        if page is not None and stream.takes("page"):
            params["page"] = str(page)
        if stream.takes("per_page") and (page is not None or query.size is not None):
            params["per_page"] = str(self.size(stream, query))
        if query.updated_after is not None and stream.takes("updated_after"):
            params["updated_after"] = format_updated_after(query.updated_after)
        if query.sorted and stream.takes("sort_by"):
            params["sort_by"] = SORT_NEWEST_FIRST if query.newest_first else SORT
        if query.ids is not None and stream.takes("ids"):
            params["ids"] = ",".join(str(i) for i in query.ids)
        if query.period is not None and stream.period is not None:
            first, last = query.period
            if stream.period.params == ("year",):
                params["year"] = str(first.year)
            else:
                params["from"], params["to"] = first.isoformat(), last.isoformat()
        return params

    def _fixed(self, value: str) -> str:
        return value.replace("{years}", ",".join(str(y) for y in self.years))

    def read(self, stream: Stream, response: Response, query: Query) -> Page:
        items = response.json()
        if not isinstance(items, list):
            raise MalformedResponseError(
                f"{response.url} answered with a JSON {type(items).__name__}, not the list of "
                "records MOCO's contract promises; check base_url"
            )
        rows, rejected = split_records(items, stream)
        headers = response.headers
        paged = any(h in headers for h in PAGING_HEADERS)
        return Page(
            rows,
            rejected,
            len(items),
            int_header(headers.get("X-Total")),
            has_next(headers.get("Link")) if paged else None,
            parse_http_date(headers.get("Date")) or datetime.now(UTC),
            int_header(headers.get("X-Per-Page")) or self.size(stream, query),
            items=items,
        )

    def body(self, stream: Stream, response: Response) -> Any:
        body = response.json()
        if not isinstance(body, dict):
            raise MalformedResponseError(
                f"{response.url} answered with a JSON {type(body).__name__}, not the object "
                "MOCO's contract promises; check base_url"
            )
        return body


def years_back(months: int, today: date | None = None) -> tuple[int, ...]:
    """The calendar years the last ``months`` months (this one included) fall in, oldest first."""
    today = today or datetime.now(UTC).date()
    first = (today.year * 12 + today.month - 1 - (max(months, 1) - 1)) // 12
    return tuple(range(first, today.year + 1))


def lister(source: MocoSourceSettings) -> MocoLister:
    """How ``source``'s lists are paged."""
    return MocoLister(source.base_url, source.per_page, years_back(source.report_months))


def options(source: MocoSourceSettings) -> Options:
    """What the strategies follow of ``source``'s settings."""
    return Options(
        overlap_s=source.overlap_s,
        page_concurrency=source.page_concurrency,
        deletion_guard=source.deletion_guard,
        report_months=source.report_months,
        report_open_months=source.report_open_months,
        details_budget=source.details_budget,
        details_max_age_s=source.details_max_age_s,
    )
