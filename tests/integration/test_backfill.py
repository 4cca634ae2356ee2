"""Backfills end to end: real MOCO sandbox over loopback, real PostgreSQL, a real SIGKILL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time as _time
from dataclasses import replace
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import aiohttp
import orjson
import pytest

from syncer.errors import ConfigError, FatalError
from syncer.extract.walk import Walk
from syncer.results import BackfillProgress, BackfillResult
from syncer.runners.backfill import BACKFILL_LOCK_CLASS, plan_windows, run_backfill
from syncer.runners.sync import RUN_LOCK_CLASS, limiter_for, sync_source
from syncer.sandbox.moco import MocoSandbox, MocoSandboxSettings
from syncer.sandbox.moco_data import format_ts, parse_ts
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moco.api import format_updated_after
from tests.conftest import SANDBOX_KEY, moco_source, wait_for_dead_sessions
from tests.integration.test_moco_sync import source_contents, table_contents

STREAM = "activities"
PER_PAGE = 25  # small pages: windows span several pages, bulk edits need offset paging
DAY = 86400.0


@pytest.fixture
def moco() -> MocoSandbox:
    """The default data, in pages of 25, with a server limit these tests never reach."""
    settings = MocoSandboxSettings(
        max_per_page=PER_PAGE, rate_limit_requests=100_000, rate_limit_window_s=1.0
    )
    return MocoSandbox(settings=settings)


def full_pages(moco: MocoSandbox) -> dict[str, Any]:
    """Pages of 100 for tests that sync the whole stream (quicker); the settings to use."""
    moco.settings = replace(moco.settings, max_per_page=100)
    return {"per_page": 100}


def days_ago(n: int) -> date:
    return datetime.now(UTC).date() - timedelta(days=n)


def source(sandbox: RunningSandbox, **overrides: Any) -> Any:
    return moco_source(sandbox.moco_base_url, **{"per_page": PER_PAGE, **overrides})


async def backfill(
    pool: Any,
    sandbox: RunningSandbox,
    *,
    since: date,
    until: date | None,
    window_days: int = 10,
    stream: str = STREAM,
    **options: Any,
) -> BackfillResult:
    async with aiohttp.ClientSession() as session:
        return await run_backfill(
            pool,
            session,
            options.pop("settings", None) or source(sandbox),
            stream,
            since=since,
            until=until,
            window_s=window_days * DAY,
            command=f"backfill moco --stream {stream} --since {since}",
            backoff_base_s=0.01,
            **options,
        )


def bounds(since: date, until: date | None) -> tuple[datetime, datetime]:
    last = until or datetime.now(UTC).date()
    return (
        datetime.combine(since, time(), UTC),
        datetime.combine(last + timedelta(days=1), time(), UTC),
    )


async def assert_range_equals_source(
    pool: Any, moco: MocoSandbox, since: date, until: date | None
) -> None:
    """Every source record updated in the range is stored as served; nothing else is stale."""
    start, end = bounds(since, until)
    served = source_contents(moco, STREAM)
    expected = {i: r for i, r in served.items() if start <= parse_ts(r["updated_at"]) < end}
    stored = await table_contents(pool, STREAM)
    assert expected, "the range holds no records: the test proves nothing"
    missing = sorted(set(expected) - set(stored))
    assert not missing, f"{len(missing)} records of the range not stored"
    assert all(stored[i] == served[i] for i in stored)  # each row is the source's record
    # Extra rows only from the second before the range or the page that passed its end.
    assert all(parse_ts(stored[i]["updated_at"]) >= start - timedelta(seconds=1) for i in stored)


def updated_afters(moco: MocoSandbox) -> list[datetime]:
    return [
        parse_ts(r.query["updated_after"]) for r in moco.requests if r.path.endswith("/activities")
    ]


async def window_states(pool: Any) -> list[tuple[datetime, str, Walk | None]]:
    rows = await pool.fetch(
        "select window_start, status, walk from syncer.backfill_windows order by window_start"
    )
    return [
        (
            r["window_start"],
            r["status"],
            Walk.from_json(orjson.loads(r["walk"])) if r["walk"] else None,
        )
        for r in rows
    ]


async def test_a_backfill_stores_the_ranges_records_and_a_rerun_requests_nothing(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    since, until = days_ago(75), days_ago(3)
    seen: list[BackfillProgress] = []
    result = await backfill(pool, sandbox, since=since, until=until, progress=seen.append)
    assert result.ok, result.error
    planned = plan_windows(since, until, timedelta(days=10))
    assert (result.windows_total, result.windows_done, result.windows_skipped) == (
        len(planned),
        len(planned),
        0,
    )
    await assert_range_equals_source(pool, moco, since, until)
    # Bulk edits put more than a page of records in one second: offset paging was needed.
    assert any(r.query["page"] != "1" for r in moco.requests)
    assert result.requests == len(moco.requests)
    assert all(s == "done" and w is None for _, s, w in await window_states(pool))
    assert [s for s, _, _ in await window_states(pool)] == [s for s, _ in planned]
    # Progress: windows counted up to the total, records and rate reported.
    assert seen[0].windows_finished == 0
    assert seen[-1].windows_finished == seen[-1].windows_total == len(planned)
    assert seen[-1].records == result.records > 0
    assert seen[-1].records_per_s > 0
    # No incremental state, no sync run.
    assert await pool.fetchval("select count(*) from syncer.streams") == 0
    assert await pool.fetchval("select count(*) from syncer.runs") == 0
    row = await pool.fetchrow("select outcome, windows_done, records from syncer.backfills")
    assert tuple(row) == ("succeeded", len(planned), result.records)

    moco.reset_log()
    again = await backfill(pool, sandbox, since=since, until=until, progress=seen.append)
    assert again.ok
    assert (again.windows_done, again.windows_skipped) == (0, len(planned))
    assert moco.requests == []
    # Windows of another size inside the done range are covered too.
    smaller = await backfill(pool, sandbox, since=days_ago(60), until=until, window_days=3)
    assert smaller.ok
    assert smaller.windows_done == 0
    assert moco.requests == []


async def test_a_cancelled_backfill_resumes_at_its_first_unfinished_window(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    since, until = days_ago(75), days_ago(3)
    planned = plan_windows(since, until, timedelta(days=10))

    def cancel_after_three(p: BackfillProgress) -> None:
        if p.windows_done == 3:
            task = asyncio.current_task()
            assert task is not None
            task.cancel()

    task = asyncio.create_task(
        backfill(pool, sandbox, since=since, until=until, progress=cancel_after_three)
    )
    with pytest.raises(asyncio.CancelledError):
        await task
    states = await window_states(pool)
    assert [s for _, s, _ in states] == ["done"] * 3 + ["pending"] * (len(planned) - 3)
    assert await pool.fetchval("select outcome from syncer.backfills") == "interrupted"

    moco.reset_log()
    result = await backfill(pool, sandbox, since=since, until=until)
    assert result.ok, result.error
    assert (result.windows_skipped, result.windows_done) == (3, len(planned) - 3)
    first_unfinished = planned[3][0]
    afters = updated_afters(moco)
    assert min(afters) == first_unfinished - timedelta(seconds=1)
    assert not {s - timedelta(seconds=1) for s, _ in planned[:3]} & set(afters)
    await assert_range_equals_source(pool, moco, since, until)


CHILD = """
import asyncio, os, signal, sys
from datetime import date
import aiohttp
from syncer.runners.backfill import run_backfill
from syncer.config import RateLimit, Secret
from syncer.sources.moco.settings import MocoSourceSettings
from syncer.store.database import open_pool

