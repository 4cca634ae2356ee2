"""Generate MOCO's stream catalog from MOCO's OpenAPI description.

    python -m tools.moco_catalog            # rewrites syncer/sources/moco/catalog.json
    python -m tools.moco_catalog --check    # exit 1 if the committed catalog is out of date

MOCO publishes an OpenAPI description of its API v1 (beta), linked from
https://docs.mocoapp.com/api/docs/v1 as "OpenAPI (BETA)"; ``tools/moco-openapi.json`` is the copy
this catalog was made from. When MOCO publishes a new version, replace that file, run this, and
review the catalog's diff: new lists appear as new streams, new fields as new view columns.
``tests/unit/test_moco_catalog.py`` fails while the two disagree.

What the description says decides each stream (see ``syncer/catalog.py`` for the strategies):
the query parameters it documents (``updated_after``, ``sort_by``, ``ids``, ``page``,
``per_page``, a report's ``from``/``to`` or ``year``), whether its records carry
``updated_at``, whether the answer documents ``X-Total`` and ``Link``, and the record schema,
whose fields become the typed view's columns (integers as bigint, numbers as numeric, booleans,
dates, date-times as timestamptz, strings as text, a reference ``customer: {id, ...}`` as
``customer_id``, other objects and arrays as jsonb).

What the description cannot say is below, by hand: stream names, the fixed parameters that keep
archived records listed (archived is not deleted), which webhook targets change which stream,
the report rows' natural keys, the detail reads worth having, and the columns the eight views
of release 0.2 already had (kept exactly, in their order, with new columns after them).
"""

from __future__ import annotations

import argparse
import hashlib
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson

from syncer.catalog import RAW, Catalog, Column, Parent, Period, Stream

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "tools" / "moco-openapi.json"
CATALOG = ROOT / "syncer" / "sources" / "moco" / "catalog.json"

# --- by hand ---------------------------------------------------------------------------------

# Stream names where the rule (the last path segment, prefixed by the first one in the singular
# for nested paths, "project_" for per-project lists) reads badly or collides.
NAMES: Mapping[str, str] = {
    "/contacts/people": "contacts",
    "/invoices/locked": "locked_invoices",
    "/projects/assigned": "assigned_projects",
    "/projects/expenses": "expenses",  # all projects' expenses; per project: project_expenses
    "/projects/payment_schedules": "payment_schedules",
}
SINGULAR = {"invoices": "invoice", "purchases": "purchase", "users": "user", "projects": "project"}

# Archived and deactivated records are listed too: they are not deletions.
FIXED_PARAMS: Mapping[str, Mapping[str, str]] = {
    "projects": {"include_archived": "true"},
    "companies": {"include_archived": "true"},
    "users": {"include_archived": "true"},
    "invoices": {"include_disregarded": "true"},
    "internal_hourly_rates": {"include_archived": "true", "years": "{years}"},
    "hourly_rates": {"include_archived_users": "true"},
}
# Fields that change on every read (a signed link): stored, not counted as a change.
VOLATILE: Mapping[str, tuple[str, ...]] = {"invoices": ("file_url",)}
# Fields left out of the typed view (they stay in `data`).
NOT_IN_VIEW: Mapping[str, frozenset[str]] = {"invoices": frozenset({"file_url"})}

# MOCO's WebHookTarget values and the streams each one changes. Targets without a list of
# their own (InvoiceDraft, Purchase::Order, User::HolidayRequest, User::PeriodLockOverride)
# are not applied.
WEBHOOK_TARGETS: Mapping[str, tuple[str, ...]] = {
    "Activity": ("activities",),
    "Comment": ("comments",),
    "Company": ("companies",),
    "Contact": ("contacts",),
    "Contract": ("project_contracts",),
    "Deal": ("deals",),
    "Expense": ("expenses", "project_expenses"),
    "Invoice": ("invoices",),
    "Invoice::Approval": ("approvals",),
    "Invoice::BookkeepingExport": ("invoice_bookkeeping_exports",),
    "Invoice::Payment": ("invoice_payments",),
    "InvoiceReminder": ("invoice_reminders",),
    "Offer": ("offers",),
    "PlanningEntry": ("planning_entries",),
    "Presence": ("user_presences",),
    "Project": ("projects",),
    "Project::PaymentSchedule": ("payment_schedules", "project_payment_schedules"),
    "ProjectGroup": ("project_groups",),
    "Purchase": ("purchases",),
    "Purchase::Approval": ("approvals",),
    "Purchase::BookkeepingExport": ("purchase_bookkeeping_exports",),
    "Purchase::Draft": ("purchase_drafts",),
    "Purchase::Payment": ("purchase_payments",),
    "RecurringExpense": ("recurring_expenses", "project_recurring_expenses"),
    "Schedule": ("schedules",),
    "Task": ("project_tasks",),
    "User": ("users",),
    "User::AbsenceRequest": ("user_absence_requests",),
    "User::WorkTimeAdjustment": ("user_work_time_adjustments",),
}

