"""MOCO (mocoapp.com REST API v1): the streams, declared, and how a page is requested.

Pagination follows MOCO's contract: ``page`` (1-based), ``X-Page``/``X-Per-Page``/``X-Total``
headers, and a ``Link`` header whose ``rel="next"`` is absent on the last page. Archived and
deactivated records are requested too (``include_archived``), so they are not taken for deletions.
"""

from __future__ import annotations

from datetime import UTC, datetime

from syncer.http.client import Credential
from syncer.http.links import parse_link_header
from syncer.sources.base import StreamSpec

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
