"""What a deletion sweep (``runners/sweep.py``) reads from and writes to the warehouse.

The sweep asks the source about the ids the warehouse holds, so it reads them all (deleted rows
too: a record the source lists again is restored). Its findings for a stream are written in one
transaction with the stream run's counts: rows marked deleted, rows restored, ids checked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from syncer.store import leases, pages
from syncer.store.pages import Row
from syncer.store.types import Connection


@dataclass(frozen=True)
class LocalIds:
    live: frozenset[int]  # rows without _deleted_at
    deleted: frozenset[int]  # rows already marked deleted


async def local_ids(
    conn: Connection, schema: str, table: str, *, parent: str | None = None
) -> LocalIds:
    """The ids of ``schema.table`` (the source's schema), live and marked deleted; of one
    parent record's rows, if given (a per-parent list)."""
    where = " where _parent_id = $1::bigint" if parent is not None else ""
    rows = await conn.fetch(
        f'select id, _deleted_at is not null as deleted from "{schema}"."{table}"{where}',
        *([int(parent)] if parent is not None else []),
    )
    return LocalIds(
        frozenset(r["id"] for r in rows if not r["deleted"]),
        frozenset(r["id"] for r in rows if r["deleted"]),
    )


@dataclass(frozen=True)
class SweepCommit:
    """Everything one stream's sweep changes; written in one transaction by :func:`commit`."""

    schema: str  # the source's
    table: str
    volatile: tuple[str, ...]  # keys ignored when deciding whether a restored row changed
    run_id: int
    gone: Sequence[int]  # ids to mark deleted (empty when the guard withheld them)
    back: Sequence[Row]  # records the source lists again whose rows are marked deleted
    checked: int  # ids asked about, for the stream run
    # Deletions are marked at the time the last answer came in (after every absence was seen);
    # records listed again are restored as requested at the time the first request began.
    first_requested_at: datetime | None = None
    last_answered_at: datetime | None = None
    parent: str | None = None  # a per-parent list: the parent record the rows belong to


async def commit(conn: Connection, sweep: SweepCommit) -> tuple[int, int]:
    """Mark ``gone``, restore ``back`` (stored as the source serves them now); (marked, restored).

    A row is marked only if it is not marked already; it is restored through the sync's own
    upsert, which clears ``_deleted_at`` and never replaces a row with an older version.
    """
    async with conn.transaction():
        await leases.check(conn)  # the sweep still holds the stream (refused once taken over)
        marked = 0
        if sweep.gone:
            # A page requested before this is no proof of life (see store/pages.py).
            status: str = await conn.execute(
                f'update "{sweep.schema}"."{sweep.table}"'
                " set _deleted_at = coalesce($2::timestamptz, now())"
                " where id = any($1::bigint[]) and _deleted_at is null",
                list(sweep.gone),
                sweep.last_answered_at,
            )
            marked = int(status.rsplit(" ", 1)[-1])
        restored = 0
        if sweep.back:
            restored = await pages.upsert_rows(
                conn,
                sweep.schema,
                sweep.table,
                list(sweep.back),
                sweep.volatile,
                requested_at=sweep.first_requested_at,
                parent=sweep.parent,
            )
        await conn.execute(
            """
            update syncer.stream_runs set records = records + $3, deleted = deleted + $4,
                upserted = upserted + $5
            where run_id = $1 and stream = $2
            """,
            sweep.run_id,
            sweep.table,
            sweep.checked,
            marked,
            restored,
        )
    return marked, restored