# A report row's key: what tells two rows of one period apart.
NATURAL_KEYS: Mapping[str, tuple[str, ...]] = {
    "report_absences": ("user.id",),
    "report_cashflow": ("kind", "record_id", "date"),
    "report_finance": ("kind", "record_id", "date"),
    "report_planned_vs_tracked": ("user_id", "project_id"),
    "report_utilization": ("date", "user_id"),
}

# How `syncer verify` counts a per-project list over every project: a top-level list holding the
# same records (its "twin"), or the field of a project's record naming them ("embedded").
TWINS: Mapping[str, str] = {
    "project_expenses": "expenses",
    "project_payment_schedules": "payment_schedules",
    "project_recurring_expenses": "recurring_expenses",
}
EMBEDDED: Mapping[str, str] = {"project_tasks": "tasks", "project_contracts": "contracts"}

# Detail reads (opt-in): (name, path, the stream whose records are read one by one, whether it
# is an aggregate of other records, read again every run).
DETAILS: tuple[tuple[str, str, str, bool], ...] = (
    ("invoice_details", "/invoices/{id}", "invoices", False),  # items, payments, reminders
    ("offer_details", "/offers/{id}", "offers", False),  # with items
    ("project_reports", "/projects/{id}/report", "projects", True),  # budget, hours, costs
)
OBJECTS = ("/account/hourly_rates",)

