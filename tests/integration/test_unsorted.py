"""A MOCO server that ignores ``sort_by``: every stream still comes out exact.

The sandbox lists every stream by id whatever ``sort_by`` says, over data whose ids grow with
``updated_at`` except for a share of records edited later (as in real accounts). In pages of 5,
many pages look sorted, so a walk takes keyset steps on the order's word; the ``X-Total``
check after each step and the order check on each page must catch it, and the walk must read
the stream again by offset pages. Real sandbox over loopback HTTP, real PostgreSQL.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncer.runners.backfill import run_backfill
from syncer.runners.sweep import sweep_source
from syncer.runners.sync import sync_source
from syncer.sandbox.moco import ALL_STREAMS, MocoSandbox, MocoSandboxSettings
from syncer.sandbox.moco_data import MOCO_STREAM_PATHS, MocoData, parse_ts
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moco.catalog import CATALOG
from tests.conftest import CLASSIC_STREAMS as MOCO_STREAMS
from tests.conftest import SANDBOX_KEY, moco_source
from tests.integration.test_crash import kill_sync_after, write_config
from tests.integration.test_moco_sync import (
    assert_tables_equal_source,
    source_contents,
    table_contents,
)

FAST = {"backoff_base_s": 0.01}
PER_PAGE = 5
COUNTS = {
    "activities": 90,
    "projects": 45,
    "companies": 45,
    "contacts": 45,
    "users": 30,
    "invoices": 45,
    "offers": 45,
    "deals": 45,
}


@pytest.fixture
def moco() -> MocoSandbox:
    settings = MocoSandboxSettings(
        max_per_page=PER_PAGE,
        rate_limit_requests=100_000,
        rate_limit_window_s=1.0,
        ignore_sort_by=ALL_STREAMS,
    )
    return MocoSandbox(MocoData(seed=3, counts=COUNTS, ids_follow_updates=True), settings)


def source(sandbox: RunningSandbox, **overrides: Any) -> Any:
    return moco_source(sandbox.moco_base_url, **{"per_page": PER_PAGE, **overrides})


async def sync(pool: Any, sandbox: RunningSandbox, **overrides: Any) -> Any:
    async with aiohttp.ClientSession() as session:
        result = await sync_source(pool, session, source(sandbox, **overrides), **FAST)
    assert result.ok, result.errors
    return result


def stream_requests(moco: MocoSandbox) -> dict[str, list[dict[str, str]]]:
    by_path = {f"/api/v1{path}": stream for stream, path in MOCO_STREAM_PATHS.items()}
    out: dict[str, list[dict[str, str]]] = {stream: [] for stream in MOCO_STREAM_PATHS}
    for r in moco.requests:
        if r.path in by_path:
            out[by_path[r.path]].append(r.query)
    return out


def started_over(queries: list[dict[str, str]], first_bound: str | None) -> bool:
    """Whether a walk took a keyset step and then asked its first query again."""
    stepped = False
    for query in queries:
        bound = query.get("updated_after")
        if bound != first_bound:
            stepped = True
        elif stepped and query["page"] == "1":
            return True
    return False


@pytest.mark.parametrize("concurrency", [1, 8], ids=["one-page", "sprints"])
async def test_a_first_sync_stores_every_stream_exactly(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, concurrency: int
) -> None:
    result = await sync(pool, sandbox, page_concurrency=concurrency)
    await assert_tables_equal_source(pool, moco)
    # The case at issue happened: pages looked sorted, a walk stepped by keyset, the check
    # caught the ignored sort_by and the walk read its stream again from the start.
    requests = stream_requests(moco)
    caught = [s for s in MOCO_STREAMS if started_over(requests[s], None)]
    assert len(caught) >= 4, caught
    warned = {w.split(":")[0] for w in result.warnings}
    assert {f"moco.{s}" for s in caught} <= warned
    assert all("updated_at order" in w for w in result.warnings)
    # ... and a stream found unsorted never stepped by keyset after that.
    for stream in caught:
        queries = requests[stream]
        restart = next(
            i
            for i in range(1, len(queries))
            if "updated_after" not in queries[i] and queries[i]["page"] == "1"
        )
        assert all("updated_after" not in q for q in queries[restart:]), stream


async def test_the_same_data_sorted_as_asked_is_read_by_keyset_steps_alone(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    """No false alarm: where sort_by is honoured, no check fails and nothing is paged by
    offset (the data has no second with more than a page of records). Lists MOCO documents
    no sort_by for (companies, contacts, deals) are read by offset pages from the start."""
    moco.settings = replace(moco.settings, ignore_sort_by=frozenset())
    for stream in MOCO_STREAMS:
        moco.data.update(stream, 3)
    result = await sync(pool, sandbox, page_concurrency=1)
    await assert_tables_equal_source(pool, moco)
    assert result.warnings == []
    sorted_paths = {
        f"/api/v1{CATALOG[s].path}" for s in MOCO_STREAMS if CATALOG[s].takes("sort_by")
    }
    assert len(sorted_paths) == 5
    assert all(r.query.get("page") == "1" for r in moco.requests if r.path in sorted_paths)
    assert all("sort_by" not in r.query for r in moco.requests if r.path not in sorted_paths)


async def test_old_records_edited_before_the_first_sync_are_not_lost(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    """The issue's shape: an old record (low id, first page) edited lately."""
    for stream in MOCO_STREAMS:
        first_page = [r["id"] for r in moco.data.live(stream)[:PER_PAGE]]
        rows = {r["id"]: r for r in moco.data.live(stream)}
        edited = rows[first_page[-1]]
        edited["updated_at"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    await sync(pool, sandbox, page_concurrency=1)
    await assert_tables_equal_source(pool, moco)


async def test_an_incremental_sync_after_changes_stores_every_stream_exactly(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox)
    for stream in MOCO_STREAMS:
        moco.data.update(stream, 8)
        moco.data.create(stream, 4)
    moco.reset_log()
    await sync(pool, sandbox)
    await assert_tables_equal_source(pool, moco)
    # Incremental: each stream read from its watermark, not from the beginning.
    requests = stream_requests(moco)
    assert all(requests[s] and "updated_after" in requests[s][0] for s in MOCO_STREAMS)


async def test_records_changing_while_read_converge_after_one_quiet_run(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    moco.faults.change_between_pages = 2
    moco.faults.delete_between_pages = 1
    await sync(pool, sandbox)
    moco.faults.change_between_pages = moco.faults.delete_between_pages = 0
    for stream in MOCO_STREAMS:
        moco.data.update(stream, 3)
    await sync(pool, sandbox)
    # Deleted records stay stored (the sweep marks them): compare what the source still has.
    for stream in MOCO_STREAMS:
        live = {r["id"]: r for r in moco.data.records(stream)}
        stored = await table_contents(pool, stream)
        assert {i: stored.get(i) for i in live} == {
            i: {k: v for k, v in r.items() if k != "file_url"} for i, r in live.items()
        }, stream


@pytest.mark.parametrize("kill_after_pages", [9, 25])
async def test_a_sync_killed_mid_run_resumes_and_stores_every_stream_exactly(
    kill_after_pages: int,
    db_url: str,
    pool: Any,
    sandbox: RunningSandbox,
    moco: MocoSandbox,
    tmp_path: Path,
) -> None:
    """A real process killed with SIGKILL, whatever its walks had found about the order."""
    config = tmp_path / "schedules.toml"
    write_config(config, sandbox.moco_base_url)
    config.write_text(config.read_text() + f"per_page = {PER_PAGE}\n")
    await kill_sync_after(pool, config, db_url, kill_after_pages)
    assert await pool.fetchval("select count(*) from syncer.streams where walk is not null")
    seen = -1
    while seen != len(moco.requests):  # requests the killed process sent may still land
        seen = len(moco.requests)
        await asyncio.sleep(0.3)
    await sync(pool, sandbox)
    await assert_tables_equal_source(pool, moco)


async def test_a_backfill_of_each_stream_stores_it_exactly(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    since = (datetime.now(UTC) - timedelta(days=800)).date()
    async with aiohttp.ClientSession() as session:
        for stream in MOCO_STREAMS:
            result = await run_backfill(
                pool,
                session,
                source(sandbox),
                stream,
                since=since,
                until=None,
                window_s=120 * 86400.0,
                command=f"backfill moco --stream {stream} --since {since}",
                **FAST,
            )
            assert result.ok, (stream, result.error)
            assert result.windows_done >= 6
    await assert_tables_equal_source(pool, moco)


async def test_a_backfill_window_ends_only_when_the_order_is_confirmed(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    """The window's first page looks sorted and passes the window's end, yet records of the
    window follow it in id order: the next keyset step's X-Total must show that."""
    stream = "invoices"
    rows = moco.data.live(stream)  # id order, the dicts themselves
    oldest = min(parse_ts(r["updated_at"]) for r in rows)
    for i, row in enumerate(rows[: PER_PAGE - 1]):
        row["updated_at"] = stamp(oldest - timedelta(seconds=10 - i))
    # Edited lately (but not while the backfill reads: that would be a change to read again).
    rows[PER_PAGE - 1]["updated_at"] = stamp(datetime.now(UTC) - timedelta(minutes=10))
    later = sorted(parse_ts(r["updated_at"]) for r in rows[PER_PAGE:])
    since, until = (oldest - timedelta(seconds=10)).date(), later[len(later) // 2].date()
    end = datetime.combine(until + timedelta(days=1), datetime.min.time(), UTC)
    expected = [r["id"] for r in rows if parse_ts(r["updated_at"]) < end]
    assert len(expected) > PER_PAGE, "no record of the window follows the first page"
    async with aiohttp.ClientSession() as session:
        result = await run_backfill(
            pool,
            session,
            source(sandbox),
            stream,
            since=since,
            until=until,
            window_s=(until - since).days * 86400.0 + 86400.0,
            command=f"backfill moco --stream {stream} --since {since}",
            **FAST,
        )
    assert result.ok, result.error
    assert result.windows_done == 1
    stored = await table_contents(pool, stream)
    served = source_contents(moco, stream)
    assert {i: stored.get(i) for i in expected} == {i: served[i] for i in expected}


def stamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_sweep_marks_exactly_the_deleted_records_of_every_stream(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox)
    gone = {stream: set(moco.data.delete(stream, 2)) for stream in MOCO_STREAMS}
    async with aiohttp.ClientSession() as session:
        result = await sweep_source(pool, session, source(sandbox), **FAST)
    assert result.ok, result.errors
    for stream in MOCO_STREAMS:
        marked = {
            r["id"]
            for r in await pool.fetch(f"select id from moco.{stream} where _deleted_at is not null")
        }
        assert marked == gone[stream], stream
        live = {
            r["id"]
            for r in await pool.fetch(f"select id from moco.{stream} where _deleted_at is null")
        }
        assert live == {r["id"] for r in moco.data.records(stream)}, stream


async def test_the_sandbox_lists_by_id_whatever_sort_by_says(
    sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    records: list[dict[str, Any]] = []
    async with aiohttp.ClientSession() as session:
        for page in range(1, COUNTS["deals"] // PER_PAGE + 2):
            async with session.get(
                f"{sandbox.moco_base_url}/deals",
                params={"sort_by": "updated_at asc", "page": str(page), "per_page": "100"},
                headers={"Authorization": f"Token token={SANDBOX_KEY}"},
            ) as response:
                assert response.status == 200
                records += await response.json()
    ids = [r["id"] for r in records]
    assert len(ids) == COUNTS["deals"]
    assert ids == sorted(ids)
    stamps = [parse_ts(r["updated_at"]) for r in records]
    assert stamps != sorted(stamps)  # a few were edited later ...
    in_order = sum(a <= b for a, b in pairwise(stamps))
    assert in_order >= 0.7 * (len(stamps) - 1)  # ... but ids mostly grow with updated_at
    # An unknown field is not even looked at.
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{sandbox.moco_base_url}/deals",
            params={"sort_by": "nonsense"},
            headers={"Authorization": f"Token token={SANDBOX_KEY}"},
        ) as response,
    ):
        assert response.status == 200
