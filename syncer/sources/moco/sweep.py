"""The MOCO deletion sweep: records deleted at the source get ``_deleted_at`` in the warehouse.

MOCO has no tombstones (docs/vendors/moco.md): a deleted record drops out of every list, so an
incremental sync never learns of it. The sweep asks MOCO, per stream, which of the ids the
warehouse holds still exist: MOCO's ``ids`` filter with 100 ids per request, plus the
parameters the sync sends (``include_archived``, ``include_disregarded``: archived is not
deleted). MOCO serves 100 records per page, so one answer lists exactly the ids of the chunk
that still exist, and a sweep costs one request per 100 rows. (Asking first for ``X-Total``
with ``per_page=1`` and paging only the chunks that fall short would cost that much plus one
request per chunk with a deletion.)

- Ids of live rows missing from the answers are deleted: marked ``_deleted_at = now()``,
  never removed. Unless more than ``deletion_guard`` of the stream's live rows are missing at
  once (a key that lost access looks the same, see ``deletions.py``): then none is marked and
  the stream run carries a warning.
- Rows marked deleted are asked about too, and those the source lists again are restored
  (stored as served now, ``_deleted_at`` null). A sync restores a row whenever it reads the
  record again (``store/pages.py`` clears ``_deleted_at`` on upsert), but a record that comes
  back unchanged is older than the watermark, and only the sweep sees it.
- A server that answers more than the ids asked for does not honour the filter: the stream
  fails rather than take most of it for deleted. A server that pages fewer than 100 records
  gets chunks of its page size, so no answer ever needs a second page (offset paging over a
  set that changes could skip a record, which would look deleted).
- Marks are written per stream in one transaction once the whole stream was checked (the
  guard needs the whole picture): a sweep interrupted in a stream marks nothing there, and the
  next one checks it again.
- One sweep of a stream at a time (an advisory lock of its own per stream, ``runframe.py``);
  syncs run beside it. A sync's page requested before a deletion was seen and committed after
  the mark does not clear it: rows are restored only by pages requested after the mark
  (``store/pages.py``). The sweep spends from the credential's rate limit, shared with the syncs.
- Bookkeeping: a run of kind ``sweep`` in ``syncer.runs``; per stream a ``stream_runs`` row
  with ``records`` = ids checked, ``deleted`` = rows marked, ``upserted`` = rows restored,
  ``requests`` and ``warning``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import aiohttp

from syncer import progress, shutdown
from syncer.deletions import guard_warning
from syncer.errors import (
    FatalError,
    MalformedResponseError,
)
from syncer.http.client import ApiClient, RequestStats
from syncer.pacing import Limiter
from syncer.pipeline import all_or_stop, client_for, stream_run_in
from syncer.results import StreamsReport
from syncer.runframe import exclusive_run
from syncer.sources.base import Row, StreamSpec
from syncer.sources.moco import api as moco
from syncer.sources.moco import sweep_store as sweeps
from syncer.sources.moco.settings import MocoSourceSettings
from syncer.store import locks
from syncer.store.types import Pool

log = logging.getLogger(__name__)

CHUNK = 100  # ids per request: one MOCO page holds 100 records
SWEEP_LOCK_CLASS = locks.SWEEP  # name: "source.stream"


@dataclass
class StreamSweep:
    stream: str
    outcome: str = "running"
    error: str | None = None
    error_kind: str | None = None  # the error's class: streams failing alike are reported once
    checked: int = 0  # ids asked about (live and deleted rows)
    present: int = 0  # of those, listed by the source
    deleted: int = 0  # rows marked deleted
    restored: int = 0  # rows marked deleted that the source lists again
    withheld: int = 0  # missing ids the guard kept from being marked
    total: int | None = None  # ids to check, once counted
    warning: str | None = None
    http: RequestStats = field(default_factory=RequestStats)
    committed_requests: int = 0  # none counted before the stream's end (``finish_stream``)

    # What the daemon's metrics count per stream (observability.record_sync): records read,
    # rows written, records rejected.
    @property
    def records(self) -> int:
        return self.present

    @property
    def upserted(self) -> int:
        return self.restored

    @property
    def rejected(self) -> int:
        return 0


@dataclass
class SweepResult(StreamsReport):
    run_id: int
    source: str
    streams: list[StreamSweep]
    elapsed_s: float
    http: RequestStats


# --- the pure part -----------------------------------------------------------------------------


def ids_params(spec: StreamSpec, chunk: Sequence[int]) -> dict[str, str]:
    """The query asking which of ``chunk`` exist, with the sync's fixed parameters."""
    return {
        **spec.params,
        "ids": ",".join(str(i) for i in chunk),
        "page": "1",
        "per_page": str(len(chunk)),
    }


@dataclass(frozen=True)
class Decision:
    gone: list[int]  # live rows to mark deleted
    back: list[int]  # deleted rows the source lists again
    missing: int  # live rows the source no longer lists (gone, unless withheld)
    warning: str | None  # why the missing ones are not marked


def decide(
    stream: str,
    live: Collection[int],
    deleted: Collection[int],
    present: Collection[int],
    guard: float,
) -> Decision:
    """What a complete check of a stream changes, with the deletion guard applied."""
    found = set(present)
    missing = sorted(set(live) - found)
    back = sorted(found & set(deleted))
    warning = guard_warning(
        stream,
        len(missing),
        len(live),
        guard,
        missing_from="the source",
        advice="If they really were deleted, raise deletion_guard for one sweep and run it "
        "again; otherwise check that the key still sees every record",
    )
    return Decision([] if warning else missing, back, len(missing), warning)


