"""Which records' details are due: their list row changed since their detail was read."""

from __future__ import annotations

from datetime import datetime

from syncer.store.types import Connection

__all__ = ["due"]


async def due(
    conn: Connection,
    schema: str,
    table: str,
    of: str,
    limit: int,
    *,
    max_age_s: float | None = None,
) -> list[tuple[int | str, datetime | None]]:
    """Up to ``limit`` live records of ``schema.of`` whose detail in ``table`` is missing or
    older than their row (the most recently changed first), then those whose detail was read
    more than ``max_age_s`` ago (the oldest first): (id, the row's updated_at)."""
    rows = await conn.fetch(
        f'select p.id, p.updated_at from "{schema}"."{of}" p'
        f' left join "{schema}"."{table}" d on d.id = p.id'
        " where p._deleted_at is null and (d.id is null or d._deleted_at is not null"
        " or d.updated_at is distinct from p.updated_at"
        " or ($2::float8 is not null and d._synced_at < now() - make_interval(secs => $2)))"
        " order by (d.id is null or d._deleted_at is not null"
        " or d.updated_at is distinct from p.updated_at) desc,"
        " case when d.updated_at is distinct from p.updated_at then p.updated_at end desc"
        " nulls last, d._synced_at nulls first, p.id limit $1",
        limit,
        max_age_s,
    )
    return [(r["id"], r["updated_at"]) for r in rows]
