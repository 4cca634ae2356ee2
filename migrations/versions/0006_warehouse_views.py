"""Typed warehouse views: one per stream in schemas moco_views and moca_views.

The raw tables keep each record exactly as the API sent it (``data jsonb``); these views are
what an analyst queries: one typed column per documented field, foreign keys pulled out of
nested references, ``""`` as NULL, deleted records left out. Every value is read from ``data``
with ``->``/``->>`` and guarded, so a field the API adds later just stays in ``data`` and a
value of an unexpected shape becomes NULL instead of failing the whole select.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# How a JSON value becomes a typed column: %(j)s is the jsonb value (->), %(t)s its text (->>).
# Each guard admits only the shape the cast accepts (a JSON number, a JSON boolean, a
# YYYY-MM-DD text, ...), so "" and values of another shape become NULL. A date of the right
# shape that is not in the calendar (2024-02-30) still fails; no API sends one. [0-9], not \d,
# which may match other scripts' digits that the casts refuse.
CASTS = {
    "text": "nullif(%(t)s, '')",
    "bigint": r"case when %(t)s ~ '^-?[0-9]{1,18}$' then %(t)s::bigint end",
    "numeric": "case when jsonb_typeof(%(j)s) = 'number' then %(t)s::numeric end",
    "boolean": "case when jsonb_typeof(%(j)s) = 'boolean' then %(t)s::boolean end",
    "date": r"case when %(t)s ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}$' then %(t)s::date end",
    "timestamptz": (
        r"case when %(t)s ~ '^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?"
        r"(Z|[+-][0-9]{2}(:?[0-9]{2})?)$'"
        " then %(t)s::timestamptz end"
    ),
    # MOCA: int64 milliseconds since the epoch (UTC).
    "epoch_ms": (
        r"case when %(t)s ~ '^[0-9]{1,15}$'"
        " then timestamptz 'epoch' + %(t)s::bigint * interval '1 millisecond' end"
    ),
    "text[]": (
        "case when jsonb_typeof(%(j)s) = 'array'"
        " then array(select jsonb_array_elements_text(%(j)s)) end"
    ),
    "jsonb": """nullif(nullif(%(j)s, 'null'), '""')""",
}
COLUMN = "column"  # a column of the raw table, taken as it is

# Frozen as they were when this migration was written. Per view: column -> "type [json.path]",
# the path defaulting to the column's name. References to a synced stream become `<name>_id`;
# references to things without a stream of their own (tasks, units, roles, deal categories)
# also keep their name. Every view also has id, updated_at and _synced_at from the raw table.
# Left out: fields only the single GET returns (the sync reads lists), legacy 2022 duplicates
# (labels, billing_vat, internal_contact), invoices' file_url (a link that expires in minutes);
# all of them stay in `data`.
MOCO_VIEWS: dict[str, dict[str, str]] = {
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

# MOCA: text ids, camelCase keys, user-editable fields under `config`. The trigger/action types
# and the parsed segment query are the raw table's columns (computed on the way in, where
# `@type` or `type` and invalid JSON text are handled). Apps' appSecret is never stored.
MOCA_VIEWS: dict[str, dict[str, str]] = {
    "apps": {
        "account_id": "text accountId",
        "name": "text config.name",
        "description": "text config.description",
        "app_url": "text config.appUrl",
        "version": "text config.version",
        "category": "text config.category",
        "icon_url": "text config.iconUrl",
        "approx_app_size": "text config.approxAppSize",
        "production": "boolean config.production",
        "targets": "jsonb",
        "created_at": "epoch_ms createdAt",
    },
    "beacons": {
        "account_id": "text accountId",
        "place_id": "text placeId",
        "zone_id": "text zoneId",
        "name": "text config.name",
        "description": "text config.description",
        "uuid": "text",
        "major": "bigint",
        "minor": "bigint",
        "code": "text",
        "floor": "bigint",
        "provider": "text",
        "latitude": "numeric location.latitude",
        "longitude": "numeric location.longitude",
        "altitude": "numeric location.altitude",
        "accuracy": "numeric location.accuracy",
        "settings": "jsonb",
        "created_at": "epoch_ms createdAt",
    },
    "places": {
        "account_id": "text accountId",
        "name": "text config.name",
        "description": "text config.description",
        "geofence_type": "text geoFence.type",
        "geofence_latitude": "numeric geoFence.latitude",
        "geofence_longitude": "numeric geoFence.longitude",
        "geofence_radius": "numeric geoFence.radius",
        "zone_ids": "text[] zones",
        "created_at": "epoch_ms createdAt",
    },
    "zones": {
        "place_id": "text placeId",
        "name": "text config.name",
        "category": "text config.category",
        "floor_number": "bigint config.floorNumber",
        "short_id": "text config.shortId",
        "enabled": "boolean config.enabled",
        "beacon_ids": "text[] beacons",
        "created_at": "epoch_ms createdAt",
    },
    "geofences": {
        "account_id": "text accountId",
        "place_id": "text placeId",
        "name": "text config.name",
        "latitude": "numeric",
        "longitude": "numeric",
        "radius": "numeric",
        "created_at": "epoch_ms createdAt",
    },
    "segments": {
        "app_id": "text appId",
        "name": "text config.name",
        "description": "text config.description",
        "query_text": "text config.query",
        "query": COLUMN,
        "created_at": "epoch_ms createdAt",
    },
    "campaigns": {
        "app_id": "text appId",
        "name": "text config.name",
        "description": "text config.description",
        "type": "text config.type",
        "segment_id": "text config.segmentId",
        "group_id": "text config.groupId",
        "start_at": "epoch_ms config.startAt",
        "end_at": "epoch_ms config.endAt",
        "display_cap": "bigint config.displayCap",
        "display_wait_ms": "bigint config.displayWaitMs",
        "recurrence": "jsonb config.recurrence",
        "status": "text",
        "status_at": "epoch_ms statusAt",
        "created_at": "epoch_ms createdAt",
    },
    "experiences": {
        "campaign_id": "text campaignId",
        "name": "text config.name",
        "description": "text config.description",
        "repeat": "text config.repeat",
        "enabled": "boolean config.enabled",
        "trigger_type": COLUMN,
        "action_type": COLUMN,
        "trigger": "jsonb",
        "action": "jsonb",
        "created_at": "epoch_ms createdAt",
    },
    "notifications": {
        "campaign_id": "text campaignId",
        "name": "text config.name",
        "trigger_type": COLUMN,
        "action_type": COLUMN,
        "segment_id": "text audience.segmentId",
        "platforms": "text[] audience.platforms",
        "draft": "boolean options.draft",
        "dry_run": "boolean options.dryRun",
        "state": "text status.state",
        "state_at": "epoch_ms status.stateAt",
        "recipients": "bigint status.recipients",
        "trigger": "jsonb",
        "audience": "jsonb",
        "action": "jsonb",
        "created_at": "epoch_ms createdAt",
    },
}

# Analytics buckets have no id and are never deleted: the raw table's columns, renamed.
MOCA_ANALYTICS = """
create view moca_views.analytics as
select app_id, metric, "interval", bucket_start, nullif(key, '') as geohash, value, _synced_at
from moca.analytics
"""


def field(spec: str, column: str) -> tuple[str, tuple[str, ...]]:
    """A column's type and the path of keys to its value in ``data``."""
    kind, _, path = spec.partition(" ")
    return kind, tuple((path or column).split("."))


