"""One MOCA stream synced: a full scan (or an ``updatedSince`` read), deletions, analytics.

MOCA documents no updated-since filter, and its configuration data is small, so a stream is
scanned in full with offset paging and a row is rewritten only when its ``updatedAt`` moved.
Records missing from a complete scan are candidates for deletion. Offset paging over a set
that changes can skip a record, so each candidate is confirmed by fetching it alone: a 404
marks it deleted (``_deleted_at``, never removed), anything else stores it. If more than
``deletion_guard`` of a stream went missing, nothing is marked and the run says why.

If the server honours ``updatedSince`` (tested each run by asking for changes after a time in
the future: an honouring server answers nothing), runs between full scans read only what
changed since the watermark, which is the server's clock (``X-Server-Timestamp``) when the
previous read began, minus ``overlap``.

Analytics are pulled per app and metric in windows [from, to), upserted on (app, metric,
interval, bucket start, geohash), re-pulling a trailing window because recent buckets are
restated. A point without a bucket time ``t`` is an aggregate over the whole window (MOCA's
"aggregated user geolocations"): it is stored with the window's range, and pulling the same
range again replaces it. A response or point that fits neither shape is kept in
``syncer.rejected_records`` with the reason, and the stream goes on with a warning.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from syncer import shutdown
from syncer.deletions import guard_warning
from syncer.errors import FatalError
from syncer.extract.running import stream_run
from syncer.http.client import RequestStats
from syncer.results import StreamResult, SyncContext
from syncer.sources.moca import api as moca
from syncer.sources.moca import scan_store as scans
from syncer.sources.moca.settings import MocaSourceSettings
from syncer.store.types import Connection

log = logging.getLogger(__name__)

ANALYTICS_CHUNK = {
    "hour": timedelta(days=7),
    "day": timedelta(days=92),
    "month": timedelta(days=366),
}


ScanContext = SyncContext[MocaSourceSettings]


def _url(source: MocaSourceSettings, stream: str, default: str, **parts: str) -> str:
    path = source.paths.get(stream, default)
    for key, value in parts.items():
        path = path.replace("{" + key + "}", value)
    return f"{source.base_url}{path}"


async def sync_stream(ctx: ScanContext, result: StreamResult) -> None:
    """The MOCA source type's ``sync_stream``: one stream's run, begun and ended."""
    async with stream_run(ctx, result, interrupted="stopped by a signal; scans again next run"):
        await scan_stream(ctx, result.stream, result)


async def scan_stream(ctx: ScanContext, name: str, result: StreamResult) -> None:
    """Sync one MOCA stream; counts go to ``result``."""
    if name == "analytics":
        await _sync_analytics(ctx, result)
        return
    stream = moca.STREAMS[name]
    source = ctx.source
    async with ctx.pool.acquire() as conn:
        watermark, state = await scans.load_state(conn, source.name, name)
        parents = await _parent_ids(conn, source.schema, stream)
    last_full = state.get("last_full_scan")
    full_due = (
        ctx.full_refresh
        or watermark is None
        or last_full is None
        or (datetime.now(UTC) - datetime.fromisoformat(last_full)).total_seconds()
        >= source.full_scan_every_s
    )
    since = None
    if not full_due and await _honours_updated_since(ctx, stream, parents, result.http):
        assert watermark is not None
        since = watermark - timedelta(seconds=source.overlap_s)
    started_at: datetime | None = None
    seen: set[str] = set()
    for parent in parents:
        offset = 0
        while True:
            shutdown.check()
            params = {"offset": str(offset), "limit": str(source.page_size)}
            if since is not None:
                params["updatedSince"] = str(moca.to_ms(since))
            before = result.http.requests
            url = _url(source, name, stream.path, parent=parent or "")
            response = await ctx.client.get(url, params, stats=result.http)
            started_at = started_at or moca.server_time(response) or datetime.now(UTC)
            page = moca.parse_list(response)
            rows, rejected = moca.split_items(stream, page.items, parent)
            async with ctx.pool.acquire() as conn:
                result.upserted += await scans.upsert_rows(
                    conn,
                    stream,
                    rows,
                    schema=source.schema,
                    source=source.name,
                    run_id=ctx.run_id,
                    rejected=rejected,
                    requests=result.http.requests - before,
                )
            result.committed_requests = result.http.requests
            result.pages += 1
            result.records += len(page.items)
            result.rejected += len(rejected)
            seen.update(r.id for r in rows)
            offset += len(page.items)
            done = len(page.items) < source.page_size or not page.items
            if page.total is not None:
                done = done or offset >= page.total
                if len(parents) == 1:  # the progress display's records left (one listing)
                    result.left = 0 if done else max(0, page.total - offset)
            if done:
                break
    if since is None:
        await _deletions(ctx, stream, seen, started_at or datetime.now(UTC), result)
    if result.rejected:
        odd = (
            f"{result.rejected} records did not fit and are kept in syncer.rejected_records "
            "with the reason; the rest is stored"
        )
        result.warning = f"{result.warning}; {odd}" if result.warning else odd
        log.warning("%s.%s: %s", source.name, name, odd)
    async with ctx.pool.acquire() as conn:
        update: dict[str, Any] = {}
        if since is None:
            update["last_full_scan"] = datetime.now(UTC).isoformat()
        await scans.save_state(conn, source.name, name, update, watermark=started_at, success=True)
    result.watermark = started_at


async def _parent_ids(conn: Connection, schema: str, stream: moca.MocaStream) -> list[str | None]:
    if stream.parent is None:
        return [None]
    ids = sorted(await scans.live_ids(conn, schema, stream.parent))
    return list(ids)


async def _honours_updated_since(
    ctx: ScanContext, stream: moca.MocaStream, parents: list[str | None], stats: RequestStats
) -> bool:
    """Ask for what changed after tomorrow: a server that honours the filter answers nothing."""
    parent = next((p for p in parents), None)
    url = _url(ctx.source, stream.name, stream.path, parent=parent or "")
    tomorrow = datetime.now(UTC) + timedelta(days=1)
    response = await ctx.client.get(
        url, {"offset": "0", "limit": "1", "updatedSince": str(moca.to_ms(tomorrow))}, stats=stats
    )
    honoured = not moca.parse_list(response).items
    if not honoured:
        log.info("%s.%s: updatedSince is not honoured; full scan", ctx.source.name, stream.name)
    return honoured


async def _deletions(
    ctx: ScanContext, stream: moca.MocaStream, seen: set[str], at: datetime, result: StreamResult
) -> None:
    """Mark what a complete scan no longer found, once each is confirmed gone."""
    async with ctx.pool.acquire() as conn:
        live = await scans.live_ids(conn, ctx.source.schema, stream.name)
    missing = sorted(live - seen)
    if not missing:
        return
    warning = guard_warning(
        stream.name,
        len(missing),
        len(live),
        ctx.source.deletion_guard,
        missing_from="the scan",
        advice="If they really were deleted, raise deletion_guard for one run "
        "(or run with --full-refresh after checking the source)",
    )
    if warning is not None:
        result.warning = warning
        log.warning("%s.%s: %s", ctx.source.name, stream.name, result.warning)
        return
    gone: list[str] = []
    for record_id in missing:
        before = result.http.requests
        url = f"{ctx.source.base_url}{stream.item_path(record_id)}"
        response = await ctx.client.get(url, stats=result.http, missing_ok=True)
        if response.status == 404:
            gone.append(record_id)
            continue
        # Skipped by offset paging while the set moved: it exists, store it.
        rows, rejected = moca.split_items(stream, [response.json()], None)
        async with ctx.pool.acquire() as conn:
            result.upserted += await scans.upsert_rows(
                conn,
                stream,
                rows,
                schema=ctx.source.schema,
                source=ctx.source.name,
                run_id=ctx.run_id,
                rejected=rejected,
                requests=result.http.requests - before,
            )
        result.committed_requests = result.http.requests
        result.rejected += len(rejected)
    if gone:
        async with ctx.pool.acquire() as conn:
            result.deleted += await scans.mark_deleted(
                conn, ctx.source.schema, stream.name, gone, at, ctx.run_id
            )


async def _sync_analytics(ctx: ScanContext, result: StreamResult) -> None:
    source = ctx.source
    interval = source.analytics_interval
    async with ctx.pool.acquire() as conn:
        _, state = await scans.load_state(conn, source.name, "analytics")
        apps = sorted(await scans.live_ids(conn, source.schema, "apps"))
    if not apps:
        raise FatalError(
            "analytics are pulled per app and no apps are stored yet; "
            f"sync apps first: syncer sync {source.name} --stream apps"
        )
    now: datetime | None = None
    odd: dict[str, str] = {}  # metric -> the first reason one of its points was rejected
    for app in apps:
        for metric in source.analytics_metrics:
            key = f"{app}:{metric}:{interval}"
            if now is None:
                now = await _server_now(ctx, app, metric, interval, result)
            reached = moca.from_ms(state.get(key)) if key in state else None
            if reached is None or ctx.full_refresh:
                start = now - timedelta(seconds=source.analytics_since_s)
            else:
                start = reached - timedelta(seconds=source.analytics_restated_s)
            while start < now:
                shutdown.check()
                end = min(now, start + ANALYTICS_CHUNK[interval])
                before = result.http.requests
                url = _url(
                    source,
                    "analytics",
                    moca.ANALYTICS_PATH,
                    parent=app,
                    metric=moca.METRIC_NAMES[metric],
                )
                params = {
                    "from": str(moca.to_ms(start)),
                    "to": str(moca.to_ms(end)),
                    "interval": interval,
                }
                response = await ctx.client.get(url, params, stats=result.http)
                page = moca.split_analytics(
                    response.json(), app, metric, interval, (start, end), url
                )
                async with ctx.pool.acquire() as conn:
                    result.upserted += await scans.upsert_analytics(
                        conn,
                        page,
                        schema=source.schema,
                        run_id=ctx.run_id,
                        source=source.name,
                        state_key=key,
                        state_value=moca.to_ms(end),
                        requests=result.http.requests - before,
                    )
                result.committed_requests = result.http.requests
                result.pages += 1
                result.records += page.stored + len(page.rejected)
                result.rejected += len(page.rejected)
                for rejected in page.rejected:
                    odd.setdefault(metric, rejected.reason)
                start = end
    if odd:
        result.warning = (
            f"{result.rejected} analytics points or responses did not fit either known shape "
            f"(metrics {', '.join(sorted(odd))}; e.g. {next(iter(odd.values()))}); they are "
            "kept in syncer.rejected_records, the rest is stored"
        )
        log.warning("%s.analytics: %s", source.name, result.warning)
    async with ctx.pool.acquire() as conn:
        await scans.save_state(conn, source.name, "analytics", {}, watermark=now, success=True)
    result.watermark = now


async def _server_now(
    ctx: ScanContext, app: str, metric: str, interval: str, result: StreamResult
) -> datetime:
    """The server's clock, from a cheap request: analytics windows end there, not at ours."""
    url = _url(ctx.source, "apps", "/apps")
    response = await ctx.client.get(url, {"offset": "0", "limit": "1"}, stats=result.http)
    return moca.server_time(response) or datetime.now(UTC)
