"""The catalog's streams beyond the eight hand-made ones, in one simulated MOCO account.

``MocoData`` keeps the eight streams the sandbox has always had (realistic, hand-made records);
:class:`CatalogStreams` keeps every other record stream of the catalog, generated from its
columns (``moco_generated``): per-project lists under the account's projects, a top-level list
that holds the same records as a per-project one (``/projects/expenses``, the catalog's
``twin``) served from it, records without ``updated_at`` with a hidden change time that
``updated_after`` filters by, as MOCO's server does. A per-project list a project's record
also names (its ``tasks`` and ``contracts``) holds exactly the records named there, and a change
to one of them rewrites the project's list and stamps the project changed. It draws from a
random generator of its own, so the eight streams are made exactly as before for the same seed.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime

from syncer.catalog import Catalog, Stream
from syncer.sandbox.moco_generated import Generator, Record

# Records per stream where the catalog's stream has no count of its own; a few lists are long
# enough to take several pages.
DEFAULT_COUNT = 24
LONG_LISTS: Mapping[str, int] = {"comments": 150, "schedules": 120, "planning_entries": 110}
CHILDREN_PER_PROJECT = (0, 3)  # a per-project list's records per project, at least and most
_HISTORY_MS = 730 * 86_400_000
_MIN_AGE_MS = 3_600_000
_EDITS = ("Korrigiert", "Angepasst", "Überarbeitet 📝")


def record_streams(catalog: Catalog) -> list[Stream]:
    """The catalog's streams whose records are kept (lists; not reports, objects, details)."""
    return [s for s in catalog if s.strategy not in ("report", "object", "detail")]


