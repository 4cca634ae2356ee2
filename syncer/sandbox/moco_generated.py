"""Records of the catalog's streams beyond the eight hand-made ones, shaped by their schema.

A catalog stream names its view's columns, each with a type and the path of keys to its value
in the record (``customer.id``). That is enough to make a plausible record of any stream: a
value of the column's type at its path, and a reference (``project_id`` from
``project.id``) pointing at a record that exists in the account where one obviously does.
Nothing here names a stream: a stream added to the catalog is served with records like these.
Reports (rows per period), detail reads and the hourly-rates object are made here too.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping, Sequence
from datetime import date, timedelta
from typing import Any

from syncer.catalog import RAW, Stream

Record = dict[str, Any]

# A reference's field -> the stream its records are in (e.g. `leader: {id}` -> users).
REFERRED: Mapping[str, str] = {
    "project": "projects",
    "customer": "companies",
    "company": "companies",
    "supplier": "companies",
    "user": "users",
    "leader": "users",
    "co_leader": "users",
    "creator": "users",
    "approver": "users",
    "approver2": "users",
    "processed_by": "users",
    "responsible_user": "users",
    "assigned_to": "users",
    "created_by": "users",
    "deal": "deals",
    "invoice": "invoices",
    "offer": "offers",
    "purchase": "purchases",
    "unit": "units",
    "contact": "contacts",
    "person": "contacts",
    "revenue_category": "revenue_categories",
    "category": "deal_categories",
}
_WORDS = (
    "Konzept",
    "Wartung",
    "Schulung",
    "Beratung",
    "Büro",
    "Lizenz",
    "Reise",
    "Grafik",
    "Übersetzung",
    "Hosting",
    "Druck",
    "Workshop",
)
META = frozenset({"id", "updated_at", "_synced_at", "_parent_id", "period_start", "period_end"})


def columns_of(stream: Stream) -> list[tuple[str, str, tuple[str, ...]]]:
    """The record fields a stream's view reads: (column, type, path), raw columns left out."""
    return [
        (c.name, c.type, c.path)
        for c in stream.columns
        if c.type != RAW and c.path and c.path[0] not in META
    ]


class Generator:
    """Makes records from a stream's columns, referring to ``rows`` (the account's records)."""

    def __init__(self, rng: random.Random, rows: Mapping[str, Sequence[Record]]) -> None:
        self.rng = rng
        self.rows = rows

    def _ref(self, field: str) -> int:
        stream = REFERRED.get(field) or f"{field}s"
        pool = self.rows.get(stream) or ()
        if pool:
            return int(self.rng.choice(pool)["id"])
        return self.rng.randint(100_000_000, 999_999_999)

    def value(self, name: str, kind: str, day: str) -> Any:
        r = self.rng
        if kind == "text":
            if name.endswith("_at") or name in ("date",):
                return day
            if "url" in name:
                return f"https://sandbox.mocoapp.com/{name}/{r.randint(1, 9999)}"
            if "email" in name:
                return f"{r.choice(_WORDS).lower()}@sandbox.example"
            if name in ("currency",):
                return "EUR"
            return f"{r.choice(_WORDS)} {r.randint(1, 999)}"
        if kind == "bigint":
            if name.endswith("_id"):
                return self._ref(name.removesuffix("_id"))
            return r.randint(0, 500)
        if kind == "numeric":
            return r.choice((0, round(r.uniform(1, 5000), 2), float(r.randint(1, 100))))
        if kind == "boolean":
            return r.random() < 0.6
        if kind == "date":
            return day[:10]
        if kind == "timestamptz":
            return day if len(day) > 10 else f"{day}T09:00:00Z"
        if kind == "text[]":
            return r.sample(_WORDS, r.randint(0, 2))
        if kind == "jsonb":
            if name.endswith("s") or name in ("items", "costs", "rates"):
                return [{"id": r.randint(1, 10**6), "name": r.choice(_WORDS)}] * r.randint(0, 2)
            return {} if r.random() < 0.5 else {"note": r.choice(_WORDS)}
        return None

    def record(self, stream: Stream, rid: int | str | None, day: str) -> Record:
        """A record of ``stream`` (``rid`` its id, None for a report row) changed on ``day``."""
        record: Record = {} if rid is None else {"id": rid}
        for name, kind, path in columns_of(stream):
            if len(path) == 2 and path[1] == "id":  # a reference
                target = record.setdefault(path[0], {})
                if isinstance(target, dict):
                    target["id"] = self._ref(path[0])
                continue
            holder = record
            for key in path[:-1]:
                nested = holder.setdefault(key, {})
                holder = nested if isinstance(nested, dict) else {}
            holder.setdefault(path[-1], self.value(name, kind, day))
        return record

    def changed_field(self, stream: Stream) -> str | None:
        """A top-level text field of ``stream`` an update can rewrite."""
        for name, kind, path in columns_of(stream):
            if kind == "text" and len(path) == 1 and not name.endswith(("_at", "url", "email")):
                return path[0]
        return None


