"""What ``syncer verify`` reads from the warehouse and what it records.

The warehouse's side of each comparison: live rows (not marked deleted) counted above a time,
or per parent; the ids in a window of ``updated_at``; which of some ids are live. And the
completeness report: one ``syncer.verifications`` row per verify run and stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncer.store.types import Connection

__all__ = [
    "NONE_STALE",
    "Stale",
    "Verification",
    "embedded_counts",
    "latest",
    "live_among",
    "live_in",
    "live_per_parent",
    "middle_time",
    "newest_times",
    "record",
    "stamped_at",
    "stored_above",
]


def _table(schema: str, table: str) -> str:
    return f'"{schema}"."{table}"'


@dataclass(frozen=True)
class Stale:
    """Rows the counts leave out: those of ``ids`` stamped at or before ``top``, records the
    source has changed since (it lists them after ``top``: the stored row is an older version,
    which the source no longer holds at or before ``top``)."""

    ids: Sequence[int | str] = ()
    top: datetime | None = None
    text_ids: bool = False

    def clause(self, args: list[Any]) -> str:
        """`` and not (...)`` for a where clause, its values appended to ``args``."""
        if not self.ids or self.top is None:
            return ""
        kind = "text" if self.text_ids else "bigint"
        args.append([str(k) if self.text_ids else int(k) for k in self.ids])
        args.append(self.top)
        n = len(args)
        return f" and not (id = any(${n - 1}::{kind}[]) and updated_at <= ${n})"


NONE_STALE = Stale()


async def stored_above(
    conn: Connection,
    schema: str,
    table: str,
    after: datetime | None,
    stale: Stale = NONE_STALE,
) -> int:
    """Live rows whose ``updated_at`` is after ``after`` (None: every live row), but the
    ``stale``."""
    args: list[Any] = [after] if after is not None else []
    where = "_deleted_at is null" + (" and updated_at > $1" if after is not None else "")
    where += stale.clause(args)
    value = await conn.fetchval(
        f"select count(*) from {_table(schema, table)} where {where}", *args
    )
    return int(value or 0)


async def newest_times(
    conn: Connection,
    schema: str,
    table: str,
    below: datetime,
    offsets: Sequence[int],
    stale: Stale = NONE_STALE,
) -> list[datetime]:
    """For each ``k`` of ``offsets``: the ``updated_at`` of the ``k``-th newest live row at or
    before ``below`` (those there are, but the ``stale``), newest first."""
    args: list[Any] = [below, list(offsets)]
    where = "_deleted_at is null and updated_at <= $1" + stale.clause(args)
    rows = await conn.fetch(
        f"select (select updated_at from {_table(schema, table)} where {where}"
        " order by updated_at desc offset k limit 1) as t"
        " from unnest($2::int[]) as k",
        *args,
    )
    return [r["t"] for r in rows if r["t"] is not None]


async def middle_time(
    conn: Connection,
    schema: str,
    table: str,
    lower: datetime | None,
    upper: datetime,
    stale: Stale = NONE_STALE,
) -> datetime | None:
    """The ``updated_at`` of the middle live row with ``updated_at`` in ``(lower, upper]``
    (``lower`` None: from the first), but the ``stale``."""
    args: list[Any] = [lower, upper]
    within = (
        "_deleted_at is null and updated_at <= $2 and ($1::timestamptz is null or updated_at > $1)"
    ) + stale.clause(args)
    value = await conn.fetchval(
        f"select updated_at from {_table(schema, table)} where {within} order by updated_at"
        f" offset (select count(*) / 2 from {_table(schema, table)} where {within}) limit 1",
        *args,
    )
    return value if isinstance(value, datetime) else None


async def stamped_at(conn: Connection, schema: str, table: str, at: datetime) -> bool:
    """Whether a live row is stamped exactly ``at``."""
    return bool(
        await conn.fetchval(
            f"select exists (select from {_table(schema, table)}"
            " where _deleted_at is null and updated_at = $1)",
            at,
        )
    )


async def live_in(
    conn: Connection,
    schema: str,
    table: str,
    lower: datetime | None,
    upper: datetime | None,
    stale: Stale = NONE_STALE,
) -> list[int | str]:
    """The ids of live rows with ``updated_at`` in ``(lower, upper]`` (None: unbounded), but
    the ``stale``."""
    where = ["_deleted_at is null"]
    args: list[Any] = []
    if lower is not None:
        args.append(lower)
        where.append(f"updated_at > ${len(args)}")
    if upper is not None:
        args.append(upper)
        where.append(f"updated_at <= ${len(args)}")
    rows = await conn.fetch(
        f"select id from {_table(schema, table)} where {' and '.join(where)}"
        f"{stale.clause(args)} order by id",
        *args,
    )
    return [r["id"] for r in rows]


async def live_among(
    conn: Connection, schema: str, table: str, keys: Sequence[int | str], *, text_ids: bool
) -> set[int | str]:
    """Which of ``keys`` are live rows."""
    if not keys:
        return set()
    kind = "text" if text_ids else "bigint"
    rows = await conn.fetch(
        f"select id from {_table(schema, table)} where id = any($1::{kind}[])"
        " and _deleted_at is null",
        [str(k) if text_ids else int(k) for k in keys],
    )
    return {r["id"] for r in rows}


async def live_per_parent(conn: Connection, schema: str, table: str) -> dict[str, int]:
    """A per-parent list's live rows, counted per parent record."""
    rows = await conn.fetch(
        f"select _parent_id::text as parent, count(*) as n from {_table(schema, table)}"
        " where _deleted_at is null and _parent_id is not null group by _parent_id"
    )
    return {r["parent"]: int(r["n"]) for r in rows}


