"""Deterministic MOCO data: every stream of the catalog for one account, in memory, mutable.

`MocoData` keeps the records, gives them large non-sequential ids and the API's timestamps, and
applies the changes tests make. The eight streams of the first releases have hand-made records
(`moco_records`); every other catalog stream's are generated from its columns
(`moco_account`, `moco_generated`), from a random generator of their own, so the eight are the
same as ever for a seed. The same seed, counts, clock and sequence of calls give the same data.
"""

from __future__ import annotations

import copy
import hashlib
import random
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, date, datetime
from functools import lru_cache

from syncer.catalog import Catalog
from syncer.sandbox import moco_generated
from syncer.sandbox.moco_account import CatalogStreams, record_streams
from syncer.sandbox.moco_records import Record, RecordBuilder
from syncer.sources.moco.catalog import CATALOG

MOCO_STREAM_PATHS: dict[str, str] = {
    "activities": "/activities",
    "projects": "/projects",
    "companies": "/companies",
    "contacts": "/contacts/people",
    "users": "/users",
    "invoices": "/invoices",
    "offers": "/offers",
    "deals": "/deals",
}

DEFAULT_COUNTS: dict[str, int] = {
    "activities": 3000,
    "projects": 300,
    "companies": 250,
    "contacts": 500,
    "users": 40,
    "invoices": 400,
    "offers": 300,
    "deals": 250,
}

# Generation order: a stream only points at streams generated before it.
_ORDER = ("users", "companies", "contacts", "deals", "projects", "offers", "invoices", "activities")

# Real ids are around 1e9 and not sequential (docs/vendors/moco.md). Activities cross 2**31 on the
# way, so a client that keeps ids in 32-bit integers breaks; invoices are above 2**32 throughout.
_FIRST_ID = {
    "users": 933_000_000,
    "companies": 760_000_000,
    "contacts": 310_000_000,
    "deals": 520_000_000,
    "projects": 944_000_000,
    "offers": 1_310_000_000,
    "invoices": 4_294_000_000,
    "activities": 2_146_800_000,
}
_MAX_ID_GAP = 997
_HISTORY_MS = 730 * 86_400_000
_MIN_AGE_MS = 3_600_000
# Only offers carry milliseconds in generated data (as in recorded responses, docs/vendors/moco.md).
_MS_STREAMS = frozenset({"offers"})

# With `ids_follow_updates`: the share of generated records edited after their creation.
_EDITED_LATER = 0.1

# What `update` writes into a record's free-text field, before the revision number.
_EDITS = ("Korrigiert nach Rücksprache", "Angepasst", "Überarbeitet 📝", "Geändert gemäß Mail")


