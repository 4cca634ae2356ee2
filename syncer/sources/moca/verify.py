"""``syncer verify`` of a MOCA stream whose listing total differs from the warehouse: its diff.

The generic verify (``syncer.runners.verify``) compares each list's ``total`` (per parent,
summed) with the stream's live rows; where they differ, or the list gives no total, it asks
this module: the stream is listed again in full, as the scan lists it, and compared both ways.
Listed and not held live: missing, stored (with the scan's columns). Held live and not listed:
asked for one by one (offset paging over a set that changes can skip a record), and those
answered 404 are extra, marked ``_deleted_at``, unless more than ``deletion_guard`` of the
stream went missing at once (the scan's guard: then none is marked and the verify says why).
``repair=False`` (``--no-repair``) counts the same and writes nothing. A parent gone at the
source answers 404 for its children's list: none are listed there.

MOCA's syncs scan every list in full, so what was added since the last sync is missing here
too; a record changed since is no difference (its row is there).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from syncer import shutdown
from syncer.deletions import guard_warning
from syncer.results import StreamVerify, SyncContext
from syncer.sources.moca import api
from syncer.sources.moca import scan_store as scans
from syncer.sources.moca.settings import MocaSourceSettings
from syncer.store import marks

__all__ = ["rescan"]

log = logging.getLogger(__name__)


async def rescan(
    context: SyncContext[MocaSourceSettings], name: str, result: StreamVerify, repair: bool
) -> None:
    """Compare stream ``name`` in full with the warehouse (module docstring), into ``result``."""
    source, stream = context.source, api.STREAMS[name]
    async with context.pool.acquire() as conn:
        live = await scans.live_ids(conn, source.schema, name)
        parents: list[str | None] = [None]
        if stream.parent is not None:
            parents = [str(p) for p in await marks.live_keys(conn, source.schema, stream.parent)]
    listed: set[str] = set()
    missing: set[str] = set()
    for parent in parents:
        offset = 0
        while True:
            shutdown.check()
            path = source.paths.get(name, stream.path).replace("{parent}", parent or "")
            response = await context.client.get(
                f"{source.base_url}{path}",
                {"offset": str(offset), "limit": str(source.page_size)},
                stats=result.http,
                missing_ok=parent is not None,
            )
            if response.status == 404:  # the parent is gone, and its children with it
                break
            page = api.parse_list(response)
            rows, rejected = api.split_items(stream, page.items, parent)
            listed.update(r.id for r in rows)
            lacking = [r for r in rows if r.id not in live and r.id not in missing]
            missing.update(r.id for r in lacking)
            result.missing += len(lacking)
            if lacking and repair:
                async with context.pool.acquire() as conn:
                    stored = await scans.upsert_rows(
                        conn,
                        stream,
                        lacking,
                        schema=source.schema,
                        source=source.name,
                        run_id=context.run_id,
                        rejected=rejected,
                    )
                result.repaired += stored
            offset += len(page.items)
            done = len(page.items) < source.page_size or not page.items
            if page.total is not None:
                done = done or offset >= page.total
            if done:
                break
    result.source_count = len(listed)
    await _gone(context, name, sorted(live - listed), len(live), result, repair)


async def _gone(
    context: SyncContext[MocaSourceSettings],
    name: str,
    candidates: list[str],
    live: int,
    result: StreamVerify,
    repair: bool,
) -> None:
    """The rows not listed: asked for one by one; those gone are extra (marked, if repairing,
    and if not too many: the deletion guard)."""
    if not candidates:
        return
    source = context.source
    warning = guard_warning(
        name,
        len(candidates),
        live,
        source.deletion_guard,
        missing_from="the listing",
        advice="If they really were deleted, raise deletion_guard and verify again",
    )
    if warning is not None:
        result.extra += len(candidates)
        result.warning = warning
        log.warning("%s.%s: %s", source.name, name, warning)
        return
    gone: list[str] = []
    for record_id in candidates:
        shutdown.check()
        url = f"{source.base_url}{api.STREAMS[name].item_path(record_id)}"
        response = await context.client.get(url, stats=result.http, missing_ok=True)
        if response.status == 404:
            gone.append(record_id)
        # Else it exists, skipped by offset paging while the set moved: no difference.
    result.extra += len(gone)
    if gone and repair:
        async with context.pool.acquire() as conn:
            result.repaired += await scans.mark_deleted(
                conn, source.schema, name, gone, datetime.now(UTC), context.run_id
            )