# The columns of the eight views of release 0.2 (migration 0006), kept exactly and in their
# order: column -> "type [json.path]", the path defaulting to the column's name.
LEGACY_VIEWS: Mapping[str, Mapping[str, str]] = {
    "activities": {
        "date": "date",
        "hours": "numeric",
        "seconds": "bigint",
        "worked_seconds": "bigint",
        "description": "text",
        "billed": "boolean",
        "billable": "boolean",
        "invoice_id": "bigint",
        "tag": "text",
        "remote_service": "text",
        "remote_id": "text",
        "remote_url": "text",
        "hourly_rate": "numeric",
        "project_id": "bigint project.id",
        "task_id": "bigint task.id",
        "task_name": "text task.name",
        "customer_id": "bigint customer.id",
        "user_id": "bigint user.id",
        "timer_started_at": "timestamptz",
        "created_at": "timestamptz",
    },
    "projects": {
        "identifier": "text",
        "name": "text",
        "active": "boolean",
        "billable": "boolean",
        "fixed_price": "boolean",
        "retainer": "boolean",
        "start_date": "date",
        "finish_date": "date",
        "color": "text",
        "currency": "text",
        "billing_variant": "text",
        "billing_address": "text",
        "billing_email_to": "text",
        "billing_email_cc": "text",
        "billing_notes": "text",
        "setting_include_time_report": "boolean",
        "budget": "numeric",
        "budget_monthly": "numeric",
        "budget_expenses": "numeric",
        "hourly_rate": "numeric",
        "info": "text",
        "tags": "text[]",
        "customer_report_url": "text",
        "custom_properties": "jsonb",
        "customer_id": "bigint customer.id",
        "deal_id": "bigint deal.id",
        "leader_id": "bigint leader.id",
        "co_leader_id": "bigint co_leader.id",
        "billing_contact_id": "bigint billing_contact.id",
        "contact_id": "bigint contact.id",
        "secondary_contact_id": "bigint secondary_contact.id",
        "project_group_id": "bigint project_group.id",
        "project_group_name": "text project_group.name",
        "tasks": "jsonb",
        "contracts": "jsonb",
        "created_at": "timestamptz",
    },
    "companies": {
        "type": "text",
        "name": "text",
        "identifier": "text",
        "website": "text",
        "email": "text",
        "billing_email_cc": "text",
        "phone": "text",
        "fax": "text",
        "address": "text",
        "country_code": "text",
        "vat_identifier": "text",
        "tags": "text[]",
        "info": "text",
        "custom_properties": "jsonb",
        "user_id": "bigint user.id",
        "intern": "boolean",
        "active": "boolean",
        "archived_on": "date",
        "currency": "text",
        "billing_tax": "numeric",
        "customer_vat": "jsonb",
        "supplier_vat": "jsonb",
        "custom_rates": "boolean",
        "include_time_report": "boolean",
        "billing_notes": "text",
        "default_discount": "numeric",
        "default_cash_discount": "numeric",
        "default_cash_discount_days": "bigint",
        "default_invoice_due_days": "bigint",
        "alternative_correspondence_language": "boolean",
        "footer": "text",
        "debit_number": "bigint",
        "projects": "jsonb",
        "created_at": "timestamptz",
    },
    "contacts": {
        "gender": "text",
        "title": "text",
        "firstname": "text",
        "lastname": "text",
        "job_position": "text",
        "mobile_phone": "text",
        "work_phone": "text",
        "work_fax": "text",
        "work_email": "text",
        "work_address": "text",
        "home_email": "text",
        "home_address": "text",
        "birthday": "date",
        "avatar_url": "text",
        "tags": "text[]",
        "custom_properties": "jsonb",
        "company_id": "bigint company.id",
        "user_id": "bigint user.id",
        "created_at": "timestamptz",
    },
    "users": {
        "firstname": "text",
        "lastname": "text",
        "active": "boolean",
        "extern": "boolean",
        "email": "text",
        "mobile_phone": "text",
        "work_phone": "text",
        "home_address": "text",
        "info": "text",
        "birthday": "date",
        "iban": "text",
        "avatar_url": "text",
        "tags": "text[]",
        "custom_properties": "jsonb",
        "unit_id": "bigint unit.id",
        "unit_name": "text unit.name",
        "role_id": "bigint role.id",
        "role_name": "text role.name",
        "created_at": "timestamptz",
    },
    "invoices": {
        "identifier": "text",
        "customer_id": "bigint",
        "project_id": "bigint",
        "offer_id": "bigint",
        "date": "date",
        "due_date": "date",
        "service_period": "text",
        "service_period_from": "date",
        "service_period_to": "date",
        "status": "text",
        "reversed": "boolean",
        "reversal_invoice_id": "bigint",
        "reversal": "boolean",
        "reversed_invoice_id": "bigint",
        "title": "text",
        "recipient_address": "text",
        "currency": "text",
        "net_total": "numeric",
        "tax": "numeric",
        "vat": "jsonb",
        "gross_total": "numeric",
        "discount": "numeric",
        "creditor_reference": "text",
        "cash_discount": "numeric",
        "cash_discount_days": "numeric",
        "debit_number": "bigint",
        "credit_number": "bigint",
        "locked": "boolean",
        "activity_hours_modified": "boolean",
        "custom_properties": "jsonb",
        "tags": "text[]",
        "debt_collection_procedure": "jsonb",
        "user_id": "bigint user.id",
        "created_at": "timestamptz",
    },
    "offers": {
        "identifier": "text",
        "invoice_id": "bigint",
        "date": "date",
        "due_date": "date",
        "title": "text",
        "recipient_address": "text",
        "currency": "text",
        "net_total": "numeric",
        "tax": "numeric",
        "vat": "jsonb",
        "gross_total": "numeric",
        "discount": "numeric",
        "status": "text",
        "tags": "text[]",
        "custom_properties": "jsonb",
        "company_id": "bigint company.id",
        "project_id": "bigint project.id",
        "deal_id": "bigint deal.id",
        "user_id": "bigint user.id",
        "offer_confirmation": "jsonb",
        "customer_approval": "jsonb",
        "created_at": "timestamptz",
    },
    "deals": {
        "name": "text",
        "status": "text",
        "reminder_date": "date",
        "closed_on": "date",
        "money": "numeric",
        "currency": "text",
        "info": "text",
        "custom_properties": "jsonb",
        "tags": "text[]",
        "user_id": "bigint user.id",
        "company_id": "bigint company.id",
        "person_id": "bigint person.id",
        "category_id": "bigint category.id",
        "category_name": "text category.name",
        "category_probability": "numeric category.probability",
        "service_period_from": "date",
        "service_period_to": "date",
        "inbox_email_address": "text",
        "created_at": "timestamptz",
    },
}

