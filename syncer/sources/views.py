"""Typed views over a source's raw tables: one column per documented field of ``data``.

The raw tables keep each record exactly as the API sent it (``data jsonb``); a view is what an
analyst queries: one typed column per field, ``""`` as NULL, deleted records left out. Every
value is read from ``data`` with ``->``/``->>`` and guarded, so a field the API adds later just
stays in ``data`` and a value of an unexpected shape becomes NULL instead of failing the select.

The built-in schemas' views (``moco_views``, ``moca_views``) were made by migration 0006 with
these same expressions; each vendor's ``views`` module gives its column specs and the
statements for the views of another source's schema (``<schema>_views``).
"""

from __future__ import annotations

from collections.abc import Mapping

from syncer.catalog import RAW, Stream

__all__ = ["CASTS", "COLUMN", "expression", "stream_view_sql", "view_sql"]

# The day of a YYYY-MM-DD... text (month 01-12, year >= 1: checked before) is at most the
# month's last day; evaluated only inside the CASE that checked the shape.
_DAY_FITS = (
    "substr(%(t)s, 9, 2)::int <= extract(day from make_date(left(%(t)s, 4)::int,"
    " substr(%(t)s, 6, 2)::int, 1) + interval '1 month' - interval '1 day')"
)

# How a JSON value becomes a typed column: %(j)s is the jsonb value (->), %(t)s its text (->>).
# Each guard admits only the shape the cast accepts (a JSON number, a JSON boolean, a
# YYYY-MM-DD text, ...), so "" and values of another shape become NULL. A date of the right
# shape that is not in the calendar is NULL too. [0-9], not \d, which may match other
# scripts' digits that the casts refuse.
CASTS = {
    "text": "nullif(%(t)s, '')",
    "bigint": r"case when %(t)s ~ '^-?[0-9]{1,18}$' then %(t)s::bigint end",
    "numeric": "case when jsonb_typeof(%(j)s) = 'number' then %(t)s::numeric end",
    "boolean": "case when jsonb_typeof(%(j)s) = 'boolean' then %(t)s::boolean end",
    # A date or a time of the right shape that is not in the calendar (2024-02-30, 25:00) is
    # NULL too: the month's last day is checked before the cast (see _DAY_FITS).
    "date": (
        r"case when %(t)s ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$'"
        " and left(%(t)s, 4) <> '0000'"
        " then case when " + _DAY_FITS + " then %(t)s::date end end"
    ),
    "timestamptz": (
        r"case when %(t)s ~ '^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
        r"[T ]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
        r"(Z|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)$'"
        " and left(%(t)s, 4) <> '0000'"
        " then case when " + _DAY_FITS + " then %(t)s::timestamptz end end"
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


def view_sql(view_schema: str, raw_schema: str, name: str, columns: Mapping[str, str]) -> str:
    """``create or replace view <view_schema>.<name>`` over ``<raw_schema>.<name>``: id, the
    typed ``columns`` (column -> "type [json.path]", or :data:`COLUMN`), updated_at and
    _synced_at, live records only."""
    selected = ["id"]
    selected += [
        f'"{column}"' if spec == COLUMN else f'{expression(spec, column)} as "{column}"'
        for column, spec in columns.items()
    ]
    selected += ["updated_at", "_synced_at"]
    body = ",\n       ".join(selected)
    return (
        f'create or replace view "{view_schema}"."{name}" as\nselect {body}\n'
        f'from "{raw_schema}"."{name}"\nwhere _deleted_at is null'
    )


def _typed(kind: str, path: tuple[str, ...]) -> str:
    parents = "".join(f"->'{key}'" for key in path[:-1])
    jsonb = f"data{parents}->'{path[-1]}'"
    text = f"(data{parents}->>'{path[-1]}')"
    return CASTS[kind] % {"j": jsonb, "t": text}


def stream_view_sql(view_schema: str, raw_schema: str, stream: Stream) -> str:
    """``create or replace view <view_schema>.<stream>`` over its raw table, with the catalog's
    columns in their order: a raw column taken as it is (``_parent_id`` under its view name),
    every other one read from ``data`` and guarded; records deleted at the source left out."""
    selected = []
    for column in stream.columns:
        if column.type == RAW:
            raw = column.path[0] if column.path else column.name
            selected.append(f'"{raw}"' if raw == column.name else f'"{raw}" as "{column.name}"')
        else:
            selected.append(f'{_typed(column.type, column.path)} as "{column.name}"')
    body = ",\n       ".join(selected)
    live = "" if stream.snapshots else "\nwhere _deleted_at is null"
    return (
        f'create or replace view "{view_schema}"."{stream.name}" as\nselect {body}\n'
        f'from "{raw_schema}"."{stream.name}"{live}'
    )
