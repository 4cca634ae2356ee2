"""One pass over a stream's changes, and how far it lets the watermark move.

Offset paging is unstable: when a record already passed changes (it moves to the end) or is
deleted, every later record shifts back by one and the record at the next page boundary is
never served. So a walk avoids offset paging wherever it can:

* **Keyset steps.** Records come sorted by ``updated_at`` ascending. After each page the next
  request is page 1 of a new query, ``updated_after`` = the page's newest second minus one
  second. Every request is a fresh query, nothing can shift, and a record changed meanwhile
  simply turns up again later. Crash recovery is free: the walk resumes from its lower bound.
* **Offset paging** only where keyset steps cannot progress: a "pocket" of more than a page of
  records in one second, or an API that ignores ``sort_by``. Such a query is watched: if any
  change happens after it began (``X-Total`` moves, or a record turns up whose ``updated_at``
  is not older than the query's start), records may have been skipped, and at the end of the
  walk the watermark moves no further than that query's lower bound: the next run reads it
  again.

The watermark never passes a record that was not stored. This module is pure: the extractor
feeds it pages; it performs no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

# Keyset steps overlap by a second: updated_after may be inclusive or exclusive, and is sent in
# whole seconds.
STEP_OVERLAP = timedelta(seconds=1)


@dataclass(frozen=True)
class Walk:
    """Progress of one walk; persisted with every page so a killed run resumes here."""

    lower_bound: datetime | None  # updated_after of the current query; None: everything
    page: int = 1  # the next page of the current query
    pages: int = 0  # pages stored by this walk
    keyset: bool = True  # the API has served updated_at in ascending order so far
    query_started_at: datetime | None = None  # Date of the current query's first page
    query_total: int | None = None  # X-Total of the current query's first page
    max_stored: datetime | None = None
    watch_since: datetime | None = None  # first offset-paged query: when it began
    watch_lower: datetime | None = None  # ... and its lower bound
    disturbed: bool = False  # a watched query may have skipped records

    @property
    def watched(self) -> bool:
        return self.watch_since is not None

    def after_page(
        self,
        *,
        served_at: datetime,
        total: int | None,
        updated_ats: list[datetime | None],
        has_next: bool,
    ) -> Walk:
        """The walk once a page is stored; ``has_next`` says whether the API has more."""
        stamps = [u for u in updated_ats if u is not None]
        first_of_query = self.page == 1 or self.query_started_at is None
        started_at = served_at if first_of_query else self.query_started_at
        query_total = total if first_of_query else self.query_total
        max_stored = max([*stamps, self.max_stored] if self.max_stored else stamps, default=None)
        keyset = self.keyset and stamps == sorted(stamps)

        disturbed = self.disturbed
        if self.watch_since is not None and any(u >= self.watch_since for u in stamps):
            disturbed = True  # something changed after the watched query began
        if not first_of_query and total != self.query_total:
            disturbed = disturbed or self.watched  # the set moved under offset paging

        walk = replace(
            self,
            pages=self.pages + 1,
            keyset=keyset,
            query_started_at=started_at,
            query_total=query_total,
            max_stored=max_stored,
            disturbed=disturbed,
        )
        if not has_next:
            return walk
        step = _floor_second(max(stamps)) - STEP_OVERLAP if keyset and stamps else None
        if step is not None and (self.lower_bound is None or step > self.lower_bound):
            return replace(walk, lower_bound=step, page=1, query_started_at=None)
        # Offset paging within this query: watch it from its beginning.
        if walk.watch_since is None:
            walk = replace(walk, watch_since=started_at, watch_lower=self.lower_bound)
        return replace(walk, page=self.page + 1)

    def watermark(self, previous: datetime | None) -> datetime | None:
        """The stream's watermark once the walk has served its last page."""
        reached = self.watch_lower if self.disturbed else self.max_stored
        if reached is None:
            return previous
        return reached if previous is None else max(previous, reached)

    def to_json(self) -> dict[str, Any]:
        return {
            "lower_bound": _iso(self.lower_bound),
            "page": self.page,
            "pages": self.pages,
            "keyset": self.keyset,
            "query_started_at": _iso(self.query_started_at),
            "query_total": self.query_total,
            "max_stored": _iso(self.max_stored),
            "watch_since": _iso(self.watch_since),
            "watch_lower": _iso(self.watch_lower),
            "disturbed": self.disturbed,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Walk:
        return cls(
            lower_bound=_dt(data["lower_bound"]),
            page=int(data["page"]),
            pages=int(data["pages"]),
            keyset=bool(data["keyset"]),
            query_started_at=_dt(data["query_started_at"]),
            query_total=data["query_total"],
            max_stored=_dt(data["max_stored"]),
            watch_since=_dt(data["watch_since"]),
            watch_lower=_dt(data["watch_lower"]),
            disturbed=bool(data["disturbed"]),
        )


def _floor_second(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None