def report_rows(
    stream: Stream,
    period: tuple[date, date],
    rows: Mapping[str, Sequence[Record]],
    seed: int,
) -> list[Record]:
    """The rows a report answers for ``period``: deterministic per seed, stream and period,
    one per combination of its natural key's values (days or the period, users, projects,
    invoices), with the row schema's other fields."""
    rng = random.Random(f"{seed}:{stream.name}:{period[0]}:{period[1]}")
    maker = Generator(rng, rows)
    first, last = period
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    weekdays = [d for d in days if d.weekday() < 5][:23]
    users = [int(u["id"]) for u in rows.get("users", ())][:6]
    projects = [int(p["id"]) for p in rows.get("projects", ())][:8]
    invoices = [
        i
        for i in rows.get("invoices", ())
        if first.isoformat() <= str(i.get("date")) <= last.isoformat()
    ][:40]
    keys = set(stream.natural_key)
    combos: list[dict[str, Any]] = []
    if "record_id" in keys:
        combos = [
            {"kind": "invoice", "record_id": int(i["id"]), "date": str(i["date"])} for i in invoices
        ]
    elif "date" in keys:
        combos = [{"date": d.isoformat(), "user_id": u} for d in weekdays for u in users[:4]]
    elif "project_id" in keys:
        combos = [{"user_id": u, "project_id": p} for u in users[:4] for p in projects[:5]]
    else:  # per user (absences)
        combos = [{"user.id": u} for u in users]
    out = []
    for combo in combos:
        row = maker.record(stream, None, first.isoformat())
        for key, value in combo.items():
            if key == "user.id":
                row.setdefault("user", {})["id"] = value
            elif key in row or key in {c.name for c in stream.columns}:
                row[key] = value
        out.append(row)
    return out


def detail_fields(
    stream: Stream, base: Record, rows: Mapping[str, Sequence[Record]], seed: int
) -> Record:
    """A detail read's own fields for ``base`` (the record as its list serves it), made once
    for a version of the record: the references they draw depend on the account's records at
    that moment, so the caller keeps them while the record does not change."""
    version = f"{seed}:{stream.name}:{base.get('id')}:{base.get('updated_at')}"
    maker = Generator(random.Random(version), rows)
    return maker.record(stream, base.get("id"), str(base.get("updated_at") or "2026-01-01"))


def detail(
    stream: Stream, base: Record, rows: Mapping[str, Sequence[Record]], fields: Record
) -> Record:
    """What a detail read answers for ``base``: the record with the detail's own ``fields``
    (:func:`detail_fields`), stable for one version of the record; a project's report sums the
    project's activities, so it changes with them."""
    extra = copy.deepcopy(fields)
    if stream.aggregate:
        activities = [
            a
            for a in rows.get("activities", ())
            if isinstance(a.get("project"), dict) and a["project"].get("id") == base.get("id")
        ]
        hours = round(sum(float(a.get("hours") or 0) for a in activities), 2)
        extra.update(
            {
                "hours_total": hours,
                "hours_billable": round(
                    sum(float(a.get("hours") or 0) for a in activities if a.get("billable")), 2
                ),
                "costs_activities": round(hours * 95.0, 2),
                "currency": "EUR",
            }
        )
        extra.pop("id", None)
        return extra
    return {**extra, **base}


def hourly_rates(stream: Stream, rows: Mapping[str, Sequence[Record]], seed: int) -> Record:
    """The account's hourly rates: defaults, per task, per user."""
    rng = random.Random(f"{seed}:{stream.name}")
    users = list(rows.get("users", ()))[:10]
    return {
        "defaults_rates": [{"currency": "EUR", "hourly_rate": 95.0}],
        "tasks": [
            {"id": rng.randint(10**6, 10**7), "name": rng.choice(_WORDS), "rates": []}
            for _ in range(3)
        ],
        "users": [
            {
                "id": int(u["id"]),
                "full_name": f"{u.get('firstname')} {u.get('lastname')}",
                "rates": [{"currency": "EUR", "hourly_rate": rng.choice((80.0, 95.0, 120.0))}],
            }
            for u in users
        ],
    }
