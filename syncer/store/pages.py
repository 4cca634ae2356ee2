"""Storing a page: its rows, its rejected records, and the stream's new position, atomically.

(The pages of one trusted sprint are stored together, in one transaction with the position
after the last of them: all or none.)

Rows are loaded with COPY into a temporary staging table and upserted from there with one
``INSERT … ON CONFLICT``: never row by row. A row is rewritten only when its data changed, and
never replaced by an older version of itself.

A row marked deleted (``_deleted_at``: by a delete webhook, the MOCO sweep or a MOCA scan) is
brought back only by a page requested *after* that time: a page read just before a deletion
and committed just after it must not resurrect the record. Pages carry the time their request
began (the source served them no earlier); the sweep marks a deletion at the time the answer
showing it came in, and a delete webhook at MOCO's event time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import orjson

from syncer.store import leases, marks, runs
from syncer.store.rejected import record_rejected
from syncer.store.types import Connection

STAGE = "_syncer_stage"
STAGE_TEXT = "_syncer_stage_text"  # the stage of tables with text ids

log = logging.getLogger(__name__)


class Row(Protocol):
    """A record to store (``syncer.extract.records.Row``): its key, its time, its JSON text."""

    @property
    def id(self) -> int | str: ...

    @property
    def updated_at(self) -> datetime | None: ...

    @property
    def data(self) -> str: ...


class Rejected(Protocol):
    """A record that cannot be stored (``syncer.extract.records.Rejected``), kept to inspect."""

    @property
    def reason(self) -> str: ...

    @property
    def record(self) -> str: ...


@dataclass(frozen=True)
class StreamState:
    watermark: datetime | None
    walk: dict[str, Any] | None  # the source's position in a walk in progress, as JSON


async def load_state(conn: Connection, source: str, stream: str) -> StreamState:
    row = await conn.fetchrow(
        "select watermark, walk from syncer.streams where source = $1 and stream = $2",
        source,
        stream,
    )
    if row is None:
        return StreamState(None, None)
    walk = orjson.loads(row["walk"]) if row["walk"] is not None else None
    return StreamState(row["watermark"], walk)


@dataclass(frozen=True)
class PageCommit:
    """Everything one page changes; written in one transaction by :func:`commit_page`."""

    schema: str
    table: str
    volatile: tuple[str, ...]  # keys ignored when deciding whether a row changed
    source: str
    stream: str
    run_id: int
    rows: Sequence[Row]
    rejected: Sequence[Rejected]
    requests: int
    # The position to resume from (a source's own JSON); None once the walk is complete.
    walk: dict[str, Any] | None
    watermark: datetime | None  # the stream's watermark after this page
    requested_at: datetime | None = None  # when the page's request began
    pages: int = 1  # pages of one sprint may be stored together (``extract/sprint.py``)
    # A per-parent list's page: the parent record's id. Its rows get it as ``_parent_id``, and
    # the position is the parent's (``syncer.parent_positions``), not the stream's.
    parent: str | None = None
    text_ids: bool = False  # the table's ids are text (a catalog stream's key_type)
    # Rows read through a list holding every parent's records: where each names its parent.
    parent_path: tuple[str, ...] | None = None
    seen: bool = False  # a full listing's page: its ids are noted in syncer.seen_ids
    positioned: bool = True  # False: no position to keep (a sweep's listing), counts only


async def commit_page(conn: Connection, page: PageCommit) -> int:
    """Store the page; the number of rows inserted or changed."""
    async with conn.transaction():
        await leases.check(conn)  # the run still holds the stream (refused once taken over)
        upserted = await store_rows(
            conn,
            page.run_id,
            page.source,
            page.schema,
            page.stream,
            page.rows,
            page.rejected,
            page.volatile,
            table=page.table,
            requested_at=page.requested_at,
            parent=page.parent,
            text_ids=page.text_ids,
            parent_path=page.parent_path,
        )
        if page.seen:
            await marks.record_seen(
                conn, page.source, page.stream, page.parent, [r.id for r in page.rows]
            )
        walk = orjson.dumps(page.walk).decode() if page.walk is not None else None
        counts = (
            page.run_id,
            page.requests,
            len(page.rows) + len(page.rejected),
            upserted,
            len(page.rejected),
            page.pages,
        )
        if not page.positioned:
            await add_counts(conn, page.stream, counts)
        elif page.parent is None:
            await _stream_position(conn, page.source, page.stream, page.watermark, walk, counts)
        else:
            await save_parent_position(
                conn, page.source, page.stream, page.parent, page.watermark, walk, counts
            )
    if page.rejected:
        log.warning(
            "%s.%s: %d records did not fit (e.g. %s); kept in syncer.rejected_records",
            page.source,
            page.stream,
            len(page.rejected),
            page.rejected[0].reason,
        )
    return upserted


@dataclass(frozen=True)
class ParentPosition:
    watermark: datetime | None
    walk: dict[str, Any] | None


async def parent_positions(conn: Connection, source: str, stream: str) -> dict[str, ParentPosition]:
    """A per-parent list's positions, by parent record id."""
    rows = await conn.fetch(
        "select parent, watermark, walk from syncer.parent_positions"
        " where source = $1 and stream = $2",
        source,
        stream,
    )
    return {
        r["parent"]: ParentPosition(
            r["watermark"], orjson.loads(r["walk"]) if r["walk"] is not None else None
        )
        for r in rows
    }


