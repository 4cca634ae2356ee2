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

__all__ = ["CASTS", "COLUMN", "expression", "view_sql"]

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
