"""The records behind the served lists, and the changes a test makes to them.

Every list of the spec has its own records, generated from its item schema; three lists are
the union of a project's list over all projects (``/projects/expenses`` is every
``/projects/{project_id}/expenses``, see ``spec._link_unions``) and hold no records of their
own. Every record has a hidden change time: its ``updated_at`` where the schema has one, else
kept out of sight (``updated_after`` filters by it all the same), and a hidden archived flag:
``active: false`` where the schema has ``active``, else one record in ten.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tests.specserver.data import Generator, iso, new_id
from tests.specserver.spec import PARENT, Endpoint, Spec, resolve

__all__ = ["COUNTS", "Rec", "Store"]

# Records per list; a list not named has 3..30. Chosen so that several need 2+ pages: sorted
# (activities, with a pocket of 120 records changed in one second), unsorted (companies),
# without updated_at (receipts), without per_page and paging headers (purchase payments, fixed
# costs), a full listing (todos).
COUNTS = {
    "/activities": 250,
    "/companies": 120,
    "/receipts": 110,
    "/todos": 130,
    "/purchases/payments": 140,
    "/account/fixed_costs": 105,
    "/invoices": 90,
    "/projects": 40,
    "/users": 30,
    "/offers": 25,
    "/letter_papers": 6,
    "/users/roles": 5,
}
POCKET = ("/activities", 120)  # this many of the list's records share one change second
BIG_CHILD = ("/projects/{project_id}/tasks", 130)  # one project has this many
CHILDREN_PER_PROJECT = (0, 4)


@dataclass
class Rec:
    id: int
    data: dict[str, Any]
    changed: datetime  # the hidden change time, whole seconds
    archived: bool
    parent: int | None = None  # a project's list: the project's id
    version: int = 0


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


class Store:
    def __init__(self, spec: Spec, seed: int) -> None:
        self.spec, self.seed = spec, seed
        self.rng = random.Random(f"{seed}|store")
        self.taken: set[int] = set()
        self.started = now()
        self.records: dict[str, dict[int, Rec]] = {}
        self.objects: dict[str, tuple[int, dict[str, Any]]] = {}
        self._details: dict[str, dict[str, Any]] = {}  # a detail's own fields, per version
        owners = [e for e in spec.lists if e.union_of is None and not e.report]
        ids: dict[str, list[int]] = {}
        for e in owners:
            if e.kind == "list":
                count = COUNTS.get(e.path, self.rng.randint(3, 30))
                ids[e.path] = [new_id(self.rng, self.taken) for _ in range(count)]
        self.pools: dict[str, list[int]] = dict(ids)
        for e in owners:
            if e.kind == "list":
                self.records[e.path] = {i: self._fresh(e, i, None) for i in ids[e.path]}
        projects = sorted(self.records[PARENT])
        self.big_project = self.rng.choice(projects)
        for e in owners:
            if e.kind == "child":
                table: dict[int, Rec] = {}
                for project in projects:
                    count = self.rng.randint(*CHILDREN_PER_PROJECT)
                    if (e.path, project) == (BIG_CHILD[0], self.big_project):
                        count = BIG_CHILD[1]
                    for _ in range(count):
                        rid = new_id(self.rng, self.taken)
                        table[rid] = self._fresh(e, rid, project)
                self.records[e.path] = table
        path, size = POCKET
        pocket = self.rng.sample(sorted(self.records[path]), size)
        moment = self.started - timedelta(days=3, seconds=17)
        for rid in pocket:
            self._stamp(self.records[path][rid], moment)
        for e in spec.endpoints.values():
            if e.kind == "object":
                self.objects[e.path] = (0, self._object(e, 0))

    # --- generation -------------------------------------------------------------------------

    def generator(self, key: str, span: tuple[date, date] | None = None) -> Generator:
        rng = random.Random(f"{self.seed}|{key}")
        return Generator(rng, lambda s: resolve(self.spec.raw, s), self.pools, span=span)

    def _fresh(
        self, e: Endpoint, rid: int, parent: int | None, *, at: datetime | None = None
    ) -> Rec:
        gen = self.generator(f"{e.path}|{rid}")
        data = gen.object(e.schema, "", 0)
        data["id"] = rid
        properties = e.schema.get("properties", {})
        if parent is not None:
            if isinstance(data.get("project"), dict):
                data["project"]["id"] = parent
            if "project_id" in properties:
                data["project_id"] = parent
        archived = data["active"] is False if "active" in properties else gen.rng.random() < 0.1
        if at is None:
            created = self.started - timedelta(seconds=gen.rng.randrange(40 * 86400, 700 * 86400))
            age = (self.started - timedelta(days=2) - created).total_seconds()
            changed = created + timedelta(seconds=gen.rng.randrange(int(age)))
        else:
            created = changed = at
        rec = Rec(rid, data, changed, archived, parent)
        if "created_at" in properties:
            data["created_at"] = iso(created)
        self._stamp(rec, changed)
        return rec

    def _stamp(self, rec: Rec, moment: datetime) -> None:
        rec.changed = moment
        if "updated_at" in rec.data:
            rec.data["updated_at"] = iso(moment)

    def _object(self, e: Endpoint, version: int) -> dict[str, Any]:
        value: dict[str, Any] = self.generator(f"{e.path}|v{version}").object(e.schema, "", 0)
        return value

    def detail(self, e: Endpoint, rec: Rec) -> dict[str, Any]:
        """``/invoices/{id}``: the list's record with the detail's further fields;
        ``/projects/{id}/report``: the project's figures. Both change with the record, and
        only then: a detail's own fields are drawn once per version of its record (drawn
        again later, their references would come from pools that records created since
        have changed)."""
        key = f"{e.path}|{rec.id}|{rec.version}|{iso(rec.changed)}"
        if key not in self._details:
            self._details[key] = self.generator(key).object(e.schema, "", 0)
        value = copy.deepcopy(self._details[key])
        if e.path.endswith("/report"):
            totals = self.project_totals(rec.id)
            return {**value, **{k: v for k, v in totals.items() if k in value}}
        return {**value, **rec.data}

    def project_totals(self, project: int) -> dict[str, float]:
        """What a project's report aggregates ("aggregated project reporting data"): the
        hours and costs of its activities, its expenses' costs, its invoices' net totals. So
        a report changes when an activity is booked, whether or not the project does."""

        def num(value: Any) -> float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            return float(value) if ok else 0.0

        acts = [
            r.data
            for r in self.records.get("/activities", {}).values()
            if isinstance(r.data.get("project"), dict) and r.data["project"].get("id") == project
        ]
        expenses = self.records.get(f"{PARENT}/{{project_id}}/expenses", {}).values()
        invoices = self.records.get("/invoices", {}).values()
        return {
            "hours_total": round(sum(num(a.get("hours")) for a in acts), 2),
            "hours_billable": round(sum(num(a.get("hours")) for a in acts if a.get("billable")), 2),
            "costs_activities": round(
                sum(num(a.get("hours")) * num(a.get("hourly_rate")) for a in acts), 2
            ),
            "costs_expenses": round(
                sum(num(x.data.get("cost")) for x in expenses if x.parent == project), 2
            ),
            "invoiced_total": round(
                sum(
                    num(i.data.get("net_total"))
                    for i in invoices
                    if i.data.get("project_id") == project
                ),
                2,
            ),
        }

    # --- reading ----------------------------------------------------------------------------

    def owner(self, e: Endpoint) -> str:
        """The path whose records a list serves (a union: its project list)."""
        return e.union_of or e.path

    def table(self, path: str) -> dict[int, Rec]:
        e = self.spec.endpoints[path]
        return self.records[self.owner(e)]

    def listed(self, e: Endpoint, parent: int | None = None) -> list[Rec]:
        """Every record of the list (of one project's list), by id."""
        table = self.records[self.owner(e)]
        rows: Iterable[Rec] = table.values()
        if e.kind == "child":
            rows = (r for r in rows if r.parent == parent)
        return sorted(rows, key=lambda r: r.id)

    # --- changes ----------------------------------------------------------------------------

    def _pick(self, table: dict[int, Rec], n: int, avoid: Iterable[int] = ()) -> list[Rec]:
        skip = set(avoid)
        candidates = sorted(i for i in table if i not in skip)
        return [table[i] for i in self.rng.sample(candidates, min(n, len(candidates)))]

    def update(self, path: str, n: int) -> list[int]:
        """Change ``n`` records (one or two plain fields each, and their change time)."""
        e = self.spec.endpoints[path]
        if e.kind == "object":
            version = self.objects[path][0] + 1
            self.objects[path] = (version, self._object(e, version))
            return []
        moment = now()
        picked = self._pick(self.table(path), n)
        for rec in picked:
            rec.version += 1
            self._change_fields(e, rec)
            self._stamp(rec, moment)
        return [r.id for r in picked]

    def _change_fields(self, e: Endpoint, rec: Rec) -> None:
        gen = self.generator(f"{e.path}|{rec.id}|edit{rec.version}")
        plain = [
            key
            for key, sub in e.schema.get("properties", {}).items()
            if key not in ("id", "created_at", "updated_at", "active", "status")
            and not key.endswith("_id")
            and resolve(self.spec.raw, sub).get("type") in ("string", "number", "integer")
            and "enum" not in resolve(self.spec.raw, sub)
            and resolve(self.spec.raw, sub).get("format") is None
        ]
        for key in gen.rng.sample(plain, min(2, len(plain))):
            sub = e.schema["properties"][key]
            for _ in range(5):
                value = gen.value({**resolve(self.spec.raw, sub), "nullable": False}, key, 1)
                if value != rec.data.get(key):
                    rec.data[key] = value
                    break

    def create(self, path: str, n: int) -> list[int]:
        """``n`` new records (a project's list: under projects picked at random)."""
        e = self.spec.endpoints[path]
        owner = self.spec.endpoints[self.owner(e)]
        table = self.records[owner.path]
        made = []
        for _ in range(n):
            rid = new_id(self.rng, self.taken)
            parent = (
                self.rng.choice(sorted(self.records[PARENT])) if owner.kind == "child" else None
            )
            table[rid] = self._fresh(owner, rid, parent, at=now())
            made.append(rid)
        if owner.kind == "list":
            self.pools[owner.path] = sorted(table)
        return made

    def delete(self, path: str, n: int) -> list[int]:
        """Delete ``n`` records; a project takes its lists' records with it (never the one
        project holding most of a list, which would be more than a sweep may delete)."""
        avoid = [self.big_project] if path == PARENT else []
        return self.delete_ids(path, [r.id for r in self._pick(self.table(path), n, avoid)])

    def delete_ids(self, path: str, gone: list[int]) -> list[int]:
        e = self.spec.endpoints[path]
        table = self.table(path)
        for rid in gone:
            del table[rid]
        if path == PARENT:
            for child in self.spec.lists:
                if child.kind == "child":
                    kids = self.records[child.path]
                    for rid in [i for i, r in kids.items() if r.parent in gone]:
                        del kids[rid]
        if e.kind == "list" and e.union_of is None:
            self.pools[path] = sorted(table)
        return gone