async def forget_parents(conn: Connection, source: str, stream: str, keep: Sequence[str]) -> None:
    """Drop the positions of parent records no longer listed (deleted at the source)."""
    await conn.execute(
        "delete from syncer.parent_positions where source = $1 and stream = $2"
        " and not (parent = any($3::text[]))",
        source,
        stream,
        list(keep),
    )


async def save_position(
    conn: Connection,
    source: str,
    stream: str,
    *,
    watermark: datetime | None,
    walk: dict[str, Any] | None,
    state: dict[str, Any] | None = None,
    success: bool = False,
) -> None:
    """The stream's position (and, if given, its state) outside a page's transaction."""
    await conn.execute(
        """
        insert into syncer.streams as s (source, stream, watermark, walk, state, last_success_at)
        values ($1, $2, $3, $4::jsonb, $5::jsonb, case when $6 then now() end)
        on conflict (source, stream) do update set
            watermark = excluded.watermark,
            walk = excluded.walk,
            state = coalesce(excluded.state, s.state),
            last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
            updated_at = now()
        """,
        source,
        stream,
        watermark,
        orjson.dumps(walk).decode() if walk is not None else None,
        orjson.dumps(state).decode() if state is not None else None,
        success,
    )


async def load_stream_state(conn: Connection, source: str, stream: str) -> dict[str, Any]:
    """A stream's own state (``syncer.streams.state``): what a strategy keeps between runs."""
    value = await conn.fetchval(
        "select state from syncer.streams where source = $1 and stream = $2", source, stream
    )
    return orjson.loads(value) if value is not None else {}


async def add_counts(
    conn: Connection, stream: str, counts: tuple[int, int, int, int, int, int]
) -> None:
    run_id, requests, records, upserted, rejected, n_pages = counts
    await runs.add_stream_counts(
        conn,
        run_id,
        stream,
        pages=n_pages,
        requests=requests,
        records=records,
        upserted=upserted,
        rejected=rejected,
    )


async def _stream_position(
    conn: Connection,
    source: str,
    stream: str,
    watermark: datetime | None,
    walk: str | None,
    counts: tuple[int, int, int, int, int, int],
) -> None:
    """The stream's position and the run's counts, in one statement (one round trip)."""
    await conn.execute(
        """
        with position as (
            insert into syncer.streams as s
                (source, stream, watermark, walk, last_success_at)
            values ($1, $2, $3, $4::jsonb, case when $4::jsonb is null then now() end)
            on conflict (source, stream) do update set
                watermark = excluded.watermark,
                walk = excluded.walk,
                last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
                updated_at = now()
        )
        update syncer.stream_runs set pages = pages + $10, requests = requests + $6,
            records = records + $7, upserted = upserted + $8, rejected = rejected + $9
        where run_id = $5 and stream = $2
        """,
        source,
        stream,
        watermark,
        walk,
        *counts,
    )


async def save_parent_position(
    conn: Connection,
    source: str,
    stream: str,
    parent: str,
    watermark: datetime | None,
    walk: str | None,
    counts: tuple[int, int, int, int, int, int],
) -> None:
    """A per-parent list's position for one parent record, and the run's counts."""
    await conn.execute(
        """
        with position as (
            insert into syncer.parent_positions as p (source, stream, parent, watermark, walk)
            values ($1, $2, $3, $4, $5::jsonb)
            on conflict (source, stream, parent) do update set
                watermark = excluded.watermark, walk = excluded.walk, updated_at = now()
        )
        update syncer.stream_runs set pages = pages + $11, requests = requests + $7,
            records = records + $8, upserted = upserted + $9, rejected = rejected + $10
        where run_id = $6 and stream = $2
        """,
        source,
        stream,
        parent,
        watermark,
        walk,
        *counts,
    )


async def store_rows(
    conn: Connection,
    run_id: int,
    source: str,
    schema: str,
    stream: str,
    rows: Sequence[Row],
    rejected: Sequence[Rejected],
    volatile: tuple[str, ...],
    *,
    table: str | None = None,
    requested_at: datetime | None = None,
    parent: str | None = None,
    text_ids: bool = False,
    parent_path: tuple[str, ...] | None = None,
) -> int:
    """A page's rows upserted (:func:`upsert_rows`, into ``table``, default the stream's) and
    its rejected records kept with their reasons; the rows inserted or changed. Call it inside
    the transaction that records the page's position."""
    upserted = 0
    if rows:
        upserted = await upsert_rows(
            conn,
            schema,
            table or stream,
            rows,
            volatile,
            requested_at=requested_at,
            parent=parent,
            text_ids=text_ids,
            parent_path=parent_path,
        )
    await record_rejected(conn, run_id, source, stream, rejected)
    return upserted


