"""The MOCO sandbox, indexed, so that it can serve a million records at benchmark speed.

``MocoSandbox._select`` filters and sorts a stream's whole record list on every request
(and scans every record for its sortable fields): fine for the tests' 5,000 records, about
0.8 s per request at 100,000, so a benchmark would measure the sandbox. ``IndexedMocoSandbox``
answers the two query shapes the benchmarks send from indexes built once per data version:

* ``sort_by=updated_at asc`` with ``updated_after`` (syncer's keyset walk): a bisection into
  the records sorted by (updated_at, id);
* any other query without ``ids`` (dlt's offset paging over one fixed query): the original
  selection, computed once and kept for the following pages.

Everything else (rate limit, faults, headers, Link, the served records) is the sandbox's own
code. :func:`check_equivalence` compares both selections on random queries over small data;
the benchmarks call it before they start, so a change to the sandbox's rules cannot slip by.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, overload

from syncer.sandbox.moco import MocoSandbox, _ListQuery, _parse_query
from syncer.sandbox.moco_data import MocoData, parse_ts
from syncer.sandbox.moco_records import Record

_ARCHIVABLE = frozenset({"projects", "companies", "users"})


class _Tail(Sequence[Record]):
    """``rows[start:]`` without copying: ``_page`` only asks for its length and one slice."""

    def __init__(self, rows: list[Record], start: int) -> None:
        self._rows = rows
        self._start = start

    def __len__(self) -> int:
        return len(self._rows) - self._start

    @overload
    def __getitem__(self, index: int) -> Record: ...
    @overload
    def __getitem__(self, index: slice) -> list[Record]: ...
    def __getitem__(self, index: int | slice) -> Record | list[Record]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            return self._rows[self._start + start : self._start + stop : step]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        return self._rows[self._start + index]

    def __iter__(self) -> Iterator[Record]:
        return iter(self._rows[self._start :])


class IndexedMocoSandbox(MocoSandbox):
    """A MocoSandbox whose list queries cost a bisection, not a scan of every record.

    Call :meth:`changed` after changing ``data`` (or use :meth:`update` / :meth:`create` /
    :meth:`delete`, which do): the indexes are rebuilt on the next request.
    """

    def __init__(self, data: MocoData | None = None, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self._version = 0
        self._sorted: dict[tuple[str, bool, bool], tuple[list[Record], list[datetime]]] = {}
        self._memo: dict[tuple[Any, ...], list[Record]] = {}

    def changed(self) -> None:
        """Forget the indexes: ``data`` was changed."""
        self._version += 1
        self._sorted.clear()
        self._memo.clear()

    def update(self, stream: str, n: int) -> list[int]:
        ids = self.data.update(stream, n)
        self.changed()
        return ids

    def create(self, stream: str, n: int) -> list[int]:
        ids = self.data.create(stream, n)
        self.changed()
        return ids

    def delete(self, stream: str, n: int) -> list[int]:
        ids = self.data.delete(stream, n)
        self.changed()
        return ids

    def warm(self, *streams: str) -> None:
        """Build the indexes that syncer's queries (sorted by updated_at) and the dlt
        pipeline's (``updated_after`` its initial value, unsorted) are answered from, so that
        no measured request pays for them (at 1,000,000 records, seconds): call it after
        changing the data, before measuring."""
        for stream in streams:
            for params in ({"sort_by": "updated_at asc"}, {}):
                query = {"updated_after": "2000-01-01T00:00:00Z", **params}
                self._select(stream, _parse_query(query, self.settings.max_per_page))

    def _select(self, stream: str, query: _ListQuery) -> Sequence[Record]:  # type: ignore[override]
        if query.ids is not None or (query.page >= 2 and self.faults.change_between_pages > 0):
            return super()._select(stream, query)
        if query.sort == ("updated_at", False) and query.updated_after is not None:
            rows, stamps = self._by_updated_at(stream, query)
            after = query.updated_after
            if self.settings.updated_after_inclusive:
                start = bisect.bisect_left(stamps, after)
            else:
                start = bisect.bisect_right(stamps, after)
            return _Tail(rows, start)
        key = (stream, query.include_archived, query.include_disregarded)
        key += (query.updated_after, query.sort, self.settings.updated_after_inclusive)
        if key not in self._memo:
            self._memo[key] = super()._select(stream, query)
        return self._memo[key]

    def _by_updated_at(self, stream: str, query: _ListQuery) -> tuple[list[Record], list[datetime]]:
        key = (stream, query.include_archived, query.include_disregarded)
        if key not in self._sorted:
            # The sandbox's own selection with no lower bound: every rule but updated_after
            # (which the bisection applies) is the sandbox's, including the 422 for bad fields.
            everything = _ListQuery(
                page=1,
                per_page=query.per_page,
                updated_after=None,
                include_archived=query.include_archived,
                include_disregarded=query.include_disregarded,
                ids=None,
                sort=query.sort,
            )
            rows = super()._select(stream, everything)
            # Records without updated_at never pass an updated_after filter; they sort last.
            rows = [row for row in rows if row.get("updated_at") is not None]
            self._sorted[key] = (rows, [parse_ts(row["updated_at"]) for row in rows])
        return self._sorted[key]


def check_equivalence(seed: int = 7, queries: int = 300) -> None:
    """Raise AssertionError if IndexedMocoSandbox selects differently from MocoSandbox."""
    data = MocoData(seed=seed, counts={"activities": 1500, "projects": 200, "invoices": 200})
    plain = MocoSandbox(data)
    indexed = IndexedMocoSandbox(data)
    rng = random.Random(seed)
    stamps = sorted(parse_ts(r["updated_at"]) for r in data.live("activities"))
    for number in range(queries):
        stream = rng.choice(("activities", "projects", "invoices", "companies"))
        params: dict[str, str] = {"page": str(rng.randint(1, 4))}
        if rng.random() < 0.8:
            params["sort_by"] = rng.choice(
                ("updated_at asc", "updated_at", "id", "updated_at desc")
            )
        if rng.random() < 0.9:
            at = rng.choice(stamps) + timedelta(seconds=rng.choice((-1, 0, 0, 1)))
            params["updated_after"] = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        for flag in ("include_archived", "include_disregarded"):
            if rng.random() < 0.5:
                params[flag] = "true"
        if number % 50 == 49:  # the data changes now and then, as in the incremental benchmark
            indexed.update(stream, 20)
            indexed.create(stream, 3)
        for inclusive in (False, True):
            plain.settings = indexed.settings = type(plain.settings)(
                updated_after_inclusive=inclusive
            )
            query = _parse_query(params, plain.settings.max_per_page)
            want = [r["id"] for r in plain._select(stream, query)]
            got = [r["id"] for r in indexed._select(stream, query)]
            assert got == want, f"indexed selection differs for {stream} {params} ({inclusive})"
            start = (query.page - 1) * query.per_page
            page = indexed._select(stream, query)[start : start + query.per_page]
            assert [r["id"] for r in page] == want[start : start + query.per_page]
