"""A stream's part in a run: its ``syncer.stream_runs`` row, begun and always ended with how
the stream ended; and work run side by side, stopped together.

Every strategy (``syncer.extract``), every source type's ``sync_stream`` and every runner that
goes stream by stream (sync, sweep, verify) reads a stream inside :func:`stream_run` (or
:func:`stream_run_in`): the row is started, and whatever happens inside (success, a syncer
error, a signal, a cancellation) is recorded as the stream's outcome, while the other streams
go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Coroutine, Iterable
from typing import Any, Protocol

from syncer import shutdown
from syncer.errors import SyncerError
from syncer.http.client import RequestStats
from syncer.results import Outcome, StreamResult, SyncContext
from syncer.store import leases, runs
from syncer.store.types import Connection, Pool

__all__ = ["StreamRunEnd", "all_or_stop", "finish_stream", "log_ids", "stream_run", "stream_run_in"]

log = logging.getLogger(__name__)


async def all_or_stop(work: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run ``work`` side by side; an error none of them handles (the database failed) stops
    the others at once, rather than leaving them to run on unawaited."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class StreamRunEnd(Protocol):
    """What the end of a stream run records (a sync's :class:`StreamResult`, a sweep's)."""

    stream: str
    outcome: str
    error: str | None
    error_kind: str | None
    warning: str | None
    http: RequestStats
    committed_requests: int  # requests already counted with a page


async def finish_stream(pool: Pool, run_id: int, result: StreamRunEnd) -> None:
    async def write(conn: Connection) -> None:
        await runs.finish_stream_run(
            conn,
            run_id,
            result.stream,
            result.outcome,
            result.error,
            result.http.requests - result.committed_requests,
            warning=result.warning,
        )

    await leases.bookkeeping(pool, write, f"the end of {result.stream}'s stream run")


def log_ids(run_id: int, source: str, stream: str) -> dict[str, Any]:
    """Fields a structured log line carries (``--log-format json``)."""
    return {"run_id": run_id, "source": source, "stream": stream}


@contextlib.asynccontextmanager
async def stream_run(
    context: SyncContext[Any],
    result: StreamResult,
    *,
    interrupted: str = "stopped by a signal; resumes next run",
) -> AsyncIterator[None]:
    """One stream's run, for a source type's ``sync_stream``: its ``syncer.stream_runs`` row
    started (``result.resumed_after_pages`` set first, if it resumes) and always ended, and
    how the block ended as the stream's outcome: succeeded; interrupted by a signal (with
    ``interrupted`` as the reason); failed with a syncer error's message (the error is not
    raised further: the other streams go on); cancelled."""
    async with stream_run_in(
        context.pool,
        context.run_id,
        context.source.name,
        result,
        interrupted=interrupted,
        resumed_after_pages=result.resumed_after_pages,
    ):
        yield


@contextlib.asynccontextmanager
async def stream_run_in(
    pool: Pool,
    run_id: int,
    source: str,
    result: StreamRunEnd,
    *,
    interrupted: str,
    resumed_after_pages: int | None = None,
) -> AsyncIterator[None]:
    """:func:`stream_run` for a stream's part of any run (a sweep's too), given its parts."""
    async with pool.acquire() as conn:
        await runs.start_stream_run(conn, run_id, result.stream, resumed_after_pages)
    try:
        yield
        result.outcome = Outcome.SUCCEEDED
    except shutdown.Interrupted:
        result.outcome, result.error = Outcome.INTERRUPTED, interrupted
    except SyncerError as exc:
        result.outcome, result.error = Outcome.FAILED, exc.message
        result.error_kind = type(exc).__name__
        log.info(
            "%s.%s failed: %s",
            source,
            result.stream,
            exc.message,
            extra=log_ids(run_id, source, result.stream),
        )
    except asyncio.CancelledError:
        result.outcome, result.error = Outcome.INTERRUPTED, "cancelled"
        raise
    finally:
        await asyncio.shield(finish_stream(pool, run_id, result))