# --- reading the description -----------------------------------------------------------------


class Spec:
    """MOCO's OpenAPI description, with ``$ref``s and ``allOf`` resolved on the way."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data

    def deref(self, node: Any) -> Any:
        while isinstance(node, dict) and "$ref" in node:
            target: Any = self.data
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            node = target
        return node

    def schema(self, node: Any) -> dict[str, Any]:
        """``node`` resolved: references followed, ``allOf`` merged into one object."""
        node = self.deref(node)
        if not isinstance(node, dict):
            return {}
        if "allOf" in node:
            merged: dict[str, Any] = {"type": "object", "properties": {}}
            for part in node["allOf"]:
                part = self.schema(part)
                merged["properties"].update(part.get("properties", {}))
                if part.get("nullable"):
                    merged["nullable"] = True
            if node.get("nullable"):
                merged["nullable"] = True
            return merged
        return dict(node)

    def get(self, path: str) -> dict[str, Any]:
        return dict(self.data["paths"][path]["get"])

    def parameters(self, path: str) -> list[dict[str, Any]]:
        item = self.data["paths"][path]
        return [
            self.deref(p)
            for p in [*item.get("parameters", []), *self.get(path).get("parameters", [])]
        ]

    def answer(self, path: str) -> tuple[dict[str, Any], dict[str, Any]]:
        """The 200 answer of ``GET path``: its headers and its body's schema."""
        answer = self.deref(self.get(path)["responses"].get("200", {}))
        body = answer.get("content", {}).get("application/json", {}).get("schema", {})
        return dict(answer.get("headers", {})), self.schema(body)

    def lists(self) -> Iterator[str]:
        """Every documented list: top-level ``GET`` answering an array, and the per-project
        lists; lists under another record's id (an invoice's attachments) are not streams."""
        for path, item in self.data["paths"].items():
            if "get" not in item:
                continue
            _, body = self.answer(path)
            if body.get("type") != "array":
                continue
            params = re.findall(r"\{(\w+)\}", path)
            if not params or (path.startswith("/projects/{project_id}/") and path.count("{") == 1):
                yield path


# --- deciding --------------------------------------------------------------------------------


def stream_name(path: str) -> str:
    if path in NAMES:
        return NAMES[path]
    parts = [p for p in path.strip("/").split("/") if not p.startswith("{")]
    if path.startswith("/projects/{project_id}/"):
        return "project_" + parts[-1]
    if parts[0] in ("account",):
        parts = parts[1:]
    if len(parts) == 1:
        return parts[0]
    return f"{SINGULAR.get(parts[0], parts[0])}_{'_'.join(parts[1:])}"


def sql_type(spec: Spec, node: Any) -> str:
    """The view type of one field's schema."""
    node = spec.schema(node)
    kind, fmt = node.get("type"), node.get("format")
    if kind == "integer":
        return "bigint"
    if kind == "number":
        return "numeric"
    if kind == "boolean":
        return "boolean"
    if kind == "string":
        return {"date": "date", "date-time": "timestamptz"}.get(fmt or "", "text")
    return "jsonb"


def is_reference(spec: Spec, node: Any) -> bool:
    node = spec.schema(node)
    props = node.get("properties", {})
    return (
        node.get("type") == "object" and "id" in props and sql_type(spec, props["id"]) == "bigint"
    )