def expression(spec: str, column: str) -> str:
    """The SQL reading a column's value from ``data``."""
    kind, path = field(spec, column)
    parents = "".join(f"->'{key}'" for key in path[:-1])
    jsonb = f"data{parents}->'{path[-1]}'"
    text = f"(data{parents}->>'{path[-1]}')"
    return CASTS[kind] % {"j": jsonb, "t": text}


def view_sql(schema: str, raw_schema: str, name: str, columns: dict[str, str]) -> str:
    selected = ["id"]
    selected += [
        f'"{column}"' if spec == COLUMN else f'{expression(spec, column)} as "{column}"'
        for column, spec in columns.items()
    ]
    selected += ["updated_at", "_synced_at"]
    body = ",\n       ".join(selected)
    return (
        f"create view {schema}.{name} as\nselect {body}\n"
        f"from {raw_schema}.{name}\nwhere _deleted_at is null"
    )


def upgrade() -> None:
    for schema, raw_schema, views in (
        ("moco_views", "moco", MOCO_VIEWS),
        ("moca_views", "moca", MOCA_VIEWS),
    ):
        op.execute(f"create schema {schema}")
        for name, columns in views.items():
            op.execute(view_sql(schema, raw_schema, name, columns))
    op.execute(MOCA_ANALYTICS)


def downgrade() -> None:
    # No cascade: a view someone built on these makes the downgrade stop and say so.
    op.execute("drop view moca_views.analytics")
    for schema, views in (("moca_views", MOCA_VIEWS), ("moco_views", MOCO_VIEWS)):
        for name in views:
            op.execute(f"drop view {schema}.{name}")
        op.execute(f"drop schema {schema}")
