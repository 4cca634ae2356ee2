"""MOCO → Postgres, end to end: real sandbox over loopback HTTP, real PostgreSQL."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import aiohttp
import orjson
import pytest

from syncer.config import RateLimit
from syncer.runners.sync import sync_source
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import RunningSandbox
from tests.conftest import CLASSIC_STREAMS as MOCO_STREAMS
from tests.conftest import moco_source

FAST = {"backoff_base_s": 0.01}


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """The record without fields that change on every read (invoices' signed file_url)."""
    return {k: v for k, v in record.items() if k != "file_url"}


async def table_contents(pool: Any, stream: str) -> dict[int, Any]:
    rows = await pool.fetch(f"select id, data from moco.{stream}")
    return {r["id"]: stable(orjson.loads(r["data"])) for r in rows}


def source_contents(moco: MocoSandbox, stream: str) -> dict[int, Any]:
    return {r["id"]: stable(r) for r in moco.data.records(stream)}


async def assert_tables_equal_source(pool: Any, moco: MocoSandbox) -> None:
    for stream in MOCO_STREAMS:
        assert await table_contents(pool, stream) == source_contents(moco, stream), stream


def requests_per_stream(moco: MocoSandbox) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in moco.requests:
        counts[r.path] = counts.get(r.path, 0) + 1
    return counts


async def sync(pool: Any, sandbox: RunningSandbox, **options: Any) -> Any:
    overrides = options.pop("source", {})
    async with aiohttp.ClientSession() as session:
        return await sync_source(
            pool, session, moco_source(sandbox.moco_base_url, **overrides), **FAST, **options
        )


async def test_a_first_sync_stores_exactly_the_records_of_all_eight_streams(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    result = await sync(pool, sandbox)
    assert result.ok, result.errors
    await assert_tables_equal_source(pool, moco)
    archived = await pool.fetchval(
        "select count(*) from moco.projects where data->>'active' = 'false'"
    )
    assert archived > 0
    watermarks = await pool.fetch("select stream, watermark, walk from syncer.streams")
    assert {w["stream"] for w in watermarks} == set(MOCO_STREAMS)
    assert all(w["walk"] is None and w["watermark"] is not None for w in watermarks)


async def test_a_second_sync_without_changes_makes_one_request_per_stream(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox)
    moco.reset_log()
    result = await sync(pool, sandbox)
    assert result.ok
    assert len(moco.requests) == len(MOCO_STREAMS)
    assert all(r.query.get("updated_after") for r in moco.requests)
    assert sum(s.upserted for s in result.streams) == 0


async def test_n_updates_and_m_creations_cost_about_n_plus_m_over_100_requests(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox)
    updated = moco.data.update("activities", 450)
    created = moco.data.create("activities", 150)
    moco.reset_log()
    result = await sync(pool, sandbox, streams=["activities"])
    assert result.ok
    # 600 changes: 6 full pages; keyset steps overlap by a second, so allow one more.
    assert 6 <= len(moco.requests) <= 8
    stored = await table_contents(pool, "activities")
    served = source_contents(moco, "activities")
    assert all(stored[i] == served[i] for i in [*updated, *created])
    assert result.streams[0].upserted == 600


async def test_records_changing_between_pages_converge_after_one_more_run(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    moco.faults.change_between_pages = 3
    first = await sync(pool, sandbox)
    assert first.ok
    moco.faults.change_between_pages = 0
    second = await sync(pool, sandbox)
    assert second.ok
    await assert_tables_equal_source(pool, moco)


async def test_an_api_that_ignores_sort_by_still_converges(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Asking for an unknown sort field would be rejected, so ask for id order instead.
    monkeypatch.setattr("syncer.sources.moco.api.SORT", "id asc")
    moco.faults.change_between_pages = 2
    assert (await sync(pool, sandbox)).ok
    moco.faults.change_between_pages = 0
    assert (await sync(pool, sandbox)).ok
    await assert_tables_equal_source(pool, moco)


async def test_pacing_at_the_servers_limit_meets_no_429(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    moco.settings = replace(moco.settings, rate_limit_requests=20, rate_limit_window_s=2.0)
    result = await sync(pool, sandbox, source={"rate_limit": RateLimit(20, 2.0)})
    assert result.ok
    statuses = [r.status for r in moco.requests]
    assert 429 not in statuses
    n = len(statuses)
    assert n >= 50  # several thousand records
    # How much of the rate it uses depends on the machine: benchmarks/ measures it.
    await assert_tables_equal_source(pool, moco)


async def test_a_limit_set_higher_than_the_server_allows_meets_429_recovers_and_completes(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    # Eight streams, four at once, each fetching up to eight pages of a query at once (the
    # configured limit leaves room), against a server allowing 8 requests per second: the
    # concurrent requests alone exceed it, however slow the machine is.
    moco.settings = replace(moco.settings, rate_limit_requests=8, rate_limit_window_s=1.0)
    result = await sync(pool, sandbox, source={"rate_limit": RateLimit(1000, 1.0)})
    assert result.ok
    assert result.http.rate_limited > 0
    assert 429 in [r.status for r in moco.requests]
    await assert_tables_equal_source(pool, moco)


async def test_server_errors_and_resets_are_retried(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    moco.faults.fail_next = 3
    moco.faults.reset_next = 2
    # One page at a time: then every request beyond one per page is a retry.
    result = await sync(pool, sandbox, source={"page_concurrency": 1})
    assert result.ok
    statuses = [r.status for r in moco.requests]
    assert statuses.count(503) == 3
    assert statuses.count(0) == 2  # connections closed without a response
    # aiohttp resends a GET once itself when a reused keep-alive connection was closed, so a
    # reset may not reach us; every failure that did is one retry, and only those.
    pages = sum(s.pages for s in result.streams)
    assert result.http.retries == result.http.requests - pages >= 3


async def test_a_page_of_malformed_json_fails_its_stream_cleanly_and_the_rest_goes_on(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    moco.faults.malformed_next = 1
    result = await sync(pool, sandbox, source={"concurrency": 1})
    failed = [s for s in result.streams if s.outcome == "failed"]
    assert len(failed) == 1
    assert "not valid JSON" in (failed[0].error or "")
    assert failed[0].pages == 0
    assert await pool.fetchval(f"select count(*) from moco.{failed[0].stream}") == 0
    others = [s for s in result.streams if s.outcome == "succeeded"]
    assert len(others) == len(MOCO_STREAMS) - 1
    run = await pool.fetchrow("select outcome, error from syncer.runs")
    assert run["outcome"] == "failed"
    # The next run completes the failed stream.
    assert (await sync(pool, sandbox)).ok
    await assert_tables_equal_source(pool, moco)


async def test_a_wrong_key_fails_with_a_message_naming_the_variable_and_writes_nothing(
    pool: Any, sandbox: RunningSandbox
) -> None:
    from syncer.config import Secret

    result = await sync(pool, sandbox, source={"api_key": Secret("MOCO_API_KEY", "wrong-key")})
    assert not result.ok
    assert len(result.errors) == 1
    assert "MOCO_API_KEY" in result.errors[0]
    assert "401" in result.errors[0]
    assert "wrong-key" not in result.errors[0]
    for stream in MOCO_STREAMS:
        assert await pool.fetchval(f"select count(*) from moco.{stream}") == 0
    assert await pool.fetchval("select count(*) from syncer.streams") == 0


async def test_a_second_concurrent_sync_of_the_same_stream_is_refused(
    pool: Any, sandbox: RunningSandbox
) -> None:
    from syncer.errors import BusyError
    from syncer.runners.sync import RUN_LOCK_CLASS

    lock = "select pg_advisory_lock($1, hashtext('moco.contacts'))"
    async with pool.acquire() as conn:
        await conn.execute(lock, RUN_LOCK_CLASS)
        with pytest.raises(BusyError, match=r"another sync of moco\.contacts is running"):
            await sync(pool, sandbox)
        await conn.execute("select pg_advisory_unlock_all()")
    # Nothing was taken: every stream's lock is free again, and no run was started.
    assert await pool.fetchval("select count(*) from syncer.runs") == 0


async def test_every_request_is_counted_once_with_the_next_page_requested_during_commits(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    """Pages are fetched one ahead of the commits; a stop discards the page fetched ahead,
    and its request is still counted in the stream's bookkeeping."""
    from syncer import shutdown

    moco.settings = replace(moco.settings, rate_limit_requests=1000, rate_limit_window_s=1.0)
    options = {"source": {"per_page": 10, "streams": ("activities",)}}
    task = asyncio.create_task(sync(pool, sandbox, **options))
    try:
        async with asyncio.timeout(30):
            while not await pool.fetchval(
                "select coalesce(sum(pages), 0) >= 3 from syncer.stream_runs"
            ):
                await asyncio.sleep(0.005)
        shutdown.request()
        interrupted = await task
    finally:
        shutdown.reset()
    assert [s.outcome for s in interrupted.streams] == ["interrupted"]
    seen = -1
    while seen != len(moco.requests):  # requests cancelled in flight may still land
        seen = len(moco.requests)
        await asyncio.sleep(0.3)
    recorded = await pool.fetchval("select sum(requests) from syncer.stream_runs")
    assert recorded == len(moco.requests) == interrupted.http.requests
    finished = await sync(pool, sandbox, **options)
    assert finished.ok, finished.errors
    recorded = await pool.fetchval("select sum(requests) from syncer.stream_runs")
    assert recorded == len(moco.requests)
    assert await table_contents(pool, "activities") == source_contents(moco, "activities")
