"""Per-parent lists: a list read once per record of its parent stream.

``/projects/{project_id}/tasks`` lists one project's tasks; the project ids come from the
warehouse (the parent stream's live rows, synced first: a sync runs parents before children).
Each parent's list is walked by its own strategy (sorted or unsorted ``updated_after``) with a
position of its own per parent record (``syncer.parent_positions``: its watermark and the walk
in progress), so a run killed mid-way resumes each parent where it stood, and a parent whose
list did not change costs one request. A child row keeps its parent's id (``_parent_id``).

A parent gone at the source answers 404 for its lists: then the parent's row and its
children's rows are marked deleted at once, and so are the children of parents marked deleted
by other means (a sweep, a delete webhook) before the parents are read.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime
from typing import Any

from syncer import shutdown
from syncer.catalog import Stream
from syncer.extract.base import Lister, Options
from syncer.extract.walk import Walk
from syncer.extract.walker import Walker, first_walk, log_ids
from syncer.results import StreamResult, SyncContext
from syncer.store import leases, marks, pages, runs

log = logging.getLogger(__name__)


async def parent_stream(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    options: Options,
    result: StreamResult,
    *,
    twin: Stream | None = None,
) -> None:
    """Read ``stream`` for every live record of its parent stream; or, where a list of its own
    holds the same records (``twin``, ``/projects/expenses``), read that one list instead: one
    request a run rather than one a parent, each record stored under the parent it names."""
    if twin is not None:
        from syncer.extract.walker import walk_stream

        await walk_stream(context, stream, lister, options, result, through=twin)
        return
    from syncer.extract.running import all_or_stop, stream_run

    assert stream.parent is not None
    source, pool = context.source, context.pool
    parent_table = stream.parent.stream
    async with pool.acquire() as conn:
        positions = await pages.parent_positions(conn, source.name, stream.name)
    async with stream_run(context, result):
        async with pool.acquire() as conn, conn.transaction():
            await leases.check(conn)
            gone = await marks.mark_children(conn, source.schema, stream.name, parent_table)
            await runs.add_stream_counts(conn, context.run_id, stream.name, deleted=gone)
            parents = [str(p) for p in await marks.live_keys(conn, source.schema, parent_table)]
        result.deleted += gone
        reached: dict[str, datetime | None] = {}
        gate = asyncio.Semaphore(max(1, options.page_concurrency))

        async def one(parent: str) -> None:
            async with gate:
                shutdown.check()
                position = positions.get(parent)
                saved = (
                    Walk.from_json(position.walk)
                    if position is not None and position.walk is not None
                    else None
                )
                watermark = position.watermark if position is not None else None
                walk, _ = first_walk(
                    stream,
                    saved,
                    watermark,
                    overlap_s=options.overlap_s,
                    full_refresh=context.full_refresh,
                )
                walker = Walker(context, stream, lister, result, parent=parent, sprints=False)
                got = await walker.run(walk, watermark)
                if walker.missing:
                    await _parent_gone(context, stream, parent, result)
                else:
                    reached[parent] = got

        # Parents side by side (each its own position), paced by the shared rate limit.
        await all_or_stop(one(p) for p in parents)
        kept = [p for p in parents if p in reached]
        known = [t for t in reached.values() if t is not None]
        oldest = min(known) if known else None
        read = len(kept)
        async with pool.acquire() as conn, conn.transaction():
            await leases.check(conn)
            await pages.forget_parents(conn, source.name, stream.name, kept)
            await pages.save_position(
                conn, source.name, stream.name, watermark=oldest, walk=None, success=True
            )
        result.watermark = oldest
        log.info(
            "%s.%s: %d parents read",
            source.name,
            stream.name,
            read,
            extra=log_ids(context.run_id, source.name, stream.name),
        )


async def _parent_gone(
    context: SyncContext[Any], stream: Stream, parent: str, result: StreamResult
) -> None:
    """The parent's lists answer 404: it was deleted; so were its children."""
    assert stream.parent is not None
    source = context.source
    at = datetime.now(UTC)
    async with context.pool.acquire() as conn, conn.transaction():
        await leases.check(conn)
        await marks.mark_deleted(conn, source.schema, stream.parent.stream, [parent], at)
        gone = await marks.mark_children(conn, source.schema, stream.name, stream.parent.stream)
        await runs.add_stream_counts(conn, context.run_id, stream.name, deleted=gone)
    result.deleted += gone
    log.info(
        "%s.%s: %s %s is gone (404): its rows are marked deleted",
        source.name,
        stream.name,
        stream.parent.stream,
        parent,
        extra=log_ids(context.run_id, source.name, stream.name),
    )
