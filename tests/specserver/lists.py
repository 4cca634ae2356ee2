"""How a list answers a query: exactly the parameters its spec documents, nothing else.

=======================  ==================================================================
``include_archived``     where documented: archived records left out unless ``true``
``include_disregarded``  where documented: invoices with status ``disregarded`` left out
                         unless ``true``
``updated_after``        where documented: records changed strictly after it (their hidden
                         change time, which is ``updated_at`` where they have one)
``ids``                  where documented: only those (comma-separated)
``sort_by``              where documented: ``field [asc|desc]``, else the natural order (id)
``years``                where documented: each record's ``rates`` are those years'
``from``/``to``/``year`` reports: the rows of that period
``page``/``per_page``    where documented (``per_page`` default 100, at most its
                         ``maximum``); where ``page`` is not, the whole list
=======================  ==================================================================

Any other parameter is ignored; an undocumented one is noted (``Answer.undocumented``), and a
documented filter the server does not model too (``Answer.unmodelled``).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.specserver.spec import DEFAULT_PER_PAGE, Endpoint
from tests.specserver.store import Rec, Store

__all__ = [
    "MODELLED",
    "Answer",
    "BadRequest",
    "answer",
    "period",
    "report_rows",
    "served_record",
]

MODELLED = frozenset(
    "page per_page updated_after ids sort_by include_archived include_disregarded years "  # noqa: SIM905
    "from to year".split()
)


class BadRequest(Exception):
    """A documented parameter with a value the server cannot read (400)."""


@dataclass(frozen=True)
class Answer:
    records: list[dict[str, Any]]  # as served, this page
    total: int  # records the query matches, all pages
    page: int | None  # None: the list takes no page
    per_page: int | None
    undocumented: tuple[str, ...]  # parameters given that the spec does not document here
    unmodelled: tuple[str, ...]  # documented ones given that the server ignores


def truthy(value: str | None) -> bool:
    return value is not None and value.strip().lower() in ("true", "1")


def parse_time(value: str) -> datetime:
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadRequest(f"updated_after: {value!r} is not an ISO 8601 time") from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_day(name: str, value: str) -> date:
    try:
        return date.fromisoformat(value.strip())
    except ValueError as exc:
        raise BadRequest(f"{name}: {value!r} is not a date (YYYY-MM-DD)") from exc


def period(e: Endpoint, query: Mapping[str, str], today: date) -> tuple[date, date]:
    """A report's period as asked (``year``, else ``from``..``to``); this month or this year
    where it is not asked."""
    if e.takes("year"):
        year = query.get("year", "").strip()
        number = int(year) if year.isdigit() else today.year
        return date(number, 1, 1), date(number, 12, 31)
    first = today.replace(day=1)
    last = (first + timedelta(days=32)).replace(day=1) - timedelta(days=1)
    start = parse_day("from", query["from"]) if e.takes("from") and "from" in query else first
    end = parse_day("to", query["to"]) if e.takes("to") and "to" in query else last
    return start, end


def report_rows(store: Store, e: Endpoint, span: tuple[date, date]) -> list[dict[str, Any]]:
    """The rows a report answers for ``span``: the same for the same period, every time."""
    gen = store.generator(f"{e.path}|{span[0]}|{span[1]}", span=span)
    count = gen.rng.randint(3, 40)
    if e.paged and gen.rng.random() < 0.3:
        count = gen.rng.randint(101, 160)  # two pages
    return [gen.object(e.schema, "", 0) for _ in range(count)]


def served_record(store: Store, e: Endpoint, rec: Rec, query: Mapping[str, str]) -> dict[str, Any]:
    if e.takes("years") and "rates" in rec.data:
        asked = [y.strip() for y in query.get("years", "").split(",") if y.strip().isdigit()]
        years = [int(y) for y in asked] or [datetime.now(UTC).year]
        rng = random.Random(f"{store.seed}|{rec.id}|{rec.version}")
        base = round(rng.uniform(40, 160), 2)
        rates = [{"year": y, "rate": round(base + (y - 2020) * 2.5, 2)} for y in years]
        return {**rec.data, "rates": rates}
    return rec.data


def _sort(records: list[Rec], e: Endpoint, sort_by: str) -> list[Rec]:
    words = sort_by.split()
    if not words or len(words) > 2:
        raise BadRequest(f"sort_by: {sort_by!r} is not 'field [asc|desc]'")
    name = words[0]
    direction = words[1].lower() if len(words) == 2 else "asc"
    if name not in e.schema.get("properties", {}) or direction not in ("asc", "desc"):
        raise BadRequest(f"sort_by: cannot sort by {sort_by!r}")

    def key(rec: Rec) -> tuple[bool, Any]:
        value = rec.data.get(name)
        plain = isinstance(value, (int, float, str)) and not isinstance(value, bool)
        return value is None, value if plain else str(value)

    return sorted(records, key=key, reverse=direction == "desc")


def _number(value: str | None, default: int) -> int:
    return int(value) if value is not None and value.strip().isdigit() else default


def answer(
    store: Store,
    e: Endpoint,
    query: Mapping[str, str],
    *,
    parent: int | None = None,
    today: date | None = None,
) -> Answer:
    given = set(query)
    undocumented = tuple(sorted(given - e.params))
    unmodelled = tuple(sorted((given & e.params) - MODELLED))
    if e.report:
        items = report_rows(store, e, period(e, query, today or datetime.now(UTC).date()))
    else:
        records = store.listed(e, parent)
        if e.takes("include_archived") and not truthy(query.get("include_archived")):
            records = [r for r in records if not r.archived]
        if e.takes("include_disregarded") and not truthy(query.get("include_disregarded")):
            records = [r for r in records if r.data.get("status") != "disregarded"]
        if e.takes("updated_after") and query.get("updated_after", "").strip():
            after = parse_time(query["updated_after"])
            records = [r for r in records if r.changed > after]
        if e.takes("ids") and query.get("ids", "").strip():
            try:
                wanted = {int(i) for i in query["ids"].split(",") if i.strip()}
            except ValueError as exc:
                raise BadRequest(f"ids: {query['ids']!r} is not a list of ids") from exc
            records = [r for r in records if r.id in wanted]
        if e.takes("sort_by") and query.get("sort_by", "").strip():
            records = _sort(records, e, query["sort_by"])
        items = [served_record(store, e, r, query) for r in records]
    return _page(e, items, query, undocumented, unmodelled)


def _page(
    e: Endpoint,
    items: Sequence[dict[str, Any]],
    query: Mapping[str, str],
    undocumented: tuple[str, ...],
    unmodelled: tuple[str, ...],
) -> Answer:
    total = len(items)
    if not e.paged:
        return Answer(list(items), total, None, None, undocumented, unmodelled)
    page = max(1, _number(query.get("page"), 1))
    size = DEFAULT_PER_PAGE
    if e.takes("per_page"):
        size = _number(query.get("per_page"), e.default_per_page)
        size = min(max(1, size), e.max_per_page or DEFAULT_PER_PAGE)
    start = (page - 1) * size
    return Answer(list(items[start : start + size]), total, page, size, undocumented, unmodelled)
