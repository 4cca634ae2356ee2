"""A backfill's bookkeeping: its run (``syncer.backfills``) and its windows
(``syncer.backfill_windows``, one row per window with where its read stands).

``runners/backfill.py`` plans and reads the windows; each page it stores commits its rows and
:func:`save_page` in one transaction, so a window's position never runs ahead of its rows.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from syncer.store.types import Connection

Window = tuple[datetime, datetime]


async def close_dead(conn: Connection, source: str, stream: str, current: int) -> None:
    """Backfills of the stream still 'running' died (we hold the lock, so none is live)."""
    await conn.execute(
        "update syncer.backfills set outcome = 'interrupted', finished_at = now(),"
        " error = 'the process ended before the backfill finished'"
        " where source = $1 and stream = $2 and outcome = 'running' and id <> $3",
        source,
        stream,
        current,
    )


async def start(
    conn: Connection,
    source: str,
    stream: str,
    windows: Sequence[Window],
    window_s: float,
    command: str,
) -> int:
    """A new backfill's row; its id."""
    backfill_id: int = await conn.fetchval(
        "insert into syncer.backfills (source, stream, range_start, range_end, window_s,"
        " command, pid, host, windows_total) values ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        " returning id",
        source,
        stream,
        windows[0][0],
        windows[-1][1],
        int(window_s),
        command,
        os.getpid(),
        socket.gethostname(),
        len(windows),
    )
    return backfill_id


@dataclass(frozen=True)
class StoredWindow:
    window: Window
    done: bool
    walk: dict[str, Any] | None  # where a pending window's read stands (Walk.to_json)


async def windows_within(
    conn: Connection, source: str, stream: str, start: datetime, end: datetime
) -> list[StoredWindow]:
    """The windows of the stream that overlap ``[start, end)``, done or pending."""
    import orjson

    rows = await conn.fetch(
        "select window_start, window_end, status, walk from syncer.backfill_windows"
        " where source = $1 and stream = $2 and window_start < $4 and window_end > $3",
        source,
        stream,
        start,
        end,
    )
    return [
        StoredWindow(
            (r["window_start"], r["window_end"]),
            r["status"] == "done",
            orjson.loads(r["walk"]) if r["walk"] is not None else None,
        )
        for r in rows
    ]


async def claim(
    conn: Connection, source: str, stream: str, backfill_id: int, windows: Sequence[Window]
) -> None:
    """``windows`` belong to backfill ``backfill_id`` now (a row each, 'pending' until done)."""
    async with conn.transaction():
        await conn.executemany(
            """
            insert into syncer.backfill_windows (source, stream, window_start, window_end,
                                                 backfill_id)
            values ($1, $2, $3, $4, $5)
            on conflict (source, stream, window_start, window_end) do update
                set backfill_id = excluded.backfill_id
            """,
            [(source, stream, s, e, backfill_id) for s, e in windows],
        )


@dataclass(frozen=True)
class PageCounts:
    """What one stored page adds to its window's row."""

    requests: int
    records: int
    upserted: int
    rejected: int


async def save_page(
    conn: Connection,
    source: str,
    stream: str,
    backfill_id: int,
    window: Window,
    walk: dict[str, Any] | None,
    counts: PageCounts,
    *,
    done: bool,
) -> None:
    """A page of ``window`` stored: its counts and the window's position (``walk``; None once
    ``done``). In the transaction that stores the page's rows."""
    import orjson

    await conn.execute(
        """
        update syncer.backfill_windows set
            walk = $5::jsonb, pages = pages + 1, requests = requests + $6,
            records = records + $7, upserted = upserted + $8,
            rejected = rejected + $9, backfill_id = $10,
            status = case when $11 then 'done' else status end,
            finished_at = case when $11 then now() end
        where source = $1 and stream = $2
          and window_start = $3 and window_end = $4
        """,
        source,
        stream,
        window[0],
        window[1],
        orjson.dumps(walk).decode() if walk is not None else None,
        counts.requests,
        counts.records,
        counts.upserted,
        counts.rejected,
        backfill_id,
        done,
    )


@dataclass(frozen=True)
class Finished:
    """How a backfill ended, as ``syncer.backfills`` keeps it."""

    outcome: str
    error: str | None
    windows_skipped: int
    windows_done: int
    requests: int
    records: int
    upserted: int
    rejected: int


async def finish(conn: Connection, backfill_id: int, end: Finished) -> None:
    await conn.execute(
        """
        update syncer.backfills set outcome = $2, error = $3, finished_at = now(),
            windows_skipped = $4, windows_done = $5, requests = $6, records = $7,
            upserted = $8, rejected = $9
        where id = $1
        """,
        backfill_id,
        end.outcome,
        end.error,
        end.windows_skipped,
        end.windows_done,
        end.requests,
        end.records,
        end.upserted,
        end.rejected,
    )
