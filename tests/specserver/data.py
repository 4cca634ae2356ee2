"""Values from a JSON schema: deterministic by seed, plausible enough to be stored and typed.

Ids are large and never sequential. A nested reference (``"user": {"id", ...}``) or a field
``*_id`` whose name says what it points at gets the id of a record of that list (:data:`REFS`),
so the data set holds together (an activity's project exists). Timestamps are ISO 8601 UTC in
whole seconds (``2026-01-15T09:00:00Z``), as the spec's examples are.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = ["REFS", "Generator", "iso", "new_id"]

Schema = dict[str, Any]
Resolve = Callable[[Any], Any]

# What a nested object or an `<name>_id` field refers to, by its name.
_USERS = (
    "user approver approver2 creator processed_by assigned_to created_by responsible "
    "responsible_user leader co_leader selected_approver approver_user creator_user "
    "internal_contact"
)
REFS: dict[str, str] = {
    **dict.fromkeys(_USERS.split(), "/users"),
    **dict.fromkeys(["company", "customer", "supplier"], "/companies"),
    "project": "/projects",
    "deal": "/deals",
    "invoice": "/invoices",
    "offer": "/offers",
    "unit": "/units",
    "contact": "/contacts/people",
    "person": "/contacts/people",
    "project_group": "/projects/groups",
    "revenue_category": "/revenue_categories",
    "purchase": "/purchases",
    "deal_category": "/deal_categories",
    "letter_paper": "/letter_papers",
    "planned_purchase": "/planned_purchases",
}

WORDS = (  # noqa: SIM905
    "Atlas Birch Cobalt Delta Ember Fjord Granite Harbor Iris Juniper Kestrel Lumen Meridian "
    "Nimbus Orchid Pioneer Quartz Ridge Summit Tundra Umber Vertex Willow Xenon Yarrow Zephyr "
    "Müller Søren Zoë Łódź"
).split()
ODD = ('Quote "this"', "back\\slash", "tab\there", "line\nbreak", "emoji 🚀", "", "  ")
EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
MAX_DEPTH = 5


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_id(rng: random.Random, taken: set[int]) -> int:
    """A fresh large id, unused by any list (ids are never sequential)."""
    while True:
        candidate = rng.randrange(100_000_000, 4_000_000_000)
        if candidate not in taken:
            taken.add(candidate)
            return candidate


class Generator:
    """Values for schemas, drawn from ``rng``; references from ``pools`` (list -> ids)."""

    def __init__(
        self,
        rng: random.Random,
        resolve: Resolve,
        pools: Mapping[str, Sequence[int]],
        *,
        span: tuple[date, date] | None = None,
    ) -> None:
        self.rng = rng
        self.resolve = resolve
        self.pools = pools
        self.span = span  # dates fall in it (a report's period), else 2024..2026

    # --- scalars ----------------------------------------------------------------------------

    def day(self) -> date:
        if self.span is not None:
            first, last = self.span
            return first + timedelta(days=self.rng.randrange((last - first).days + 1))
        return EPOCH.date() + timedelta(days=self.rng.randrange(900))

    def moment(self) -> datetime:
        return EPOCH + timedelta(seconds=self.rng.randrange(900 * 86400))

    def text(self, name: str, schema: Schema) -> str:
        fmt = schema.get("format")
        rng = self.rng
        if fmt == "date":
            return self.day().isoformat()
        if fmt == "date-time":
            return iso(self.moment())
        if fmt == "email" or name.endswith("email"):
            return f"{rng.choice(WORDS).lower()}.{rng.randrange(10_000)}@example.com"
        if fmt in ("uri", "url") or name.endswith(("url", "website")):
            return f"https://example.com/{name}/{rng.randrange(10**9)}"
        if name in ("currency",):
            return rng.choice(("EUR", "CHF", "USD"))
        if name.endswith("color"):
            return f"#{rng.randrange(16**6):06x}"
        if rng.random() < 0.04:
            return rng.choice(ODD)
        return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3)))

    def integer(self, name: str, schema: Schema) -> int:
        rng = self.rng
        if name.endswith("_id"):
            pool = self.pools.get(REFS.get(name[:-3], ""))
            return rng.choice(pool) if pool else rng.randrange(100_000, 999_999_999)
        if name in ("id",):
            return rng.randrange(100_000, 999_999_999)
        low = int(schema.get("minimum", 0))
        high = int(schema.get("maximum", max(low, 0) + 5000))
        if name == "year":
            return rng.randint(2024, 2026)
        if name == "month":
            return rng.randint(1, 12)
        return rng.randint(low, high)

    def number(self, schema: Schema, name: str = "") -> float | int:
        low = float(schema.get("minimum", 0))
        high = float(schema.get("maximum", low + (12 if "hours" in name else 10_000)))
        value = round(self.rng.uniform(low, high), 2)
        return int(value) if self.rng.random() < 0.2 else value

    # --- any schema -------------------------------------------------------------------------

    def value(self, schema: Any, name: str = "", depth: int = 0) -> Any:
        schema = self.resolve(schema)
        if not isinstance(schema, dict):
            return None
        if schema.get("nullable") and name not in ("id",) and self.rng.random() < 0.1:
            return None
        for alternatives in ("oneOf", "anyOf"):
            if alternatives in schema:  # the first variant: the list's short form
                return self.value(schema[alternatives][0], name, depth)
        if "enum" in schema:
            return self.rng.choice(schema["enum"])
        kind = schema.get("type")
        if kind is None:
            kind = "object" if "properties" in schema or "example" in schema else "string"
        if kind == "object":
            return self.object(schema, name, depth)
        if kind == "array":
            if depth >= MAX_DEPTH:
                return []
            return [
                self.value(schema.get("items", {}), _singular(name), depth + 1)
                for _ in range(self.rng.randint(0, 3))
            ]
        if kind == "integer":
            return self.integer(name, schema)
        if kind == "number":
            return self.number(schema, name)
        if kind == "boolean":
            return self.rng.random() < (0.85 if name == "active" else 0.5)
        return self.text(name, schema)

    def object(self, schema: Schema, name: str, depth: int) -> dict[str, Any]:
        properties: dict[str, Any] = schema.get("properties", {})
        if not properties and isinstance(schema.get("example"), dict):
            shaped: dict[str, Any] = self.like(schema["example"], depth)
            return shaped
        if not properties:
            if schema.get("additionalProperties") and depth < MAX_DEPTH:
                return {self.rng.choice(WORDS): self.text("", {}) for _ in range(2)}
            return {}
        if depth >= MAX_DEPTH:
            return {}
        out = {key: self.value(sub, key, depth + 1) for key, sub in properties.items()}
        if "id" in out:
            pool = self.pools.get(REFS.get(name, ""))
            out["id"] = self.rng.choice(pool) if pool else self.rng.randrange(100_000, 999_999_999)
        return out

    def like(self, example: Any, depth: int = 0) -> Any:
        """A value of the example's shape (a schema that only gives an example)."""
        if isinstance(example, bool):
            return self.rng.random() < 0.5
        if isinstance(example, int):
            return self.rng.randrange(0, 100_000)
        if isinstance(example, float):
            return round(self.rng.uniform(0, 100_000), 2)
        if isinstance(example, str):
            return example if len(example) <= 3 else self.text("", {})
        if isinstance(example, list):
            if not example or depth >= MAX_DEPTH:
                return []
            return [self.like(example[0], depth + 1) for _ in range(self.rng.randint(0, 4))]
        if isinstance(example, dict):
            return {k: self.like(v, depth + 1) for k, v in example.items()}
        return None


def _singular(name: str) -> str:
    return name[:-1] if name.endswith("s") else name