def example_type(value: Any) -> str:
    """A column type guessed from an example value: any number is numeric (an example's 1500
    may be 1500.5 in the next answer)."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "numeric"
    if isinstance(value, str):
        return "text"
    return "jsonb"


def record_columns(spec: Spec, schema: Mapping[str, Any], skip: frozenset[str]) -> list[Column]:
    """The typed columns of a record schema (or, without properties, of its example)."""
    props: Mapping[str, Any] = schema.get("properties", {})
    if not props and isinstance(schema.get("example"), dict):
        return [
            Column(name, example_type(value), (name,))
            for name, value in schema["example"].items()
            if name not in skip
        ]
    columns: list[Column] = []
    taken = set(props) | set(skip)
    for name, node in props.items():
        if name in skip:
            continue
        if is_reference(spec, node):
            column = f"{name}_id"
            if column not in taken or column == name:
                columns.append(Column(column, "bigint", (name, "id")))
                taken.add(column)
            continue
        columns.append(Column(name, sql_type(spec, node), (name,)))
    return columns


def legacy_columns(name: str) -> list[Column]:
    out = []
    for column, text in LEGACY_VIEWS[name].items():
        kind, _, path = text.partition(" ")
        out.append(Column(column, kind, tuple((path or column).split("."))))
    return out


def view_columns(
    spec: Spec, name: str, schema: Mapping[str, Any], *, stamped: bool, parent: Parent | None
) -> tuple[Column, ...]:
    skip = frozenset({"id", "updated_at"}) | NOT_IN_VIEW.get(name, frozenset())
    generated = record_columns(spec, schema, skip)
    head = [Column("id", RAW)]
    if parent is not None and parent.column not in {c.name for c in generated}:
        head.append(Column(parent.column, RAW, ("_parent_id",)))
    tail = ([Column("updated_at", RAW)] if stamped else []) + [Column("_synced_at", RAW)]
    if name in LEGACY_VIEWS:
        kept = legacy_columns(name)
        names = {c.name for c in kept}
        later = [c for c in generated if c.name not in names]
        return (*head, *kept, *tail, *later)
    return (*head, *generated, *tail)


def query_of(spec: Spec, path: str) -> tuple[frozenset[str], int | None]:
    names, most = set(), None
    for param in spec.parameters(path):
        if param.get("in") == "query":
            names.add(param["name"])
            if param["name"] == "per_page":
                most = param.get("schema", {}).get("maximum")
    return frozenset(names), most


def targets_of(name: str) -> tuple[str, ...]:
    return tuple(t for t, streams in WEBHOOK_TARGETS.items() if name in streams)


def list_stream(spec: Spec, path: str) -> Stream:
    name = stream_name(path)
    headers, body = spec.answer(path)
    item = spec.schema(body.get("items", {}))
    props = item.get("properties", {})
    query, most = query_of(spec, path)
    stamped = "updated_at" in props
    parent = None
    match = re.fullmatch(r"/projects/\{(\w+)\}/\w+", path)
    if match:
        parent = Parent(
            "projects", match.group(1), "project_id", TWINS.get(name), EMBEDDED.get(name)
        )
    if path.startswith("/report/"):
        strategy = "report"
        unit = "year" if "year" in query else "month"
        period: Period | None = Period(unit, ("year",) if unit == "year" else ("from", "to"))
        deletions = "none"
    else:
        period = None
        if "updated_after" in query:
            strategy = "sorted" if "sort_by" in query and stamped else "unsorted"
            deletions = "ids" if "ids" in query else "listing"
        else:
            strategy = "listing" if "page" in query else "unpaged"
            deletions = "sync"
    snapshot = strategy == "report"
    columns = view_columns(spec, name, item, stamped=stamped and not snapshot, parent=parent)
    if snapshot:
        columns = (
            Column("period_start", RAW),
            Column("period_end", RAW),
            Column("key", RAW),
            *(c for c in columns if c.name not in ("id",)),
        )
    return Stream(
        name=name,
        path=path,
        title=spec.get(path).get("summary", ""),
        strategy=strategy,
        key_type="text" if snapshot else "bigint",
        replication_key="updated_at" if stamped and not snapshot else None,
        query=query,
        params=dict(FIXED_PARAMS.get(name, {})),
        paged_headers="X-Total" in headers,
        max_per_page=most,
        volatile=VOLATILE.get(name, ()),
        deletions=deletions,
        webhook_targets=targets_of(name),
        # A project's list with a twin is opt-in: the twin holds the same records in one list.
        enabled=not snapshot and (parent is None or parent.twin is None),
        parent=parent,
        period=period,
        natural_key=NATURAL_KEYS.get(name, ()),
        columns=columns,
    )


def object_stream(spec: Spec, path: str) -> Stream:
    name = stream_name(path)
    _, body = spec.answer(path)
    query, _ = query_of(spec, path)
    columns = record_columns(spec, body, frozenset({"id"}))
    return Stream(
        name=name,
        path=path,
        title=spec.get(path).get("summary", ""),
        strategy="object",
        key_type="text",
        replication_key=None,
        query=query,
        params=dict(FIXED_PARAMS.get(name, {})),
        paged_headers=False,
        deletions="none",
        webhook_targets=targets_of(name),
        enabled=True,
        columns=(Column("id", RAW), *columns, Column("_synced_at", RAW)),
    )


def detail_stream(spec: Spec, name: str, path: str, of: str, aggregate: bool) -> Stream:
    _, body = spec.answer(path)
    columns = record_columns(spec, body, frozenset({"id", "updated_at"}))
    return Stream(
        name=name,
        path=path,
        title=spec.get(path).get("summary", ""),
        strategy="detail",
        replication_key="updated_at",
        query=query_of(spec, path)[0],
        paged_headers=False,
        deletions="parent",
        enabled=False,
        detail_of=of,
        aggregate=aggregate,
        columns=(Column("id", RAW), *columns, Column("updated_at", RAW), Column("_synced_at", RAW)),
    )


# The order streams are listed and synced in: the eight of release 0.2 first, as they were.
FIRST = ("activities", "projects", "companies", "contacts", "users", "invoices", "offers", "deals")


def kept_columns(stream: Stream, previous: Catalog | None) -> Stream:
    """``stream`` with the columns its view had in the ``previous`` catalog first, in their
    order, and new ones after them: a view only ever grows at its end, so the warehouse
    replaces it in place (``create or replace view``) and what an analyst built on it stays.
    A field the description no longer has keeps its column (it reads NULL)."""
    if previous is None or stream.name not in previous:
        return stream
    before = previous[stream.name].columns
    names = {c.name for c in before}
    return replace(stream, columns=(*before, *(c for c in stream.columns if c.name not in names)))


def generate(raw: bytes, previous: Catalog | None = None) -> Catalog:
    """The catalog of the OpenAPI description ``raw`` (its bytes, for the digest), keeping the
    view columns of the ``previous`` catalog (the committed one) in their order."""
    data = orjson.loads(raw)
    spec = Spec(data)
    streams = [list_stream(spec, path) for path in spec.lists()]
    streams += [object_stream(spec, path) for path in OBJECTS]
    streams += [detail_stream(spec, *detail) for detail in DETAILS]
    streams = [kept_columns(s, previous) for s in streams]
    rank = {name: i for i, name in enumerate(FIRST)}
    streams.sort(key=lambda s: (rank.get(s.name, len(FIRST)), s.parent is not None, s.name))
    names = {s.name for s in streams}
    unknown = {s for targets in WEBHOOK_TARGETS.values() for s in targets} - names
    if unknown:
        raise ValueError(f"WEBHOOK_TARGETS names streams the description lacks: {unknown}")
    documented = set(spec.schema(data["components"]["schemas"]["WebHookTarget"]).get("enum", ()))
    if set(WEBHOOK_TARGETS) - documented:
        raise ValueError(f"targets MOCO does not document: {set(WEBHOOK_TARGETS) - documented}")
    info = data.get("info", {})
    origin = {
        "title": info.get("title", ""),
        "version": info.get("version", ""),
        "documentation": "https://docs.mocoapp.com/api/docs/v1",
        "sha256": hashlib.sha256(raw).hexdigest(),
    }
    return Catalog("MOCO", tuple(streams), origin)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.moco_catalog", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 if stale")
    args = parser.parse_args(argv)
    previous = Catalog.load(CATALOG) if CATALOG.exists() else None
    text = generate(SPEC.read_bytes(), previous).dumps()
    if args.check:
        if CATALOG.read_bytes() != text:
            print(f"{CATALOG} is out of date: run python -m tools.moco_catalog", file=sys.stderr)
            return 1
        print(f"{CATALOG} matches {SPEC.name}")
        return 0
    CATALOG.write_bytes(text)
    catalog = Catalog.from_json(orjson.loads(text))
    print(f"wrote {CATALOG}: {len(catalog)} streams")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
