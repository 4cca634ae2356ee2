"""Per-record details: one request for each record whose list entry changed since its detail
was read (MOCO's ``/invoices/{id}`` with items, payments and reminders).

Lists leave some fields out (an invoice's items); the detail read has them, at one request a
record. So it is opt-in, and bounded: each run reads the details of at most ``details_budget``
records, those whose list row changed most recently first, until every live record's detail is
as new as its row (the detail row keeps the ``updated_at`` of the list row it was read for;
nothing else is kept between runs). A detail can change without its row (a project's report
follows its activities): one read longer than ``details_max_age`` ago (a day) is due again,
after the changed ones, and an aggregate (the catalog's ``aggregate``: project reports) every
run. A record gone at the source (404) is marked deleted, with
its detail; so is the detail of a record deleted otherwise.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

from syncer import shutdown
from syncer.catalog import Stream
from syncer.extract.base import Lister, Options, Query
from syncer.extract.records import NUL_REASON, Rejected, Row, has_nul
from syncer.extract.walker import log_ids
from syncer.results import StreamResult, SyncContext
from syncer.store import details, leases, marks, pages, runs
from syncer.store.rejected import record_rejected

log = logging.getLogger(__name__)


async def detail_stream(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    options: Options,
    result: StreamResult,
) -> None:
    """Read the details due, within the budget, inside the stream run's row."""
    from syncer.extract.running import stream_run

    assert stream.detail_of is not None
    source, pool = context.source, context.pool
    of = stream.detail_of
    async with stream_run(context, result):
        async with pool.acquire() as conn, conn.transaction():
            await leases.check(conn)
            gone = await marks.mark_children(conn, source.schema, stream.name, of, by_id=True)
            await runs.add_stream_counts(conn, context.run_id, stream.name, deleted=gone)
            due = await details.due(
                conn,
                source.schema,
                stream.name,
                of,
                options.details_budget,
                max_age_s=0.0 if stream.aggregate else options.details_max_age_s,
            )
        result.deleted += gone
        result.left = len(due)
        for key, updated_at in due:
            shutdown.check()
            before = result.http.requests
            requested_at = datetime.now(UTC)
            response = await context.client.get(
                lister.url(stream, record=str(key)),
                lister.params(stream, Query(), None),
                stats=result.http,
                missing_ok=True,
            )
            requests = result.http.requests - before
            async with pool.acquire() as conn, conn.transaction():
                await leases.check(conn)
                upserted = deleted = 0
                rejected: list[Rejected] = []
                if response.status == 404:
                    await marks.mark_deleted(conn, source.schema, of, [key], requested_at)
                    deleted = await marks.mark_children(
                        conn, source.schema, stream.name, of, by_id=True
                    )
                else:
                    text = orjson.dumps(lister.body(stream, response)).decode()
                    if has_nul(text):
                        rejected = [Rejected(f"the detail {NUL_REASON}", text)]
                    else:
                        upserted = await pages.upsert_rows(
                            conn,
                            source.schema,
                            stream.name,
                            [Row(key, updated_at, text)],
                            stream.volatile,
                            requested_at=requested_at,
                        )
                    await record_rejected(conn, context.run_id, source.name, stream.name, rejected)
                await runs.add_stream_counts(
                    conn,
                    context.run_id,
                    stream.name,
                    pages=1,
                    requests=requests,
                    records=1,
                    upserted=upserted,
                    rejected=len(rejected),
                    deleted=deleted,
                )
            result.pages += 1
            result.records += 1
            result.upserted += upserted
            result.rejected += len(rejected)
            result.deleted += deleted
            result.committed_requests = result.http.requests
            result.left -= 1
        async with pool.acquire() as conn:
            left = (
                []
                if stream.aggregate
                else await details.due(
                    conn, source.schema, stream.name, of, 1, max_age_s=options.details_max_age_s
                )
            )
            await pages.save_position(
                conn, source.name, stream.name, watermark=None, walk=None, success=True
            )
        if left:
            result.warning = (
                f"details of more {of} are due than details_budget = {options.details_budget} "
                "allows a run; the rest are read in the next runs"
            )
        log.info(
            "%s.%s: %d details read",
            source.name,
            stream.name,
            len(due),
            extra=log_ids(context.run_id, source.name, stream.name),
        )