def format_ts(epoch_ms: int) -> str:
    return datetime.fromtimestamp(epoch_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class CatalogStreams:
    """Every record stream of ``catalog`` not in ``hand_made``, generated and changeable."""

    def __init__(
        self,
        catalog: Catalog,
        hand_made: Mapping[str, list[Record]],
        counts: Mapping[str, int],
        seed: int,
        now: Callable[[], float],
    ) -> None:
        self.catalog = catalog
        self.rng = random.Random(f"{seed}:catalog")
        self._now = now
        self.rows: dict[str, list[Record]] = dict(hand_made)  # the eight, shared, and the rest
        self.parent: dict[str, dict[int, int]] = {}  # per-project stream -> record -> project
        self.changed_ms: dict[str, dict[int, int]] = {}  # records without updated_at
        self.twins = {
            s.parent.twin: s.name for s in catalog if s.parent is not None and s.parent.twin
        }
        self._generator = Generator(self.rng, self.rows)
        self._next_id = 5_000_000_000
        self._revision = 0
        self.entry_keys: dict[str, tuple[str, ...]] = {}  # the fields a project's entry names
        now_ms = int(now() * 1000)
        own = [s for s in record_streams(catalog) if s.name not in hand_made]
        for stream in sorted(own, key=lambda s: s.parent is not None):  # parents first
            if stream.name in self.twins:
                continue  # served from its per-project twin
            self.rows[stream.name] = []
            if stream.parent is not None and stream.parent.embedded:
                self.parent[stream.name] = {}
                for project in self.rows.get(stream.parent.stream, ()):
                    for entry in project.get(stream.parent.embedded) or ():
                        self.entry_keys.setdefault(stream.name, tuple(entry))
                        record = self._add(
                            stream, self._past(now_ms), parent=int(project["id"]), rid=entry["id"]
                        )
                        record.update(entry)
            elif stream.parent is not None:
                self.parent[stream.name] = {}
                for project in self.rows.get(stream.parent.stream, ()):
                    low, high = CHILDREN_PER_PROJECT
                    for _ in range(self.rng.randint(low, high)):
                        self._add(stream, self._past(now_ms), parent=int(project["id"]))
            else:
                wanted = counts.get(stream.name, LONG_LISTS.get(stream.name, DEFAULT_COUNT))
                for _ in range(wanted):
                    self._add(stream, self._past(now_ms))

    # --- reading ------------------------------------------------------------------------------

    def owns(self, stream: str) -> bool:
        return stream in self.rows or stream in self.twins

    def live(self, stream: str) -> list[Record]:
        return list(self.rows[self.twins.get(stream, stream)])

    def parent_of(self, stream: str, record_id: int) -> int | None:
        """The project a per-project list's record is listed under (a twin's too)."""
        return self.parent.get(self.twins.get(stream, stream), {}).get(int(record_id))

    def children(self, stream: str, project_id: int) -> list[Record]:
        parents = self.parent.get(stream, {})
        return [r for r in self.rows[stream] if parents.get(int(r["id"])) == project_id]

    def changed_at(self, stream: str, record: Record) -> int | None:
        """When ``record`` last changed, in epoch ms (hidden where it has no updated_at)."""
        hidden = self.changed_ms.get(self.twins.get(stream, stream), {}).get(int(record["id"]))
        if hidden is not None:
            return hidden
        stamp = record.get("updated_at")
        if isinstance(stamp, str):
            return int(datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() * 1000)
        return None

    # --- changing -----------------------------------------------------------------------------

    def _past(self, now_ms: int) -> int:
        end = now_ms - _MIN_AGE_MS
        return self.rng.randint(end - _HISTORY_MS, end)

    def _add(
        self, stream: Stream, at_ms: int, *, parent: int | None = None, rid: int | None = None
    ) -> Record:
        if rid is None:
            self._next_id += self.rng.randint(1, 997)
            rid = self._next_id
        record = self._generator.record(stream, rid, format_ts(at_ms))
        if parent is not None:
            self.parent[stream.name][rid] = parent
            if isinstance(record.get("project"), dict):
                record["project"]["id"] = parent
        if "created_at" in {c.name for c in stream.columns}:
            record["created_at"] = format_ts(at_ms)
        if stream.replication_key:
            record["updated_at"] = format_ts(at_ms)
        else:
            self.changed_ms.setdefault(stream.name, {})[rid] = at_ms
        self.rows[stream.name].append(record)
        return record

    def _own(self, stream: str) -> Stream:
        return self.catalog[self.twins.get(stream, stream)]

    def _touch(self, stream: Stream, record: Record, at_ms: int) -> None:
        if stream.replication_key:
            record["updated_at"] = format_ts(at_ms) if at_ms % 1000 == 0 else _ms(at_ms)
        else:
            self.changed_ms.setdefault(stream.name, {})[int(record["id"])] = at_ms

    def update(self, stream_name: str, n: int, at_ms: int) -> list[Record]:
        stream = self._own(stream_name)
        rows = self.rows[stream.name]
        changed = self.rng.sample(rows, min(n, len(rows)))
        field = self._generator.changed_field(stream)
        for record in changed:
            self._revision += 1
            if field is not None:
                record[field] = f"{self.rng.choice(_EDITS)} (Rev. {self._revision})"
            else:
                record["_revision"] = self._revision
            self._touch(stream, record, at_ms)
        self._rename(stream, changed, at_ms)
        return sorted(changed, key=lambda r: int(r["id"]))

    def create(self, stream_name: str, n: int, at_ms: int) -> list[Record]:
        stream = self._own(stream_name)
        made = []
        for _ in range(n):
            parent = None
            if stream.parent is not None:
                projects = self.rows.get(stream.parent.stream, ())
                if not projects:
                    break
                parent = int(self.rng.choice(projects)["id"])
            record = self._add(stream, at_ms, parent=parent)
            self._touch(stream, record, at_ms)
            made.append(record)
        self._rename(stream, made, at_ms)
        return made

    def delete(
        self, stream_name: str, n: int, *, ids: Collection[int] | None = None
    ) -> list[Record]:
        stream = self._own(stream_name)
        rows = self.rows[stream.name]
        if ids is not None:
            wanted = set(ids)
            gone = [r for r in rows if int(r["id"]) in wanted]
        else:
            gone = self.rng.sample(rows, min(n, len(rows)))
        projects = {self.parent_of(stream.name, int(r["id"])) for r in gone}
        self.remove(stream.name, {int(r["id"]) for r in gone})
        self._rename_projects(stream, projects, int(self._now() * 1000))
        return gone

    def _rename(self, stream: Stream, records: Sequence[Record], at_ms: int) -> None:
        """The projects of ``records`` list them anew, where their record names that list."""
        projects = {self.parent_of(stream.name, int(r["id"])) for r in records}
        self._rename_projects(stream, projects, at_ms)

    def _rename_projects(self, stream: Stream, projects: set[int | None], at_ms: int) -> None:
        if stream.parent is None or not stream.parent.embedded:
            return
        keys = self.entry_keys.get(stream.name, ("id",))
        for project in self.rows.get(stream.parent.stream, ()):
            if int(project["id"]) in projects:
                project[stream.parent.embedded] = [
                    {k: child[k] for k in keys if k in child}
                    for child in self.children(stream.name, int(project["id"]))
                ]
                project["updated_at"] = _ms(at_ms)

    def remove(self, stream: str, ids: set[int]) -> None:
        self.rows[stream][:] = [r for r in self.rows[stream] if int(r["id"]) not in ids]
        for rid in ids:
            self.parent.get(stream, {}).pop(rid, None)
            self.changed_ms.get(stream, {}).pop(rid, None)

    def drop_children(self, projects: set[int]) -> dict[str, list[Record]]:
        """The per-project lists' records of ``projects`` (deleted), removed; by stream."""
        removed = {}
        for stream, parents in self.parent.items():
            gone = {rid for rid, p in parents.items() if p in projects}
            if gone:
                removed[stream] = [r for r in self.rows[stream] if int(r["id"]) in gone]
                self.remove(stream, gone)
        return removed

    def backdate(
        self, n: int, streams: Sequence[str] | None, *, now_ms: int, age_ms: tuple[int, int]
    ) -> dict[str, list[Record]]:
        """``n`` new records spread over ``streams``, changed ``age_ms`` ago (a range)."""
        names = list(streams or ())
        made: dict[str, list[Record]] = {}
        for i in range(n):
            stream = self._own(names[i % len(names)])
            at = now_ms - self.rng.randint(*age_ms)
            record = self._add(stream, at)
            made.setdefault(stream.name, []).append(record)
        return made


def _ms(epoch_ms: int) -> str:
    base = datetime.fromtimestamp(epoch_ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{epoch_ms % 1000:03d}Z"
