"""Runs and stream runs: what ran, when, with which counts and outcome."""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from typing import Any

from syncer.store.types import Connection


async def start_run(conn: Connection, *, kind: str, source: str, command: str) -> int:
    run_id: int = await conn.fetchval(
        "insert into syncer.runs (kind, source, command, pid, host)"
        " values ($1, $2, $3, $4, $5) returning id",
        kind,
        source,
        command,
        os.getpid(),
        socket.gethostname(),
    )
    return run_id


async def mark_interrupted(
    conn: Connection, *, kind: str, source: str, current_run: int, previous: Sequence[int] = ()
) -> int:
    """Close the runs of ``kind`` of ``source`` that died without finishing.

    Called holding the locks (and leases, ``store/leases.py``) of the current run's streams.
    Dead are: the runs that held those leases before (``previous``: their lock was free, so
    their session is gone), and runs that hold no lease at all (a run takes its leases in the
    transaction that starts it; they were all taken over since, or it predates leases). A
    live run of another stream of the source holds its leases, and is left alone.
    """
    status: str = await conn.execute(
        """
        with dead as (
            update syncer.runs r set outcome = 'interrupted', finished_at = now(),
                error = 'the process ended before the run finished'
            where r.source = $1 and r.kind = $2 and r.outcome = 'running' and r.id <> $3
              and (r.id = any($4::bigint[])
                   or not exists (select 1 from syncer.leases l
                                  where l.run_id = r.id and l.resource like $2 || ':%'))
            returning id
        )
        update syncer.stream_runs set outcome = 'interrupted', finished_at = now()
        where run_id in (select id from dead) and outcome = 'running'
        """,
        source,
        kind,
        current_run,
        list(previous),
    )
    return int(status.rsplit(" ", 1)[-1])


async def fail_unfinished_streams(conn: Connection, run_id: int, error: str) -> None:
    """The stream runs of ``run_id`` that did not succeed end failed with ``error`` (the run
    lost its lock: whatever else they were doing, that is why they stopped)."""
    await conn.execute(
        "update syncer.stream_runs set outcome = 'failed', error = $2,"
        " finished_at = coalesce(finished_at, now())"
        " where run_id = $1 and outcome in ('running', 'interrupted')",
        run_id,
        error,
    )


async def start_stream_run(
    conn: Connection, run_id: int, stream: str, resumed_from: int | None
) -> None:
    await conn.execute(
        "insert into syncer.stream_runs (run_id, stream, resumed_after_pages) values ($1, $2, $3)",
        run_id,
        stream,
        resumed_from,
    )


async def finish_stream_run(
    conn: Connection,
    run_id: int,
    stream: str,
    outcome: str,
    error: str | None,
    extra_requests: int,
    *,
    warning: str | None = None,
) -> None:
    # A stream run the frame already failed (its run lost its lock: see
    # :func:`fail_unfinished_streams`) stays failed with that reason, whenever the stream's own
    # end arrives: it is why the stream stopped, whatever the stream itself saw.
    await conn.execute(
        "update syncer.stream_runs set"
        " outcome = case when outcome = 'failed' then outcome else $3 end,"
        " error = case when outcome = 'failed' then error else $4 end,"
        " finished_at = coalesce(finished_at, now()),"
        " requests = requests + $5, warning = $6 where run_id = $1 and stream = $2",
        run_id,
        stream,
        outcome,
        error,
        extra_requests,
        warning,
    )


async def finish_run(conn: Connection, run_id: int, outcome: str, error: str | None) -> None:
    await conn.execute(
        "update syncer.runs set outcome = $2, error = $3, finished_at = now() where id = $1",
        run_id,
        outcome,
        error,
    )


async def end_run(
    conn: Connection, run_id: int, outcome: str, error: str | None, *, lost: str | None = None
) -> None:
    """End the run as its work says; a run that ``lost`` its locks (the message why) fails
    its unfinished streams with that message, and ends failed with it unless it succeeded."""
    if lost:
        await fail_unfinished_streams(conn, run_id, lost)
    if lost and outcome != "succeeded":
        await finish_run(conn, run_id, "failed", lost)
    else:
        await finish_run(conn, run_id, outcome, error)


async def stream_run_counts(conn: Connection, run_id: int) -> list[dict[str, Any]]:
    rows = await conn.fetch(
        "select stream, outcome, error, pages, requests, records, upserted, rejected,"
        " resumed_after_pages from syncer.stream_runs where run_id = $1 order by stream",
        run_id,
    )
    return [dict(r) for r in rows]


async def add_stream_counts(
    conn: Connection,
    run_id: int,
    stream: str,
    *,
    pages: int = 0,
    requests: int = 0,
    records: int = 0,
    upserted: int = 0,
    rejected: int = 0,
    deleted: int = 0,
) -> None:
    """Add to a stream run's counts (in the caller's transaction, with what they count)."""
    await conn.execute(
        "update syncer.stream_runs set pages = pages + $3, requests = requests + $4,"
        " records = records + $5, upserted = upserted + $6, rejected = rejected + $7,"
        " deleted = deleted + $8 where run_id = $1 and stream = $2",
        run_id,
        stream,
        pages,
        requests,
        records,
        upserted,
        rejected,
        deleted,
    )