def format_ts(epoch_ms: int, *, with_ms: bool) -> str:
    """The API's UTC text for epoch milliseconds: `YYYY-MM-DDTHH:MM:SSZ`, or `...SS.mmmZ`."""
    base = datetime.fromtimestamp(epoch_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{epoch_ms % 1000:03d}Z" if with_ms else f"{base}Z"


@lru_cache(maxsize=65_536)
def parse_ts(text: str) -> datetime:
    """An aware UTC datetime for ISO 8601 text (naive means UTC); ValueError if unparseable."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class MocoData:
    """The MOCO account the sandbox serves: realistic records per stream, changeable by tests.

    `counts` overrides DEFAULT_COUNTS per stream (streams not named keep their default).
    `ids_follow_updates`: as in a real account, ids grow with `updated_at` (ids are handed out
    in order of creation and most records were not edited since, so `updated_at` =
    `created_at`), except for a share of records edited later. Listed by id, such data looks
    sorted by `updated_at` page after page, until an edited record turns up.
    """

    def __init__(
        self,
        seed: int = 1,
        counts: Mapping[str, int] | None = None,
        now: Callable[[], float] = time.time,
        *,
        ids_follow_updates: bool = False,
        catalog: Catalog = CATALOG,
    ) -> None:
        self.catalog = catalog
        known = [s.name for s in record_streams(catalog)]
        unknown = set(counts or {}) - set(known) - set(MOCO_STREAM_PATHS)
        if unknown:
            raise ValueError(f"unknown MOCO streams {sorted(unknown)}; use {known}")
        self.seed = seed
        self.ids_follow_updates = ids_follow_updates
        self._now = now
        self._rng = random.Random(seed)
        self._rows: dict[str, list[Record]] = {stream: [] for stream in MOCO_STREAM_PATHS}
        self._last_id = {stream: first for stream, first in _FIRST_ID.items()}
        self._builder = RecordBuilder(self._rng, self._rows, seed)
        self._revision = 0
        self._reads = 0
        # Called as listener(stream, event, records as served, epoch ms) after each change, from
        # the thread that made it (the webhook simulator queues them).
        self.listeners: list[Callable[[str, str, list[Record], int], None]] = []
        wanted = {**DEFAULT_COUNTS, **(counts or {})}
        now_ms = int(now() * 1000)
        for stream in _ORDER:
            self._generate(stream, wanted[stream], now_ms)
        projects_by_customer: dict[int, list[Record]] = {}
        for project in self._rows["projects"]:
            if project["customer"]:
                projects_by_customer.setdefault(project["customer"]["id"], []).append(project)
        for company in self._rows["companies"]:
            company["projects"] = [
                {k: p[k] for k in ("id", "identifier", "name", "active", "billable")}
                for p in projects_by_customer.get(company["id"], [])
            ]
        # Every other stream of the catalog, from its own random generator.
        self.others = CatalogStreams(catalog, self._rows, counts or {}, seed, now)

    @staticmethod
    def stream_names(catalog: Catalog = CATALOG) -> tuple[str, ...]:
        """The record streams the sandbox serves for ``catalog``."""
        return tuple(s.name for s in record_streams(catalog))

    def records(self, stream: str) -> list[Record]:
        """Copies of every current record of `stream` (archived too), as the API serves them."""
        return self.serve(stream, self.live(stream))

    def live(self, stream: str) -> list[Record]:
        """The stored records of `stream` in id order: the dicts themselves, to read only."""
        if stream in MOCO_STREAM_PATHS:
            return list(self._rows[stream])
        if self.others.owns(stream):
            return self.others.live(stream)
        raise KeyError(f"unknown MOCO stream {stream!r}; use one of {list(self.catalog.names)}")

    def parent_of(self, stream: str, record_id: int) -> int | None:
        """The project a per-project list's record is listed under (None for other streams)."""
        return self.others.parent_of(stream, record_id)

    def children(self, stream: str, project_id: int) -> list[Record]:
        """A per-project list of one project, as stored."""
        return self.others.children(self.others.twins.get(stream, stream), project_id)

    def changed_at_ms(self, stream: str, record: Record) -> int | None:
        """When ``record`` last changed, in epoch ms (a record without ``updated_at`` too)."""
        if stream in MOCO_STREAM_PATHS:
            return int(parse_ts(record["updated_at"]).timestamp() * 1000)
        return self.others.changed_at(stream, record)

    def report_rows(self, stream: str, period: tuple[date, date]) -> list[Record]:
        """The rows a report answers for ``period`` (first and last day)."""
        return moco_generated.report_rows(self.catalog[stream], period, self._all(), self.seed)

    def detail(self, stream: str, record_id: int) -> Record | None:
        """What a detail read (``/invoices/{id}``) answers; None for no such record."""
        spec = self.catalog[stream]
        assert spec.detail_of is not None
        base = next((r for r in self.live(spec.detail_of) if r["id"] == record_id), None)
        if base is None:
            return None
        served = self.serve(spec.detail_of, [base])[0]
        return moco_generated.detail(spec, served, self._all(), self.seed)

    def hourly_rates(self, stream: str) -> Record:
        return moco_generated.hourly_rates(self.catalog[stream], self._all(), self.seed)

    def _all(self) -> dict[str, list[Record]]:
        return self.others.rows

    def serve(self, stream: str, rows: Sequence[Record]) -> list[Record]:
        """Deep copies of `rows` as one response carries them, with per-read fields filled in.

        Invoice `file_url` is a signed link that changes on every read (docs/vendors/moco.md).
        """
        self._reads += 1
        served = copy.deepcopy(list(rows))
        if stream == "invoices":
            expires = int(self._now()) + 600
            for row in served:
                token = f"{self.seed}:{row['id']}:{self._reads}".encode()
                signature = hashlib.sha256(token).hexdigest()[:32]
                row["file_url"] = (
                    f"https://sandbox.mocoapp.com/invoices/{row['id']}.pdf"
                    f"?expires={expires}&signature={signature}"
                )
        return served

    def update(self, stream: str, n: int) -> list[int]:
        """Changes one field of up to `n` random records and stamps `updated_at` = now (ms).

        Returns the ids changed, ascending.
        """
        if stream not in MOCO_STREAM_PATHS:
            self._checked(stream, n)
            touched = self.others.update(stream, n, int(self._now() * 1000))
            self._notify(stream, "update", touched)
            return [r["id"] for r in touched]
        rows = self._checked(stream, n)
        stamp = self._stamp()
        changed = self._rng.sample(rows, min(n, len(rows)))
        for row in changed:
            self._revision += 1
            field = _CHANGED_FIELD[stream]
            row[field] = f"{self._rng.choice(_EDITS)} (Rev. {self._revision})"
            row["updated_at"] = stamp
        self._notify(stream, "update", sorted(changed, key=lambda row: int(row["id"])))
        return sorted(row["id"] for row in changed)

    def create(self, stream: str, n: int) -> list[int]:
        """Adds `n` new active records (created_at = updated_at = now, ms); returns their ids."""
        if stream not in MOCO_STREAM_PATHS:
            self._checked(stream, n)
            made = self.others.create(stream, n, int(self._now() * 1000))
            self._notify(stream, "create", made)
            return [r["id"] for r in made]
        rows = self._checked(stream, n)
        stamp = self._stamp()
        self._builder.fresh = True
        try:
            created = [
                self._builder.build(stream, self._new_id(stream), stamp, stamp) for _ in range(n)
            ]
        finally:
            self._builder.fresh = False
        rows.extend(created)
        self._notify(stream, "create", created)
        return [row["id"] for row in created]

    def delete(self, stream: str, n: int, *, ids: Collection[int] | None = None) -> list[int]:
        """Removes up to `n` random records (or, given `ids`, those of them that exist; `n` is
        then ignored) without a tombstone, as MOCO does; returns their ids. A project's
        per-project records go with it (their lists then answer 404)."""
        if stream not in MOCO_STREAM_PATHS:
            self._checked(stream, n)
            removed = self.others.delete(stream, n, ids=ids)
            self._notify(stream, "delete", removed)
            return sorted(r["id"] for r in removed)
        rows = self._checked(stream, n)
        if ids is not None:
            wanted = set(ids)
            gone = {row["id"] for row in rows if row["id"] in wanted}
        else:
            gone = {row["id"] for row in self._rng.sample(rows, min(n, len(rows)))}
        self._notify(stream, "delete", [row for row in rows if row["id"] in gone])
        rows[:] = [row for row in rows if row["id"] not in gone]
        if stream == "projects":
            for child, records in self.others.drop_children(gone).items():
                self._notify(child, "delete", records)
        return sorted(gone)

    def backdate(
        self,
        n: int,
        streams: Sequence[str] | None = None,
        *,
        min_age_days: float = 42,
        max_age_days: float = 84,
    ) -> dict[str, list[int]]:
        """``n`` new records (spread over ``streams``, by default every list read by
        ``updated_after`` whose records carry ``updated_at``) that appear with an ``updated_at``
        6-12 weeks old, as after an import or a restore: a client whose watermark is past
        that time never sees them by ``updated_after``. The ids made, by stream."""
        names = list(streams) if streams else self.backdatable()
        now_ms = int(self._now() * 1000)
        low, high = int(min_age_days * 86_400_000), int(max_age_days * 86_400_000)
        made: dict[str, list[int]] = {}
        for i in range(n):
            stream = names[i % len(names)]
            at_ms = now_ms - self._rng.randint(low, high)
            if stream in MOCO_STREAM_PATHS:
                stamp = format_ts(at_ms, with_ms=stream in _MS_STREAMS)
                self._builder.fresh = True
                try:
                    record = self._builder.build(stream, self._new_id(stream), stamp, stamp)
                finally:
                    self._builder.fresh = False
                self._rows[stream].append(record)
                made.setdefault(stream, []).append(record["id"])
            else:
                for name, records in self.others.backdate(
                    1, [stream], now_ms=now_ms, age_ms=(at_ms, at_ms)
                ).items():
                    made.setdefault(name, []).extend(int(r["id"]) for r in records)
        return made

    def backdatable(self) -> list[str]:
        """The streams :meth:`backdate` spreads over by default."""
        return [
            s.name
            for s in record_streams(self.catalog)
            if s.parent is None
            and s.replication_key
            and s.takes("updated_after")
            and s.name not in self.others.twins
        ]

    def _notify(self, stream: str, event: str, rows: list[Record]) -> None:
        if self.listeners and rows:
            served, at_ms = self.serve(stream, rows), int(self._now() * 1000)
            for listener in list(self.listeners):
                listener(stream, event, served, at_ms)

    def _checked(self, stream: str, n: int) -> list[Record]:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.live(stream)  # raises for an unknown stream
        return self._rows[stream] if stream in MOCO_STREAM_PATHS else []

    def _stamp(self) -> str:
        return format_ts(int(self._now() * 1000), with_ms=True)

    def _new_id(self, stream: str) -> int:
        self._last_id[stream] += self._rng.randint(1, _MAX_ID_GAP)
        return self._last_id[stream]

    def _generate(self, stream: str, n: int, now_ms: int) -> None:
        rng = self._rng
        with_ms = stream in _MS_STREAMS
        end = now_ms - _MIN_AGE_MS
        start = end - _HISTORY_MS
        # A few bulk edits give many records the very same updated_at, as imports do.
        bulk = [t - t % 1000 for t in (rng.randint(end - 60 * 86_400_000, end) for _ in range(4))]
        for created in sorted(rng.randint(start, end) for _ in range(n)):
            roll = rng.random()
            later = [b for b in bulk if b >= created]
            if self.ids_follow_updates:
                updated = rng.randint(created, end) if roll < _EDITED_LATER else created
            elif roll < 0.35:
                updated = created
            elif roll < 0.45 and later:
                updated = rng.choice(later)
            else:
                updated = rng.randint(created, end)
            if not with_ms:
                created, updated = created - created % 1000, updated - updated % 1000
            record = self._builder.build(
                stream,
                self._new_id(stream),
                format_ts(created, with_ms=with_ms),
                format_ts(updated, with_ms=with_ms),
            )
            self._rows[stream].append(record)


# The field `update` rewrites: free text every record of the stream has, disregarded invoices too.
_CHANGED_FIELD = {
    "activities": "description",
    "projects": "info",
    "companies": "info",
    "contacts": "job_position",
    "users": "info",
    "invoices": "title",
    "offers": "title",
    "deals": "info",
}
