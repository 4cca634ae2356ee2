"""The SQL models that say what MoEngage gets, the defaults that ship, and their checks.

A model is a query over the warehouse. Its columns are fixed per model
(docs/vendors/moengage.md); anything else about it is the user's. The defaults suit a MOCO
customer:

- **users**: every contact (``moco-contact-<id>``) and every company of type customer
  (``moco-company-<id>``). MOCO ids never change and are never reused, unlike e-mail addresses,
  so they make stable MoEngage ``customer_id`` values; the e-mail goes in as an attribute.
- **devices**: none (MOCO knows no devices); a model over your app's data can add them.
- **events**: business events with keys derived from the record and the state it reached, so
  the same business event always has the same key: an invoice becoming paid
  (``moco-invoice-paid-<id>``), an offer accepted, a deal won or lost, a project created.
  Company events go to the company's user; the deal's contact person also gets deal events.
  Only customers the users model sends get events.
"""

from __future__ import annotations

from syncer.destinations.base import INTEGER, JSON, TEXT, TIMESTAMP, Column

USERS = """
select 'moco-contact-' || c.id as customer_id,
       jsonb_strip_nulls(jsonb_build_object(
           'first_name', nullif(c.data->>'firstname', ''),
           'last_name', nullif(c.data->>'lastname', ''),
           'name', nullif(concat_ws(' ', c.data->>'firstname', c.data->>'lastname'), ''),
           'email', nullif(c.data->>'work_email', ''),
           'mobile', nullif(c.data->>'mobile_phone', ''),
           'gender', case c.data->>'gender' when 'F' then 'female' when 'M' then 'male' end,
           'job_position', nullif(c.data->>'job_position', ''),
           'company', c.data #>> '{company,name}',
           'tags', c.data->'tags',
           'moco_contact_id', c.id,
           'moco_company_id', (c.data #>> '{company,id}')::bigint,
           'moco_created_at', c.data->>'created_at'
       )) as attributes
from moco.contacts c
where c._deleted_at is null
union all
select 'moco-company-' || co.id,
       jsonb_strip_nulls(jsonb_build_object(
           'name', co.data->>'name',
           'email', nullif(co.data->>'email', ''),
           'website', nullif(co.data->>'website', ''),
           'country', nullif(co.data->>'country_code', ''),
           'customer_identifier', co.data->>'identifier',
           'active', (co.data->>'active')::boolean,
           'tags', co.data->'tags',
           'moco_company_id', co.id
       ))
from moco.companies co
where co._deleted_at is null and co.data->>'type' = 'customer'
"""

DEVICES = """
select null::text as customer_id, null::text as device_id, null::jsonb as attributes
where false
"""

EVENTS = """
select e.* from (
select 'moco-invoice-paid-' || i.id as event_key,
       'moco-company-' || (i.data->>'customer_id') as customer_id,
       'Invoice Paid' as action,
       i.updated_at as occurred_at,
       jsonb_strip_nulls(jsonb_build_object(
           'invoice_id', i.id, 'identifier', i.data->>'identifier', 'title', i.data->>'title',
           'gross_total', (i.data->>'gross_total')::numeric, 'currency', i.data->>'currency',
           'project_id', (i.data->>'project_id')::bigint
       )) as attributes
from moco.invoices i
where i._deleted_at is null and i.data->>'status' = 'paid' and i.data->>'customer_id' is not null
union all
select 'moco-offer-accepted-' || o.id, 'moco-company-' || (o.data #>> '{company,id}'),
       'Offer Accepted', o.updated_at,
       jsonb_strip_nulls(jsonb_build_object(
           'offer_id', o.id, 'identifier', o.data->>'identifier', 'title', o.data->>'title',
           'net_total', (o.data->>'net_total')::numeric, 'currency', o.data->>'currency'
       ))
from moco.offers o
where o._deleted_at is null and o.data->>'status' = 'accepted'
  and o.data #>> '{company,id}' is not null
union all
select 'moco-deal-' || (d.data->>'status') || '-' || d.id || '-' || who.kind, who.customer_id,
       case d.data->>'status' when 'won' then 'Deal Won' else 'Deal Lost' end,
       least(d.updated_at, coalesce(nullif(d.data->>'closed_on', '')::date::timestamptz,
                                    d.updated_at)),
       jsonb_strip_nulls(jsonb_build_object(
           'deal_id', d.id, 'name', d.data->>'name', 'money', (d.data->>'money')::numeric,
           'currency', d.data->>'currency', 'category', d.data #>> '{category,name}'
       ))
from moco.deals d
cross join lateral (values
    ('company', 'moco-company-' || (d.data #>> '{company,id}')),
    ('person', 'moco-contact-' || (d.data #>> '{person,id}'))
) as who(kind, customer_id)
where d._deleted_at is null and d.data->>'status' in ('won', 'lost')
  and who.customer_id is not null
union all
select 'moco-project-created-' || p.id, 'moco-company-' || (p.data #>> '{customer,id}'),
       'Project Created', (p.data->>'created_at')::timestamptz,
       jsonb_strip_nulls(jsonb_build_object(
           'project_id', p.id, 'identifier', p.data->>'identifier', 'name', p.data->>'name',
           'billable', (p.data->>'billable')::boolean, 'currency', p.data->>'currency'
       ))
from moco.projects p
where p._deleted_at is null and p.data #>> '{customer,id}' is not null
) as e
-- Only customers the users model sends: MoEngage would create bare users for the others.
where e.customer_id like 'moco-contact-%'
   or exists (select 1 from moco.companies co
              where 'moco-company-' || co.id = e.customer_id
                and co.data->>'type' = 'customer' and co._deleted_at is null)
"""

DEFAULTS = {"users": USERS, "devices": DEVICES, "events": EVENTS}

COLUMNS: dict[str, tuple[Column, ...]] = {
    "users": (
        Column("customer_id", TEXT),
        Column("attributes", JSON),
        Column("platforms", JSON, False),
    ),
    "devices": (
        Column("customer_id", TEXT),
        Column("device_id", TEXT),
        Column("attributes", JSON),
    ),
    "events": (
        Column("event_key", TEXT),
        Column("customer_id", TEXT),
        Column("action", TEXT),
        Column("occurred_at", TIMESTAMP),
        Column("attributes", JSON),
        Column("platform", TEXT, False),
        Column("app_version", TEXT, False),
        Column("user_timezone_offset", INTEGER, False),
        Column("device_id", TEXT, False),
    ),
}


def model_sql(model: str, configured: str | None) -> str:
    """The model's SQL: the configured one, or the default; without a trailing ';'."""
    return (configured or DEFAULTS[model]).strip().rstrip(";").strip()
