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

from syncer.store import leases
from syncer.store.types import Connection

STAGE = "_syncer_stage"

log = logging.getLogger(__name__)


class Row(Protocol):
    """A record to store (``syncer.sources.base.Row``): its key, its time, its JSON text."""

    @property
    def id(self) -> int: ...

    @property
    def updated_at(self) -> datetime | None: ...

    @property
    def data(self) -> str: ...


class Rejected(Protocol):
    """A record that cannot be stored (``syncer.sources.base.Rejected``), kept to inspect."""

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
    pages: int = 1  # pages of one sprint may be stored together (``sources/moco/sprint.py``)


async def commit_page(conn: Connection, page: PageCommit) -> int:
    """Store the page; the number of rows inserted or changed."""
    upserted = 0
    async with conn.transaction():
        await leases.check(conn)  # the run still holds the stream (refused once taken over)
        if page.rows:
            upserted = await upsert_rows(
                conn,
                page.schema,
                page.table,
                page.rows,
                page.volatile,
                requested_at=page.requested_at,
            )
        if page.rejected:
            await conn.executemany(
                "insert into syncer.rejected_records (run_id, source, stream, reason, record)"
                " values ($1, $2, $3, $4, $5)",
                [
                    (page.run_id, page.source, page.stream, r.reason, r.record)
                    for r in page.rejected
                ],
            )
        walk = orjson.dumps(page.walk).decode() if page.walk is not None else None
        # The stream's position and the run's counts, in one statement (one round trip).
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
            page.source,
            page.stream,
            page.watermark,
            walk,
            page.run_id,
            page.requests,
            len(page.rows) + len(page.rejected),
            upserted,
            len(page.rejected),
            page.pages,
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


async def upsert_rows(
    conn: Connection,
    schema: str,
    table: str,
    rows: Sequence[Row],
    volatile: tuple[str, ...],
    *,
    requested_at: datetime | None = None,
) -> int:
    """Upsert ``rows`` into ``schema.table`` through the COPY stage; the rows inserted or changed.

    Only changed rows are rewritten (``volatile`` keys ignored when comparing), and a row is
    never replaced by an older version of itself. A row marked deleted is restored only if
    ``requested_at`` is later than the mark (unknown ``requested_at``: restored). Call it inside a
    transaction: the stage is emptied on commit.
    """
    await conn.execute(
        f"create temp table if not exists {STAGE}"
        " (id bigint, updated_at timestamptz, data jsonb) on commit delete rows"
    )
    await conn.copy_records_to_table(
        STAGE,
        records=[(r.id, r.updated_at, r.data) for r in rows],
        columns=["id", "updated_at", "data"],
    )
    target = f'"{schema}"."{table}"'
    status: str = await conn.execute(
        f"""
        insert into {target} as t (id, updated_at, data, _synced_at, _deleted_at)
        select distinct on (id) id, updated_at, data, now(), null
        from pg_temp.{STAGE}
        order by id, updated_at desc nulls last
        on conflict (id) do update set
            updated_at = excluded.updated_at,
            data = excluded.data,
            _synced_at = excluded._synced_at,
            _deleted_at = case when $2::timestamptz > t._deleted_at then null
                               when $2::timestamptz is null then null
                               else t._deleted_at end
        where ((t.data - $1::text[]) is distinct from (excluded.data - $1::text[])
               or (t._deleted_at is not null
                   and ($2::timestamptz is null or $2::timestamptz > t._deleted_at)))
          and (t.updated_at is null or excluded.updated_at is null
               or excluded.updated_at >= t.updated_at)
        """,
        list(volatile),
        requested_at,
    )
    return int(status.rsplit(" ", 1)[-1])