url, base_url, since, until, window_s, kill_at_window = sys.argv[1:]
pages: dict = {}

def progress(p):
    if p.window is None:
        return
    pages[p.window] = pages.get(p.window, 0) + 1
    if p.windows_done == int(kill_at_window) and pages[p.window] == 2:
        os.kill(os.getpid(), signal.SIGKILL)  # after the window's second page committed

async def main():
    settings = MocoSourceSettings(
        name="moco", base_url=base_url, api_key=Secret("MOCO_API_KEY", os.environ["MOCO_API_KEY"]),
        rate_limit=RateLimit(1000, 1.0), per_page=PER_PAGE,
    )
    async with open_pool(url) as pool, aiohttp.ClientSession() as session:
        await run_backfill(
            pool, session, settings, "activities", since=date.fromisoformat(since),
            until=date.fromisoformat(until), window_s=float(window_s), command="backfill",
            progress=progress,
        )

asyncio.run(main())
""".replace("PER_PAGE", str(PER_PAGE))


async def test_a_backfill_killed_mid_window_resumes_in_that_window_and_never_rereads_done_ones(
    db_url: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    since, until = days_ago(90), days_ago(3)
    window = timedelta(days=20)  # about 80 records, several pages each
    planned = plan_windows(since, until, window)
    env = {**os.environ, "MOCO_API_KEY": SANDBOX_KEY}
    args = [db_url, sandbox.moco_base_url, str(since), str(until), str(window.total_seconds())]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CHILD, *args, "2", env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(child.communicate(), 60)
    assert child.returncode == -signal.SIGKILL, stderr.decode()
    await wait_for_dead_sessions(pool)

    states = await window_states(pool)
    assert [s for _, s, _ in states] == ["done", "done"] + ["pending"] * (len(planned) - 2)
    walk = states[2][2]
    assert walk is not None, "the kill should land inside the third window"
    assert walk.pages == 2
    assert walk.lower_bound is not None
    assert await pool.fetchval("select outcome from syncer.backfills") == "running"

    moco.reset_log()
    result = await backfill(pool, sandbox, since=since, until=until, window_days=20)
    assert result.ok, result.error
    assert (result.windows_skipped, result.windows_done) == (2, len(planned) - 2)
    first = moco.requests[0]
    # It resumes where the killed one stopped, inside the third window (an offset-paged
    # query, whose served records died with the process, is read again from its page 1) ...
    if walk.watched:
        assert walk.watch_lower is not None
        resume_at, page = walk.watch_lower, 1
    else:
        resume_at, page = walk.lower_bound, walk.page
    assert first.query["updated_after"] == format_updated_after(resume_at)
    assert first.query["page"] == str(page)
    assert resume_at >= planned[2][0] - timedelta(seconds=1)
    # ... and never asks for the windows done before.
    assert min(updated_afters(moco)) >= planned[2][0] - timedelta(seconds=1)
    outcomes = await pool.fetch("select outcome from syncer.backfills order by id")
    assert [r["outcome"] for r in outcomes] == ["interrupted", "succeeded"]
    await assert_range_equals_source(pool, moco, since, until)


async def test_a_backfill_leaves_the_incremental_state_exactly_as_it_was(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    settings = source(sandbox, **full_pages(moco))
    async with aiohttp.ClientSession() as session:
        synced = await sync_source(pool, session, settings, streams=[STREAM], backoff_base_s=0.01)
    assert synced.ok, synced.errors
    state = "select source, stream, watermark, walk, state, last_success_at, updated_at from"
    before = [tuple(r) for r in await pool.fetch(f"{state} syncer.streams")]
    runs = [tuple(r) for r in await pool.fetch("select * from syncer.runs")]
    assert before
    assert before[0][2] is not None  # a watermark to keep
    moco.data.update(STREAM, 30)  # the backfill finds changes the sync has not seen yet

    result = await backfill(
        pool, sandbox, since=days_ago(200), until=None, window_days=30, settings=settings
    )
    assert result.ok, result.error
    assert result.upserted >= 30
    assert [tuple(r) for r in await pool.fetch(f"{state} syncer.streams")] == before
    assert [tuple(r) for r in await pool.fetch("select * from syncer.runs")] == runs


async def test_a_backfill_and_a_sync_of_the_same_stream_run_at_once(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    settings = source(sandbox, **full_pages(moco))
    limiter = limiter_for(settings)  # one credential: both keep to one limit
    since = days_ago(120)
    async with aiohttp.ClientSession() as session:
        synced, filled = await asyncio.gather(
            sync_source(
                pool, session, settings, streams=[STREAM], limiter=limiter, backoff_base_s=0.01
            ),
            run_backfill(
                pool,
                session,
                settings,
                STREAM,
                since=since,
                until=None,
                window_s=10 * DAY,
                command="backfill",
                limiter=limiter,
                backoff_base_s=0.01,
            ),
        )
    assert synced.ok, synced.errors
    assert filled.ok, filled.error
    assert filled.windows_done == filled.windows_total > 5
    run = await pool.fetchrow("select started_at, finished_at from syncer.runs")
    fill = await pool.fetchrow("select started_at, finished_at from syncer.backfills")
    assert fill["started_at"] < run["finished_at"]
    assert run["started_at"] < fill["finished_at"]
    # The sync's view is the source's, and its watermark is the newest record it stored.
    assert await table_contents(pool, STREAM) == source_contents(moco, STREAM)
    newest = max(parse_ts(r["updated_at"]) for r in moco.data.records(STREAM))
    assert await pool.fetchval("select watermark from syncer.streams") == newest


async def test_one_backfill_per_stream_at_a_time_and_the_sync_lock_does_not_block_it(
    pool: Any, sandbox: RunningSandbox
) -> None:
    since, until = days_ago(30), days_ago(20)
    async with pool.acquire() as conn:
        await conn.execute(
            "select pg_advisory_lock($1, hashtext('moco.activities'))", RUN_LOCK_CLASS
        )
        assert (await backfill(pool, sandbox, since=since, until=until)).ok
        await conn.execute(
            "select pg_advisory_lock($1, hashtext('moco.activities'))", BACKFILL_LOCK_CLASS
        )
        with pytest.raises(FatalError, match=r"another backfill of moco\.activities"):
            await backfill(pool, sandbox, since=since, until=until)
        assert (await backfill(pool, sandbox, since=since, until=until, stream="deals")).ok
        await conn.execute("select pg_advisory_unlock_all()")
    assert (await backfill(pool, sandbox, since=since, until=until)).ok


async def test_bad_arguments_are_refused_before_anything_runs(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    with pytest.raises(ConfigError, match="no stream 'nope'"):
        await backfill(pool, sandbox, since=days_ago(3), until=None, stream="nope")
    with pytest.raises(ConfigError, match="before it begins"):
        await backfill(pool, sandbox, since=days_ago(3), until=days_ago(5))
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ConfigError, match="whole number of seconds"):
            await run_backfill(
                pool,
                session,
                source(sandbox),
                STREAM,
                since=days_ago(3),
                until=None,
                window_s=0.5,
                command="backfill",
            )
    assert moco.requests == []
    assert await pool.fetchval("select count(*) from syncer.backfills") == 0


async def test_a_failing_source_fails_the_backfill_cleanly_and_a_rerun_completes(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    since, until = days_ago(60), days_ago(3)

    def break_after_two_pages(p: BackfillProgress) -> None:
        if p.pages == 2:
            moco.faults.malformed_next = 1

    result = await backfill(pool, sandbox, since=since, until=until, progress=break_after_two_pages)
    assert result.outcome == "failed"
    assert "not valid JSON" in (result.error or "")
    assert await pool.fetchval("select outcome from syncer.backfills") == "failed"
    result = await backfill(pool, sandbox, since=since, until=until)
    assert result.ok, result.error
    await assert_range_equals_source(pool, moco, since, until)


async def test_records_created_and_changed_between_pages_do_not_stop_a_backfill(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    since, until = days_ago(75), days_ago(3)
    start, end = bounds(since, until)
    in_range_before = {
        r["id"] for r in moco.data.live(STREAM) if start <= parse_ts(r["updated_at"]) < end
    }
    moco.faults.change_between_pages = 2  # on every offset page: 2 updates, 1 creation
    result = await backfill(pool, sandbox, since=since, until=until)
    assert result.ok, result.error
    moco.faults.change_between_pages = 0
    stored = await table_contents(pool, STREAM)
    # Records still in the range are stored; those changed meanwhile the sync picks up.
    still = {r["id"] for r in moco.data.live(STREAM) if start <= parse_ts(r["updated_at"]) < end}
    assert still <= set(stored)
    assert len(still) > len(in_range_before) - 50


async def test_a_record_moving_away_under_offset_paging_makes_the_window_read_again(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    """A bulk edit's second needs offset paging; a record of its first page is updated before
    the third page is served, so every later record shifts back by one and one would be
    skipped. The window's end check finds the moved record and reads the pocket again."""
    since, until = days_ago(75), days_ago(3)
    start, end = bounds(since, until)
    moved: list[int] = []

    def move_one_served_record(_: BackfillProgress) -> None:
        last = moco.requests[-1] if moco.requests else None
        if moved or last is None or last.query.get("page") != "2":
            return
        after = parse_ts(last.query["updated_after"])
        pocket = [r for r in moco.data.live(STREAM) if parse_ts(r["updated_at"]) > after]
        first = min(pocket, key=lambda r: (parse_ts(r["updated_at"]), r["id"]))
        first["updated_at"] = format_ts(int(_time.time() * 1000), with_ms=True)
        first["description"] = "moved while a backfill paged"
        moved.append(first["id"])

    result = await backfill(
        pool, sandbox, since=since, until=until, progress=move_one_served_record
    )
    assert result.ok, result.error
    assert moved, "no offset-paged query: the test proves nothing"
    pocket_queries = [
        (r.query["updated_after"], r.query["page"])
        for r in moco.requests
        if r.query.get("page") == "2"
    ]
    assert len(pocket_queries) > len(set(pocket_queries)), "the pocket was not read again"
    expected = {r["id"] for r in moco.data.live(STREAM) if start <= parse_ts(r["updated_at"]) < end}
    assert expected <= set(await table_contents(pool, STREAM))