# --- the run -----------------------------------------------------------------------------------


async def sweep_source(
    pool: Pool,
    session: aiohttp.ClientSession,
    source: MocoSourceSettings,
    *,
    streams: Sequence[str] = (),
    command: str = "sweep",
    limiter: Limiter | None = None,
    backoff_base_s: float = 1.0,
) -> SweepResult:
    """Check every stored id of ``source`` (its streams, or ``streams``) and mark deletions."""
    names = list(streams) or list(source.streams)
    client = client_for(session, source, limiter, backoff_base_s=backoff_base_s)
    started = time.monotonic()
    results = [StreamSweep(name) for name in names]
    progress.watch(results)
    async with exclusive_run(
        pool,
        lock_class=SWEEP_LOCK_CLASS,
        kind="sweep",
        source=source.name,
        command=command,
        keys=[f"{source.name}.{name}" for name in names],
        busy=lambda keys: (
            f"a sweep of {', '.join(keys)} is running against this database; "
            "wait for it to finish (see `syncer status`)"
        ),
    ) as frame:
        run_id = frame.run_id
        gate = asyncio.Semaphore(source.concurrency)

        async def one(result: StreamSweep) -> None:
            async with gate:
                spec = moco.STREAMS[result.stream]
                await _sweep_stream(pool, client, source, spec, run_id, result)

        await all_or_stop(one(r) for r in results)
        frame.end_as(results)
    return SweepResult(run_id, source.name, results, time.monotonic() - started, client.stats)


async def _sweep_stream(
    pool: Pool,
    client: ApiClient,
    source: MocoSourceSettings,
    spec: StreamSpec,
    run_id: int,
    result: StreamSweep,
) -> None:
    interrupted = "stopped by a signal; sweeps again next run"
    async with stream_run_in(pool, run_id, source.name, result, interrupted=interrupted):
        async with pool.acquire() as conn:
            local = await sweeps.local_ids(conn, source.schema, spec.name)
        checker = _Checker(client, f"{source.base_url}{spec.path}", spec, result.http)
        present: set[int] = set()
        back: list[Row] = []
        ids = sorted(local.live | local.deleted)
        result.total = len(ids)
        done = 0
        while done < len(ids):
            shutdown.check()
            chunk = ids[done : done + checker.size]
            rows = await checker.check(chunk)
            if rows is None:  # more than the server serves a page: again, in smaller chunks
                continue
            present.update(r.id for r in rows)
            back += [r for r in rows if r.id in local.deleted]
            done += len(chunk)
            result.checked = done
        decision = decide(spec.name, local.live, local.deleted, present, source.deletion_guard)
        result.present = len(present)
        if decision.warning:
            result.warning, result.withheld = decision.warning, decision.missing
            log.warning("%s.%s: %s", source.name, spec.name, decision.warning)
        async with pool.acquire() as conn:
            result.deleted, result.restored = await sweeps.commit(
                conn,
                sweeps.SweepCommit(
                    schema=source.schema,
                    table=spec.name,
                    volatile=spec.volatile,
                    run_id=run_id,
                    gone=decision.gone,
                    back=back,  # exactly decision.back, with their records
                    checked=result.checked,
                    first_requested_at=checker.first_requested_at,
                    last_answered_at=checker.last_answered_at,
                ),
            )
        log.info(
            "%s.%s: %d ids checked in %d requests, %d deleted, %d restored",
            source.name,
            spec.name,
            result.checked,
            result.http.requests,
            result.deleted,
            result.restored,
            extra={"run_id": run_id, "source": source.name, "stream": spec.name},
        )


class _Checker:
    """Asks a stream which ids of a chunk exist, one request per chunk."""

    def __init__(self, client: ApiClient, url: str, spec: StreamSpec, stats: RequestStats):
        self._client, self._url, self._spec, self._stats = client, url, spec, stats
        self.size = CHUNK  # lowered to the server's page size if it serves fewer
        self.first_requested_at: datetime | None = None  # when the first request began
        self.last_answered_at: datetime | None = None  # when the latest answer came in

    async def check(self, chunk: Sequence[int]) -> list[Row] | None:
        """The records of ``chunk`` the source lists; None if they take more than one page
        (then :attr:`size` is the server's page size, and the chunk is to be asked again)."""
        self.first_requested_at = self.first_requested_at or datetime.now(UTC)
        page = await moco.fetch_page(
            self._client, self._url, ids_params(self._spec, chunk), self._spec, stats=self._stats
        )
        self.last_answered_at = datetime.now(UTC)
        rows, served = page.rows, page.count  # the sync records what cannot be stored
        total = page.total
        asked = set(chunk)
        if any(r.id not in asked for r in rows) or (total is not None and total > len(chunk)):
            raise FatalError(
                f"{self._url} does not honour the ids filter (asked for {len(chunk)} ids, "
                f"it lists {total if total is not None else len(rows)} records); without it "
                "the sweep cannot tell deleted records from the others, so none were marked"
            )
        # Link's rel="next" as sent: on an empty page too, more is a misbehaving server.
        if not page.next_link and (total is None or total <= served):
            return rows
        # Fewer records a page than asked for: from now on, chunks that each fit one page.
        if not served or served >= len(chunk):
            raise MalformedResponseError(
                f"{self._url} answered {served} of {len(chunk)} records asked for by id "
                "and says more follow; the API is misbehaving, try again later"
            )
        self.size = served
        return None