async def upsert_rows(
    conn: Connection,
    schema: str,
    table: str,
    rows: Sequence[Row],
    volatile: tuple[str, ...],
    *,
    requested_at: datetime | None = None,
    parent: str | None = None,
    text_ids: bool = False,
    parent_path: tuple[str, ...] | None = None,
) -> int:
    """Upsert ``rows`` into ``schema.table`` through the COPY stage; the rows inserted or changed.

    Only changed rows are rewritten (``volatile`` keys ignored when comparing), and a row is
    never replaced by an older version of itself. A row marked deleted is restored only if
    ``requested_at`` is later than the mark (unknown ``requested_at``: restored). ``parent``:
    the rows' ``_parent_id`` (a per-parent list's table); ``parent_path``: read it from each
    record instead (rows of every parent). Call it inside a transaction: the stage is emptied
    on commit.
    """
    stage = STAGE_TEXT if text_ids else STAGE
    await conn.execute(
        f"create temp table if not exists {stage}"
        f" (id {'text' if text_ids else 'bigint'}, updated_at timestamptz, data jsonb)"
        " on commit delete rows"
    )
    await conn.copy_records_to_table(
        stage,
        records=[(r.id, r.updated_at, r.data) for r in rows],
        columns=["id", "updated_at", "data"],
    )
    target = f'"{schema}"."{table}"'
    placed = parent is not None or parent_path is not None
    parent_column = ", _parent_id" if placed else ""
    parent_value = ", $3::bigint" if parent is not None else ""
    if parent_path is not None:
        at = "{" + ",".join(parent_path) + "}"
        parent_value = (
            f", case when (data #>> '{at}') ~ '^[0-9]{{1,18}}$' then (data #>> '{at}')::bigint end"
        )
    parent_set = "_parent_id = excluded._parent_id," if placed else ""
    parent_moved = "or t._parent_id is distinct from excluded._parent_id" if placed else ""
    status: str = await conn.execute(
        f"""
        insert into {target} as t (id, updated_at, data, _synced_at, _deleted_at{parent_column})
        select distinct on (id) id, updated_at, data, now(), null{parent_value}
        from pg_temp.{stage}
        order by id, updated_at desc nulls last
        on conflict (id) do update set
            updated_at = excluded.updated_at,
            data = excluded.data,
            _synced_at = excluded._synced_at,
            {parent_set}
            _deleted_at = case when $2::timestamptz > t._deleted_at then null
                               when $2::timestamptz is null then null
                               else t._deleted_at end
        where ((t.data - $1::text[]) is distinct from (excluded.data - $1::text[])
               or t.updated_at is distinct from excluded.updated_at
               {parent_moved}
               or (t._deleted_at is not null
                   and ($2::timestamptz is null or $2::timestamptz > t._deleted_at)))
          and (t.updated_at is null or excluded.updated_at is null
               or excluded.updated_at >= t.updated_at)
        """,
        list(volatile),
        requested_at,
        *([int(parent)] if parent is not None else []),
    )
    return int(status.rsplit(" ", 1)[-1])


async def watermark_and_state(
    conn: Connection, source: str, stream: str
) -> tuple[datetime | None, dict[str, Any]]:
    """A stream's watermark and its state object (a scan's: what it has read so far)."""
    row = await conn.fetchrow(
        "select watermark, state from syncer.streams where source = $1 and stream = $2",
        source,
        stream,
    )
    if row is None:
        return None, {}
    return row["watermark"], orjson.loads(row["state"]) if row["state"] else {}


async def merge_state(
    conn: Connection,
    source: str,
    stream: str,
    state: dict[str, Any],
    watermark: datetime | None,
    success: bool,
) -> None:
    """Merge ``state`` into the stream's state; set the watermark and the success time if
    given (in the caller's transaction)."""
    await conn.execute(
        """
        insert into syncer.streams as s (source, stream, watermark, state, last_success_at)
        values ($1, $2, $3, $4::jsonb, case when $5 then now() end)
        on conflict (source, stream) do update set
            watermark = coalesce(excluded.watermark, s.watermark),
            state = coalesce(s.state, '{}'::jsonb) || excluded.state,
            last_success_at = coalesce(excluded.last_success_at, s.last_success_at),
            updated_at = now()
        """,
        source,
        stream,
        watermark,
        orjson.dumps(state).decode(),
        success,
    )
