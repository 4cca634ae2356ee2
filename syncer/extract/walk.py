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

**The order is verified, never assumed.** MOCO does not say which endpoints honour
``sort_by``, and a keyset step is only safe where they do: a server listing by id would serve a
first page that merely looks sorted, and the step past it would drop every record not yet
served that is older than the new bound. So the walk checks two things the sorted order
implies, and trusts the order only as long as both hold:

* every page is sorted by ``updated_at``, and continues where the query's previous page ended;
* each keyset step keeps what the previous query had not served yet. Say that query reported
  ``X-Total`` = T (on its latest page) and served n records so far, and the step asks
  ``updated_after`` = B. Sorted, the T - n records not served all come after the newest one
  served, so all are newer than B, and so is every served record stamped after B (``keep``):
  the new query's first page must report ``X-Total >= T - n + keep``. Changes meanwhile only
  add to that (an updated record moves past B, a new one is newer than B); only a deletion
  makes it smaller. So a total that falls short is checked once more: the previous query's
  ``X-Total`` asked again (T', holding the same deletions) less the n - keep records it served
  up to B is what sorted order leaves now, ``X-Total >= T' - (n - keep)``. Without a change and
  in sorted order the bound is met exactly, so any record a step dropped shows in the total.
  (Records created or edited in the very moment between two queries can hide a dropped one
  at that step; any later check that fails in the walk still sends it back to its start.)

When either check fails, the walk stops taking keyset steps. If it has taken any, one of them
may have dropped records, so it starts over from its first lower bound, as one watched
offset-paged query (a query that never stepped just pages on by offset). The verdict lasts for
the walk (it is saved with every page, so a resumed walk keeps it); each new walk verifies the
order again: a false alarm (say, a record committed late with an old ``updated_at``) should
not cost every later run, and catching a server that ignores ``sort_by`` again costs a run
the pages before the step that shows it (usually one), that step and a recheck.

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
    keyset: bool = True  # the order is trusted: every check has held so far
    query_started_at: datetime | None = None  # Date of the current query's first page
    query_total: int | None = None  # X-Total of the current query's first page
    max_stored: datetime | None = None
    watch_since: datetime | None = None  # first offset-paged query: when it began
    watch_lower: datetime | None = None  # ... and its lower bound
    disturbed: bool = False  # a watched query may have skipped records
    start: datetime | None = None  # the walk's first lower bound (set from lower_bound)
    stepped: bool = False  # a keyset step was taken since the walk (re)started at ``start``
    expect_total: int | None = None  # the least X-Total the next query has, if sorted
    recheck_lower: datetime | None = None  # the query stepped past (for a recheck) ...
    recheck_drop: int | None = None  # ... and how many it served that the next may lack
    query_served: int = 0  # records the current query served so far
    query_last: datetime | None = None  # updated_at of the current query's last record
    distrust: str | None = None  # why the order is not trusted
    done: bool = False  # the walk has read its last page
    # An unsorted walk (a list without sort_by, or records without updated_at): offset pages
    # from the start, and the watermark is the server's clock when the query began.
    clock: bool = False
    cursor: str | None = None  # a cursor-paged API: the next page's cursor in this query

    def __post_init__(self) -> None:
        if not self.stepped and self.start is None:
            object.__setattr__(self, "start", self.lower_bound)

    @property
    def watched(self) -> bool:
        return self.watch_since is not None

    def needs_recheck(self, total: int | None) -> bool:
        """Whether ``total``, the ``X-Total`` of the page this walk asked for next (not a
        sprint's), falls short of what sorted order leaves after the step. A deletion since
        the previous query can do that too; to tell the two apart, ask that query's
        ``X-Total`` again (``updated_after`` = :attr:`recheck_lower`, any page size) and pass
        it to :meth:`after_page` as ``recheck_total``."""
        return (
            self.page == 1
            and self.expect_total is not None
            and self.recheck_drop is not None
            and total is not None
            and total < self.expect_total
        )

    def after_page(
        self,
        *,
        served_at: datetime,
        total: int | None,
        updated_ats: list[datetime | None],
        has_next: bool,
        count: int | None = None,
        offset: int | None = None,
        recheck_total: int | None = None,
        cursor: str | None = None,
    ) -> Walk:
        """The walk once a page is stored; ``has_next`` says whether the API has more.

        ``count``: records the page served, storable or not (default: ``len(updated_ats)``).
        ``offset``: set for a page that continues the query the walk stepped past (a sprint's
        pages, see ``sprint.py``): how many records that query served before this page.
        ``recheck_total``: see :meth:`needs_recheck`. Asked right after this page, it holds the
        same deletions: the query stepped past, now, has ``recheck_total`` records, of which
        only those it had served up to the new bound may be missing from this one.
        Callers read on until :attr:`done`: a walk that finds the order broken after a step
        starts over, even after the API's last page.
        """
        stamps = [u for u in updated_ats if u is not None]
        served = len(updated_ats) if count is None else count
        continues = offset is not None
        new_query = self.page == 1 and not continues
        first_of_query = self.page == 1 or self.query_started_at is None
        started_at = served_at if first_of_query else self.query_started_at
        query_total = total if first_of_query else self.query_total
        max_stored = max([*stamps, self.max_stored] if self.max_stored else stamps, default=None)
        before = offset if offset is not None else 0 if new_query else self.query_served
        last = None if new_query else self.query_last

        expect_total = self.expect_total if new_query else None
        if expect_total is not None and recheck_total is not None and self.recheck_drop is not None:
            expect_total = min(expect_total, recheck_total - self.recheck_drop)
        distrust = self.distrust
        if self.keyset:
            distrust = check_order(
                stamps=stamps,
                previous=last,
                total=total,
                expect_total=expect_total,
                has_next=has_next,
            )

        disturbed = self.disturbed
        if self.watch_since is not None and any(u >= self.watch_since for u in stamps):
            disturbed = True  # something changed after the watched query began
        if not first_of_query and total != self.query_total:
            disturbed = disturbed or self.watched  # the set moved under offset paging

        walk = replace(
            self,
            pages=self.pages + 1,
            keyset=self.keyset and distrust is None,
            query_started_at=started_at,
            query_total=query_total,
            max_stored=max_stored,
            disturbed=disturbed,
            expect_total=None,
            recheck_lower=None,
            recheck_drop=None,
            query_served=before + served,
            query_last=stamps[-1] if stamps else last,
            distrust=distrust,
            cursor=None,
        )
        if self.keyset and not walk.keyset and self.stepped:
            # A step taken on the order's word may have dropped records: start over.
            return replace(
                walk,
                lower_bound=self.start,
                page=1,
                query_started_at=None,
                query_total=None,
                watch_since=None,
                watch_lower=None,
                disturbed=False,
                stepped=False,
                query_served=0,
                query_last=None,
            )
        if not has_next:
            return replace(walk, done=True)
        step = _floor_second(max(stamps)) - STEP_OVERLAP if walk.keyset and stamps else None
        if (
            step is not None
            and total is not None
            and (self.lower_bound is None or step > self.lower_bound)
        ):
            keep = sum(1 for u in stamps if u > step)
            return replace(
                walk,
                lower_bound=step,
                page=1,
                query_started_at=None,
                stepped=True,
                expect_total=total - walk.query_served + keep,
                # A sprint's page continues the query whose bound the previous step kept.
                recheck_lower=self.recheck_lower if continues else self.lower_bound,
                recheck_drop=walk.query_served - keep,
                query_served=0,
                query_last=None,
            )
        # Offset paging within this query: watch it from its beginning.
        if walk.watch_since is None:
            walk = replace(walk, watch_since=started_at, watch_lower=self.lower_bound)
        return replace(walk, page=self.page + 1, cursor=cursor)

    @classmethod
    def unsorted(cls, lower_bound: datetime | None) -> Walk:
        """A walk of a list that cannot be read in ``updated_at`` order: offset pages of one
        query, watched from its first page; the watermark is when that page was served."""
        return cls(lower_bound=lower_bound, keyset=False, clock=True)

    def watermark(self, previous: datetime | None) -> datetime | None:
        """The stream's watermark once the walk has served its last page: how far it read
        (the newest record stored; an unsorted walk of records without ``updated_at``: when its
        query began, by the server's clock), or, if a watched query may have skipped records,
        that query's lower bound."""
        newest = self.max_stored
        if newest is None and self.clock:  # records without updated_at: the server's clock
            newest = self.query_started_at
        reached = self.watch_lower if self.disturbed else newest
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
            "start": _iso(self.start),
            "stepped": self.stepped,
            "expect_total": self.expect_total,
            "recheck_lower": _iso(self.recheck_lower),
            "recheck_drop": self.recheck_drop,
            "query_served": self.query_served,
            "query_last": _iso(self.query_last),
            "distrust": self.distrust,
            "done": self.done,
            "clock": self.clock,
            "cursor": self.cursor,
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
            # Walks saved before the order was verified lack these: they start over there.
            start=_dt(data.get("start")),
            stepped=bool(data.get("stepped", False)),
            expect_total=data.get("expect_total"),
            recheck_lower=_dt(data.get("recheck_lower")),
            recheck_drop=data.get("recheck_drop"),
            query_served=int(data.get("query_served", 0)),
            query_last=_dt(data.get("query_last")),
            distrust=data.get("distrust"),
            done=bool(data.get("done", False)),
            clock=bool(data.get("clock", False)),
            cursor=data.get("cursor"),
        )


def check_order(
    *,
    stamps: list[datetime],
    previous: datetime | None,
    total: int | None,
    expect_total: int | None,
    has_next: bool,
) -> str | None:
    """Why a page shows that the API ignores ``sort_by``, or None if it agrees with sorted
    order. ``stamps``: the page's ``updated_at`` values in served order; ``previous``: the last
    one the same query served before; ``expect_total``: the least ``X-Total`` sorted order
    leaves this query after a keyset step (None: the page does not follow a step)."""
    if stamps != sorted(stamps):
        return "a page not sorted by updated_at"
    if previous is not None and stamps and stamps[0] < previous:
        return "a page that starts before the previous page ended"
    if expect_total is not None and (total is None or total < expect_total):
        return (
            f"X-Total {total} after a keyset step, where sorted order leaves at least "
            f"{expect_total}"
        )
    if has_next and total is None:
        return "no X-Total to check the order by"
    return None


def _floor_second(value: datetime) -> datetime:
    return value.replace(microsecond=0)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None