async def embedded_counts(conn: Connection, schema: str, table: str, field: str) -> dict[str, int]:
    """Per live record of ``table``, the length of its ``data -> field`` list (the children
    its list entry names, e.g. a project's tasks)."""
    rows = await conn.fetch(
        f"select id::text as id, case when jsonb_typeof(data -> $1) = 'array'"
        f" then jsonb_array_length(data -> $1) else 0 end as n"
        f" from {_table(schema, table)} where _deleted_at is null",
        field,
    )
    return {r["id"]: int(r["n"]) for r in rows}


@dataclass(frozen=True)
class Verification:
    """One stream's completeness report, as ``syncer.verifications`` keeps it."""

    source: str
    stream: str
    outcome: str  # verified, repaired, differs, failed, interrupted, not_verified
    method: str
    source_count: int | None
    warehouse_count: int | None
    missing: int
    extra: int
    repaired: int
    unrepaired: int
    requests: int
    error: str | None
    verified_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "verified_at": self.verified_at.isoformat() if self.verified_at else None,
            "outcome": self.outcome,
            "method": self.method,
            "source_count": self.source_count,
            "warehouse_count": self.warehouse_count,
            "missing": self.missing,
            "extra": self.extra,
            "repaired": self.repaired,
            "unrepaired": self.unrepaired,
            "requests": self.requests,
            "error": self.error,
        }


async def record(conn: Connection, run_id: int, report: Verification) -> None:
    await conn.execute(
        """
        insert into syncer.verifications (run_id, source, stream, outcome, method,
            source_count, warehouse_count, missing, extra, repaired, unrepaired, requests, error)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
        """,
        run_id,
        report.source,
        report.stream,
        report.outcome,
        report.method,
        report.source_count,
        report.warehouse_count,
        report.missing,
        report.extra,
        report.repaired,
        report.unrepaired,
        report.requests,
        report.error,
    )


async def latest(conn: Connection, source: str) -> dict[str, Verification]:
    """Each stream's latest completeness report (of a verify that ended), by stream."""
    rows = await conn.fetch(
        """
        select distinct on (stream) * from syncer.verifications
        where source = $1 and outcome <> 'interrupted'
        order by stream, verified_at desc, id desc
        """,
        source,
    )
    return {
        r["stream"]: Verification(
            r["source"],
            r["stream"],
            r["outcome"],
            r["method"],
            r["source_count"],
            r["warehouse_count"],
            r["missing"],
            r["extra"],
            r["repaired"],
            r["unrepaired"],
            r["requests"],
            r["error"],
            r["verified_at"],
        )
        for r in rows
    }
