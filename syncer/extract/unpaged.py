"""Unpaged lists: one request answers the whole list (MOCO's ``/letter_papers``,
``/users/roles``), so one transaction stores it, and what it no longer lists is deleted.

Such a list takes no ``page`` parameter: asking for page 2 would serve the same list again, so
it is asked for once, without one. One answer is one consistent picture of the list, so the
live rows it does not list are deletions, marked at once behind the deletion guard.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from syncer import shutdown
from syncer.catalog import Stream
from syncer.deletions import guard_warning
from syncer.extract.base import Lister, Options, Query, fetch
from syncer.results import StreamResult, SyncContext
from syncer.store import leases, marks, pages, runs

log = logging.getLogger(__name__)


async def unpaged_stream(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    options: Options,
    result: StreamResult,
) -> None:
    """Read the whole list in one request and store it with its deletions, in the stream
    run's row."""
    from syncer.extract.running import stream_run

    source = context.source
    async with stream_run(context, result):
        shutdown.check()
        requested_at = datetime.now(UTC)
        page = await fetch(context.client, lister, stream, Query(), None, stats=result.http)
        text_ids = stream.key_type == "text"
        async with context.pool.acquire() as conn, conn.transaction():
            await leases.check(conn)
            upserted = await pages.store_rows(
                conn,
                context.run_id,
                source.name,
                source.schema,
                stream.name,
                page.rows,
                page.rejected,
                stream.volatile,
                requested_at=requested_at,
                text_ids=text_ids,
            )
            live = await marks.live_keys(conn, source.schema, stream.name)
            listed = set(page.keys)
            missing = [k for k in live if k not in listed]
            deleted = 0
            warning = guard_warning(
                stream.name,
                len(missing),
                len(live),
                options.deletion_guard,
                missing_from="the list",
                advice="If they really were deleted, raise deletion_guard for one run",
            )
            if warning is None:
                deleted = await marks.mark_deleted(
                    conn, source.schema, stream.name, missing, page.served_at, text_ids=text_ids
                )
            else:
                result.warning = warning
                log.warning("%s.%s: %s", source.name, stream.name, warning)
            await runs.add_stream_counts(
                conn,
                context.run_id,
                stream.name,
                pages=1,
                requests=result.http.requests,
                records=page.count,
                upserted=upserted,
                rejected=len(page.rejected),
                deleted=deleted,
            )
            await pages.save_position(
                conn, source.name, stream.name, watermark=page.served_at, walk=None, success=True
            )
        result.pages, result.records, result.upserted = 1, page.count, upserted
        result.rejected, result.deleted = len(page.rejected), deleted
        result.committed_requests = result.http.requests
        result.watermark = page.served_at
        result.left = 0
