"""MOCO (mocoapp.com REST API v1): the streams, declared, and how a page is requested.

Pagination follows MOCO's contract: ``page`` (1-based), ``X-Page``/``X-Per-Page``/``X-Total``
headers, and a ``Link`` header whose ``rel="next"`` is absent on the last page. Archived and
deactivated records are requested too (``include_archived``), so they are not taken for deletions.
One page is fetched and read by :func:`fetch_page`, for the sync, the sweep and the backfill.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from syncer.errors import MalformedResponseError
from syncer.http.client import ApiClient, Credential, RequestStats
from syncer.http.links import parse_link_header
from syncer.pacing import Slot
from syncer.sources.base import Rejected, Row, StreamSpec, parse_http_date, split_records
from syncer.sources.moco.walk import Walk

ARCHIVED = {"include_archived": "true"}

STREAMS: dict[str, StreamSpec] = {
    spec.name: spec
    for spec in (
        StreamSpec("activities", "/activities"),
        StreamSpec("projects", "/projects", ARCHIVED),
        StreamSpec("companies", "/companies", ARCHIVED),
        StreamSpec("contacts", "/contacts/people"),
        StreamSpec("users", "/users", ARCHIVED),
        StreamSpec(
            "invoices", "/invoices", {"include_disregarded": "true"}, volatile=("file_url",)
        ),
        StreamSpec("offers", "/offers"),
        StreamSpec("deals", "/deals"),
    )
}

SORT = "updated_at asc"


def credential(api_key: str, key_env: str) -> Credential:
    return Credential("MOCO", key_env, {"Authorization": f"Token token={api_key}"})


def format_updated_after(value: datetime) -> str:
    """MOCO's ``updated_after`` format: ISO 8601 UTC with ``Z``, whole seconds rounded down."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def page_params(
    spec: StreamSpec, *, page: int, per_page: int, updated_after: datetime | None
) -> dict[str, str]:
    params = {**spec.params, "sort_by": SORT, "page": str(page), "per_page": str(per_page)}
    if updated_after is not None:
        params["updated_after"] = format_updated_after(updated_after)
    return params


def has_next(link_header: str | None) -> bool:
    """Whether another page follows: MOCO's ``Link`` header has ``rel="next"``."""
    return "next" in parse_link_header(link_header)


@dataclass(frozen=True)
class Page:
    """One page of a stream, as served and read."""

    rows: list[Row]
    rejected: list[Rejected]  # records that cannot be stored, with the reason why
    count: int  # records served (rows and rejected)
    total: int | None  # X-Total: records the query matches, if the header says
    next_link: bool  # the Link header has rel="next"
    served_at: datetime  # the Date header (when absent or unreadable: when it was read)

    @property
    def has_next(self) -> bool:
        """Whether another page follows: an empty page ends the query, whatever Link says."""
        return self.count > 0 and self.next_link

    def advance(
        self, walk: Walk, *, offset: int | None = None, recheck_total: int | None = None
    ) -> Walk:
        """``walk`` once this page, its next one, is stored (``Walk.after_page``)."""
        return walk.after_page(
            served_at=self.served_at,
            total=self.total,
            updated_ats=[r.updated_at for r in self.rows],
            has_next=self.has_next,
            count=self.count,
            offset=offset,
            recheck_total=recheck_total,
        )


async def fetch_page(
    client: ApiClient,
    url: str,
    params: Mapping[str, str],
    spec: StreamSpec,
    *,
    stats: RequestStats,
    reserved: Slot | None = None,
) -> Page:
    """GET one page of ``spec`` at ``url`` and read it: its records, X-Total, Link and Date.

    :class:`MalformedResponseError` if the answer is not a JSON list of records.
    """
    response = await client.get(url, params, stats=stats, reserved=reserved)
    items = response.json()
    if not isinstance(items, list):
        raise MalformedResponseError(
            f"{url} answered with a JSON {type(items).__name__}, not the list of records "
            "MOCO's contract promises; check base_url"
        )
    rows, rejected = split_records(items, spec)
    return Page(
        rows,
        rejected,
        len(items),
        int_header(response.headers.get("X-Total")),
        has_next(response.headers.get("Link")),
        parse_http_date(response.headers.get("Date")) or datetime.now(UTC),
    )


async def walk_on(
    client: ApiClient, url: str, spec: StreamSpec, walk: Walk, page: Page, *, stats: RequestStats
) -> Walk:
    """``walk`` once ``page``, its next one, is stored; where the walk asks for it (fewer
    records than a sorted order leaves: deletions?), after one more request, for the X-Total of
    the query from ``walk.recheck_lower``."""
    recheck = None
    if walk.needs_recheck(page.total):
        params = page_params(spec, page=1, per_page=1, updated_after=walk.recheck_lower)
        recheck = (await fetch_page(client, url, params, spec, stats=stats)).total
    return page.advance(walk, recheck_total=recheck)


def int_header(value: str | None) -> int | None:
    """A header's whole number (X-Total); None if absent or not a number."""
    return int(value) if value is not None and value.strip().isdigit() else None
