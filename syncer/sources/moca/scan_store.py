"""Writing what a MOCA scan finds: rows (rewritten only when ``updatedAt`` moved), deletions
(marked, never removed), analytics buckets and range aggregates (idempotent), what did not fit
(``syncer.rejected_records``), and the stream's state."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from syncer.extract.records import Rejected
from syncer.sources.moca.api import AnalyticsPage, Bucket, MocaRow, MocaStream, RangeAggregate
from syncer.store import leases, pages, runs
from syncer.store.rejected import record_rejected
from syncer.store.types import Connection


async def upsert_rows(
    conn: Connection,
    stream: MocaStream,
    rows: Sequence[MocaRow],
    *,
    schema: str,
    source: str,
    run_id: int,
    rejected: Sequence[Rejected] = (),
    requests: int = 0,
) -> int:
    """Store one page in ``schema`` (the source's) in one transaction; the number of rows
    inserted or changed."""
    extras = list(stream.columns)
    columns = ["id", "updated_at", "created_at", *extras, "data"]
    stage = f"_syncer_stage_moca_{stream.name}"
    target = f'"{schema}"."{stream.name}"'
    changed = 0
    async with conn.transaction():
        await leases.check(conn)  # the run still holds the stream (refused once taken over)
        if rows:
            await conn.execute(
                f"create temp table if not exists {stage}"
                f" (like {target} including defaults) on commit delete rows"
            )
            await conn.copy_records_to_table(
                stage,
                records=[(r.id, r.updated_at, r.created_at, *r.extras, r.data) for r in rows],
                columns=columns,
            )
            names = ", ".join(f'"{c}"' for c in columns)
            updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns[1:])
            status: str = await conn.execute(
                f"""
                insert into {target} as t ({names}, _synced_at, _deleted_at)
                select distinct on (id) {names}, now(), null from pg_temp.{stage}
                order by id, updated_at desc nulls last
                on conflict (id) do update set {updates},
                    _synced_at = excluded._synced_at, _deleted_at = null
                where t._deleted_at is not null or t.updated_at is null
                   or excluded.updated_at > t.updated_at
                """
            )
            changed = int(status.rsplit(" ", 1)[-1])
        await record_rejected(conn, run_id, source, stream.name, rejected)
        await runs.add_stream_counts(
            conn,
            run_id,
            stream.name,
            pages=1,
            requests=requests,
            records=len(rows) + len(rejected),
            upserted=changed,
            rejected=len(rejected),
        )
    return changed


async def live_ids(conn: Connection, schema: str, stream: str) -> set[str]:
    rows = await conn.fetch(f'select id from "{schema}"."{stream}" where _deleted_at is null')
    return {r["id"] for r in rows}


async def mark_deleted(
    conn: Connection, schema: str, stream: str, ids: Sequence[str], at: datetime, run_id: int
) -> int:
    async with conn.transaction():
        await leases.check(conn)
        status: str = await conn.execute(
            f'update "{schema}"."{stream}" set _deleted_at = $2'
            " where id = any($1::text[]) and _deleted_at is null",
            list(ids),
            at,
        )
        count = int(status.rsplit(" ", 1)[-1])
        await runs.add_stream_counts(conn, run_id, stream, deleted=count)
    return count


async def upsert_analytics(
    conn: Connection,
    page: AnalyticsPage,
    *,
    schema: str,
    run_id: int,
    source: str,
    state_key: str,
    state_value: int,
    requests: int,
) -> int:
    """Store one analytics window and the position it reached, in one transaction.

    Buckets are upserted (a restated bucket is rewritten); aggregates over the window replace
    what an earlier pull of the same range stored; rejected points and responses are kept in
    ``syncer.rejected_records``. Returns the rows inserted, changed or removed.
    """
    async with conn.transaction():
        await leases.check(conn)
        changed = await _upsert_buckets(conn, schema, page.buckets) if page.buckets else 0
        if page.aggregates:
            changed += await _replace_aggregates(conn, schema, page.aggregates)
        await record_rejected(conn, run_id, source, "analytics", page.rejected)
        await save_state(conn, source, "analytics", {state_key: state_value})
        await runs.add_stream_counts(
            conn,
            run_id,
            "analytics",
            pages=1,
            requests=requests,
            records=page.stored + len(page.rejected),
            upserted=changed,
            rejected=len(page.rejected),
        )
    return changed


async def _upsert_buckets(conn: Connection, schema: str, buckets: Sequence[Bucket]) -> int:
    status: str = await conn.execute(
        f"""
        insert into "{schema}".analytics as t
            (app_id, metric, interval, bucket_start, key, value, data)
        select * from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                             $5::text[], $6::numeric[], $7::jsonb[])
        on conflict (app_id, metric, interval, bucket_start, key) do update
            set value = excluded.value, data = excluded.data, _synced_at = now()
            where t.data is distinct from excluded.data
        """,
        [b.app_id for b in buckets],
        [b.metric for b in buckets],
        [b.interval for b in buckets],
        [b.bucket_start for b in buckets],
        [b.key for b in buckets],
        [b.value for b in buckets],
        [b.data for b in buckets],
    )
    return int(status.rsplit(" ", 1)[-1])


async def _replace_aggregates(
    conn: Connection, schema: str, aggregates: Sequence[RangeAggregate]
) -> int:
    """The aggregates of each range now are exactly these: upserted, the others removed."""
    status: str = await conn.execute(
        f"""
        insert into "{schema}".analytics_ranges as t
            (app_id, metric, interval, range_start, range_end, key, latitude, longitude,
             value, data)
        select * from unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                             $5::timestamptz[], $6::text[], $7::float8[], $8::float8[],
                             $9::numeric[], $10::jsonb[])
        on conflict (app_id, metric, interval, range_start, range_end, key) do update
            set latitude = excluded.latitude, longitude = excluded.longitude,
                value = excluded.value, data = excluded.data, _synced_at = now()
            where t.data is distinct from excluded.data
        """,
        [a.app_id for a in aggregates],
        [a.metric for a in aggregates],
        [a.interval for a in aggregates],
        [a.range_start for a in aggregates],
        [a.range_end for a in aggregates],
        [a.key for a in aggregates],
        [a.latitude for a in aggregates],
        [a.longitude for a in aggregates],
        [a.value for a in aggregates],
        [a.data for a in aggregates],
    )
    changed = int(status.rsplit(" ", 1)[-1])
    first = aggregates[0]
    status = await conn.execute(
        f"""
        delete from "{schema}".analytics_ranges
        where app_id = $1 and metric = $2 and interval = $3 and range_start = $4
          and range_end = $5 and key <> all($6::text[])
        """,
        first.app_id,
        first.metric,
        first.interval,
        first.range_start,
        first.range_end,
        [a.key for a in aggregates],
    )
    return changed + int(status.rsplit(" ", 1)[-1])


async def load_state(
    conn: Connection, source: str, stream: str
) -> tuple[datetime | None, dict[str, Any]]:
    return await pages.watermark_and_state(conn, source, stream)


async def save_state(
    conn: Connection,
    source: str,
    stream: str,
    state: dict[str, Any],
    *,
    watermark: datetime | None = None,
    success: bool = False,
) -> None:
    """Merge ``state`` into the stream's state; set the watermark and success time if given."""
    async with conn.transaction():
        await leases.check(conn)
        await pages.merge_state(conn, source, stream, state, watermark, success)
