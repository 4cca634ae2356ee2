"""Single objects: one request, one row (MOCO's ``/account/hourly_rates``).

An object is not a list: its answer is one JSON object, kept as one row keyed
:data:`OBJECT_KEY`, replaced when it changes. It costs one request a run.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson

from syncer import shutdown
from syncer.catalog import Stream
from syncer.extract.base import Lister, Options, Query
from syncer.extract.records import NUL_REASON, Rejected, Row, has_nul
from syncer.results import StreamResult, SyncContext
from syncer.store import leases, pages, runs

OBJECT_KEY = "current"


async def object_stream(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    options: Options,
    result: StreamResult,
) -> None:
    """Read the object and store it as the stream's one row, inside the stream run's row."""
    from syncer.extract.running import stream_run

    source = context.source
    async with stream_run(context, result):
        shutdown.check()
        requested_at = datetime.now(UTC)
        url = lister.url(stream)
        response = await context.client.get(
            url, lister.params(stream, Query(), None), stats=result.http
        )
        body = lister.body(stream, response)
        text = orjson.dumps(body).decode()
        rows = [] if has_nul(text) else [Row(OBJECT_KEY, None, text)]
        rejected = [Rejected(f"the object {NUL_REASON}", text)] if not rows else []
        async with context.pool.acquire() as conn, conn.transaction():
            await leases.check(conn)
            upserted = await pages.store_rows(
                conn,
                context.run_id,
                source.name,
                source.schema,
                stream.name,
                rows,
                rejected,
                stream.volatile,
                requested_at=requested_at,
                text_ids=True,
            )
            await runs.add_stream_counts(
                conn,
                context.run_id,
                stream.name,
                pages=1,
                requests=result.http.requests,
                records=1,
                upserted=upserted,
                rejected=len(rejected),
            )
            await pages.save_position(
                conn, source.name, stream.name, watermark=requested_at, walk=None, success=True
            )
        result.pages, result.records, result.upserted = 1, 1, upserted
        result.rejected = len(rejected)
        result.committed_requests = result.http.requests
        result.watermark = requested_at
        result.left = 0
