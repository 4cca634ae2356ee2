"""Reading a query's pages several at a time, and when the result may be trusted.

A walk (``walk.py``) reads a stream one page at a time, each page a fresh keyset query, so
nothing can shift under it. When the rate limit allows far more requests than one page at a
time can use (a large account on MOCO's "unlimited" plan; a sandbox without limits), a walk may
*sprint*: once page 1 of a query has said how many records it holds (``X-Total``), pages 2..k+1
of that same query are requested at once, and then one more request asks which records
changed since page 1 was served (``updated_after`` = a second before its ``Date``; whatever
is stamped before that ``Date`` changed before page 1 and moved nothing under the sprint).

Offset pages are only as good as the set under them. The sprint is trusted only if:

* nothing changed meanwhile (the check finds no record stamped at or after page 1's ``Date``):
  an update moves a record to the end and shifts every later one back, which would hide a
  record at a page boundary;
* every page reports the query's total (a deletion or creation changes it);
* every page is full but the query's last, every record has its ``updated_at``, each page is
  sorted, and each page starts strictly after the previous one ended. The last rule makes a
  page boundary safe even where the server orders equal ``updated_at`` values differently from
  one request to the next: with a strict step, both sides agree on which records come first.

Pages are trusted up to the first that breaks a rule; the rest are thrown away and read again
by the walk's next keyset step. If the data changed under the sprint, none is trusted, and the
stream does not sprint again in this run. A walk sprints only when the query has at least two
sprints' worth of pages left, so a sprint thrown away adds at most about half to the requests
the query needs anyway.

A trusted sprint is stored page by page as if each page had been a keyset step, so a crash
in the middle resumes as any walk does. Pure: no I/O here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

# The check asks from a second before page 1's Date: updated_after may be exclusive, and is
# sent in whole seconds.
CHECK_OVERLAP = timedelta(seconds=1)


@dataclass(frozen=True)
class SprintPage:
    total: int | None  # X-Total
    count: int  # records served, storable or not
    stamps: list[datetime | None]  # updated_at of the storable records, in served order
    has_next: bool


def worth_it(allowed_per_s: float, latency_s: float, remaining_pages: int, width: int) -> bool:
    """Sprint only when one page at a time would use at most half of the allowed rate, and
    the query has at least two sprints' worth of pages left."""
    return width >= 2 and remaining_pages >= 2 * width and allowed_per_s * latency_s >= 2.0


def pages_to_fetch(next_page: int, total: int, size: int, width: int) -> list[int]:
    """The page numbers of the next sprint: up to ``width``, none past the query's last page."""
    last = math.ceil(total / size)
    return list(range(next_page, min(next_page + width, last + 1)))


@dataclass(frozen=True)
class Verdict:
    trusted: int  # how many of the pages, from the first, are trusted
    reason: str | None  # why not all of them
    churn: bool = False  # the data changed under the sprint: do not sprint again this run


def judge(
    total: int,
    size: int,
    before: datetime,
    pages: Sequence[SprintPage],
    changed: bool,
) -> Verdict:
    """Which of the sprint's ``pages`` are exactly the query's records that follow the record
    stamped ``before``. ``changed``: the check found a record changed since page 1; then none
    is. Otherwise the pages are trusted up to the first that breaks a rule: every boundary is
    judged on its own, and a boundary between equal ``updated_at`` values is no sign of churn
    (a keyset step from the last trusted page reads that second again)."""
    if changed:
        return Verdict(0, "records changed while it ran", churn=True)
    previous = before
    for index, page in enumerate(pages):
        last_of_query = not page.has_next
        stamps = [s for s in page.stamps if s is not None]
        reason = None
        if page.total != total:
            return Verdict(index, f"the total moved from {total} to {page.total}", churn=True)
        if last_of_query and index != len(pages) - 1:
            return Verdict(index, "a page ended the query, and yet more were served", churn=True)
        if not last_of_query and page.count != size:
            reason = f"a page held {page.count} records, not {size}"
        elif not stamps or len(stamps) != page.count:
            reason = "a record without updated_at"
        elif stamps != sorted(stamps):
            reason = "a page not sorted by updated_at"
        elif not previous < stamps[0]:
            reason = "equal updated_at on both sides of a page boundary"
        if reason is not None:
            return Verdict(index, reason)
        previous = stamps[-1]
    return Verdict(len(pages), None) if pages else Verdict(0, "no pages")


def trusted(
    total: int,
    size: int,
    before: datetime,
    pages: Sequence[SprintPage],
    changed: bool,
) -> bool:
    """Whether all of ``pages`` are trusted (see :func:`judge`)."""
    return judge(total, size, before, pages, changed).reason is None
