"""Deletions in the warehouse: rows marked ``_deleted_at`` (never removed), and what a full
listing has seen so far.

A record deleted at the source is marked in its table at the time the answer showing it was
gone came in; a page requested after that time brings it back (``store/pages.py``). A
per-parent list's rows and a detail stream's rows go with their parent record: when the parent
is marked deleted, so are they (:func:`mark_children`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from syncer.store.types import Connection

__all__ = [
    "clear_seen",
    "live_keys",
    "mark_children",
    "mark_deleted",
    "mark_unseen",
    "record_seen",
    "seen_count",
    "seen_digest",
]


def _table(schema: str, table: str) -> str:
    return f'"{schema}"."{table}"'


async def live_keys(
    conn: Connection, schema: str, table: str, *, parent: str | None = None
) -> list[int | str]:
    """The ids of ``schema.table``'s rows not marked deleted (of one parent's, if given),
    in order."""
    where = "_deleted_at is null" + (" and _parent_id = $1::bigint" if parent is not None else "")
    args = [int(parent)] if parent is not None else []
    rows = await conn.fetch(
        f"select id from {_table(schema, table)} where {where} order by id", *args
    )
    return [r["id"] for r in rows]


async def mark_deleted(
    conn: Connection,
    schema: str,
    table: str,
    keys: Sequence[int | str],
    at: datetime | None,
    *,
    text_ids: bool = False,
) -> int:
    """Mark the rows of ``keys`` deleted at ``at`` (now if None), those not marked yet; how
    many were marked."""
    if not keys:
        return 0
    kind = "text" if text_ids else "bigint"
    status: str = await conn.execute(
        f"update {_table(schema, table)} set _deleted_at = coalesce($2::timestamptz, now())"
        f" where id = any($1::{kind}[]) and _deleted_at is null",
        [str(k) if text_ids else int(k) for k in keys],
        at,
    )
    return int(status.rsplit(" ", 1)[-1])


async def mark_children(
    conn: Connection, schema: str, table: str, parent_table: str, *, by_id: bool = False
) -> int:
    """Mark deleted the rows of ``table`` whose parent record in ``parent_table`` is marked
    deleted (``by_id``: a detail row shares its record's id; else ``_parent_id``), at the
    parent's time; how many were marked."""
    link = "c.id = p.id" if by_id else "c._parent_id = p.id"
    status: str = await conn.execute(
        f"update {_table(schema, table)} c set _deleted_at = p._deleted_at"
        f" from {_table(schema, parent_table)} p"
        f" where {link} and p._deleted_at is not null and c._deleted_at is null"
    )
    return int(status.rsplit(" ", 1)[-1])


async def record_seen(
    conn: Connection, source: str, stream: str, parent: str | None, keys: Sequence[int | str]
) -> None:
    """Note that a full listing under way has served ``keys`` (idempotent)."""
    if keys:
        await conn.execute(
            "insert into syncer.seen_ids (source, stream, parent, key)"
            " select $1, $2, $3, unnest($4::text[]) on conflict do nothing",
            source,
            stream,
            parent or "",
            [str(k) for k in keys],
        )


async def clear_seen(conn: Connection, source: str, stream: str, parent: str | None) -> None:
    """Forget what a listing has seen: it starts (or ended)."""
    await conn.execute(
        "delete from syncer.seen_ids where source = $1 and stream = $2 and parent = $3",
        source,
        stream,
        parent or "",
    )


async def seen_count(conn: Connection, source: str, stream: str, parent: str | None) -> int:
    value = await conn.fetchval(
        "select count(*) from syncer.seen_ids where source = $1 and stream = $2 and parent = $3",
        source,
        stream,
        parent or "",
    )
    return int(value or 0)


async def seen_digest(
    conn: Connection, source: str, stream: str, parent: str | None, also: Sequence[int | str]
) -> str:
    """A digest of the ids a listing has seen (and ``also``, a last page not stored yet)."""
    value = await conn.fetchval(
        "select md5(coalesce(string_agg(key, ',' order by key), '')) from ("
        " select key from syncer.seen_ids where source = $1 and stream = $2 and parent = $3"
        " union select unnest($4::text[])) k",
        source,
        stream,
        parent or "",
        [str(k) for k in also],
    )
    return str(value)


async def mark_unseen(
    conn: Connection,
    schema: str,
    table: str,
    source: str,
    stream: str,
    parent: str | None,
    *,
    at: datetime | None,
    text_ids: bool = False,
    dry_run: bool = False,
) -> list[int | str]:
    """The live rows (of ``parent``'s, if given) that the listing did not see; marked deleted
    at ``at`` unless ``dry_run``. Their ids, in order."""
    where = "t._deleted_at is null" + (
        " and t._parent_id = $4::bigint" if parent is not None else ""
    )
    args: list[object] = [source, stream, parent or ""]
    if parent is not None:
        args.append(int(parent))
    rows = await conn.fetch(
        f"select t.id from {_table(schema, table)} t where {where} and not exists ("
        " select from syncer.seen_ids s where s.source = $1 and s.stream = $2"
        " and s.parent = $3 and s.key = t.id::text) order by t.id",
        *args,
    )
    keys: list[int | str] = [r["id"] for r in rows]
    if keys and not dry_run:
        await mark_deleted(conn, schema, table, keys, at, text_ids=text_ids)
    return keys
