"""MOCA → Postgres, end to end: the MOCA sandbox over loopback HTTP, real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from syncer.config import RateLimit, Secret
from syncer.runners.sync import SyncResult, sync_source
from syncer.sandbox.moca import MocaSandbox
from syncer.sandbox.moca_data import ID_FIELDS, MocaData
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moca import api as moca
from syncer.sources.moca.settings import MocaSourceSettings
from tests.conftest import sandbox_in_thread, wait_for_dead_sessions

TOKEN = "sandbox-moca-token"
CONFIG_STREAMS = list(moca.STREAMS)


class Clock:
    """The sandbox's clock, moved by the test: analytics depend on it."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def moca_sandbox(clock: Clock) -> AsyncIterator[RunningSandbox]:
    async with sandbox_in_thread(moca=MocaSandbox(MocaData(now=clock))) as running:
        yield running


def source(sandbox: RunningSandbox, **overrides: Any) -> MocaSourceSettings:
    options: dict[str, Any] = {
        "name": "moca",
        "base_url": sandbox.moca_base_url,
        "token": Secret("MOCA_API_TOKEN", TOKEN),
        "rate_limit": RateLimit(1000, 1.0),
        "analytics_since_s": 10 * 86400.0,
    }
    options.update(overrides)
    return MocaSourceSettings(**options)


async def sync(pool: Any, sandbox: RunningSandbox, **overrides: Any) -> SyncResult:
    streams = overrides.pop("streams", ())
    full_refresh = overrides.pop("full_refresh", False)
    async with aiohttp.ClientSession() as session:
        return await sync_source(
            pool,
            session,
            source(sandbox, **overrides),
            streams=streams,
            full_refresh=full_refresh,
            backoff_base_s=0.01,
        )


def served(sandbox: RunningSandbox, stream: str) -> dict[str, Any]:
    field = ID_FIELDS[stream]
    return {
        r[field]: {k: v for k, v in r.items() if k != "appSecret"}
        for r in sandbox.moca.data.records(stream)
    }


async def stored(pool: Any, stream: str, *, deleted: bool = False) -> dict[str, Any]:
    where = "_deleted_at is not null" if deleted else "_deleted_at is null"
    rows = await pool.fetch(f"select id, data from moca.{stream} where {where}")
    return {r["id"]: orjson.loads(r["data"]) for r in rows}


async def assert_tables_equal_source(
    pool: Any, sandbox: RunningSandbox, streams: list[str] = CONFIG_STREAMS
) -> None:
    for stream in streams:
        assert await stored(pool, stream) == served(sandbox, stream), stream


async def test_a_first_sync_stores_exactly_the_records_of_every_stream(
    pool: Any, moca_sandbox: RunningSandbox
) -> None:
    result = await sync(pool, moca_sandbox)
    assert result.ok, result.errors
    await assert_tables_equal_source(pool, moca_sandbox)
    # The secret the API serves with each app is never stored.
    assert await pool.fetchval("select count(*) from moca.apps where data ? 'appSecret'") == 0
    # Extracted columns: polymorphic types, the segment query as text and parsed.
    kinds = await pool.fetch("select distinct trigger_type from moca.experiences")
    assert all(k["trigger_type"] for k in kinds)
    assert len(kinds) > 1
    query = await pool.fetchrow("select query_text, query from moca.segments limit 1")
    assert orjson.loads(query["query"]) == orjson.loads(query["query_text"])
    buckets = await pool.fetchval("select count(*) from moca.analytics")
    assert buckets > 0
    metrics = {r["metric"] for r in await pool.fetch("select distinct metric from moca.analytics")}
    assert metrics == set(moca.METRIC_NAMES)
    # The envelope's total told the progress display what was left of each one-listing stream.
    listings = [s for s in result.streams if s.stream in moca.STREAMS]
    single = {s.stream: s.left for s in listings if moca.STREAMS[s.stream].parent is None}
    assert len(single) >= 3, single
    assert set(single.values()) == {0}, single


async def test_a_second_sync_without_changes_rewrites_no_row(
    pool: Any, moca_sandbox: RunningSandbox
) -> None:
    await sync(pool, moca_sandbox)
    before = await pool.fetchval("select max(_synced_at) from moca.beacons")
    result = await sync(pool, moca_sandbox)
    assert result.ok
    assert {s.stream: s.upserted for s in result.streams if s.stream != "analytics"} == {
        s: 0 for s in CONFIG_STREAMS
    }
    assert await pool.fetchval("select max(_synced_at) from moca.beacons") == before


async def test_updates_creations_and_deletions_are_reflected_with_deletions_marked(
    pool: Any, moca_sandbox: RunningSandbox
) -> None:
    await sync(pool, moca_sandbox)
    data = moca_sandbox.moca.data
    data.update("beacons", 7)
    created = data.create("beacons", 4)
    deleted = data.delete("beacons", 9)
    gone_campaigns = data.delete("campaigns", 2)
    result = await sync(pool, moca_sandbox)
    assert result.ok, result.errors
    await assert_tables_equal_source(pool, moca_sandbox)
    beacons = next(s for s in result.streams if s.stream == "beacons")
    assert beacons.deleted == 9
    marked = await stored(pool, "beacons", deleted=True)
    assert set(marked) == set(deleted)  # kept, marked, not removed
    assert set(created) <= set(await stored(pool, "beacons"))
    assert set(gone_campaigns) <= set(await stored(pool, "campaigns", deleted=True))


async def test_a_large_disappearance_is_reported_and_not_applied(
    pool: Any, moca_sandbox: RunningSandbox
) -> None:
    await sync(pool, moca_sandbox)
    live = len(moca_sandbox.moca.data.records("beacons"))
    moca_sandbox.moca.data.delete("beacons", int(live * 0.4))
    result = await sync(pool, moca_sandbox, streams=["beacons"])
    assert result.ok
    assert len(result.warnings) == 1
    assert "deletion_guard" in result.warnings[0]
    assert "40%" in result.warnings[0]
    assert (
        await pool.fetchval("select count(*) from moca.beacons where _deleted_at is not null") == 0
    )
    warning = await pool.fetchval(
        "select warning from syncer.stream_runs where stream = 'beacons'"
        " order by started_at desc limit 1"
    )
    assert warning == result.warnings[0].split(": ", 1)[1]


async def test_analytics_windows_are_idempotent_and_restated_buckets_are_updated(
    pool: Any, moca_sandbox: RunningSandbox
) -> None:
    await sync(pool, moca_sandbox, streams=["apps"])
    await sync(pool, moca_sandbox, streams=["analytics"])
    first = await pool.fetch("select * from moca.analytics order by 1, 2, 3, 4, 5")
    again = await sync(pool, moca_sandbox, streams=["analytics"], full_refresh=True)
    assert again.ok
    assert await pool.fetch("select * from moca.analytics order by 1, 2, 3, 4, 5") == first
    assert next(s for s in again.streams if s.stream == "analytics").upserted == 0
    app = moca_sandbox.moca.data.records("apps")[0]["appId"]
    restated = moca_sandbox.moca.data.restate(app, "sessions", 1)
    assert restated
    result = await sync(pool, moca_sandbox, streams=["analytics"])
    assert next(s for s in result.streams if s.stream == "analytics").upserted >= 1
    rows = await pool.fetch(
        "select bucket_start, value from moca.analytics"
        " where app_id = $1 and metric = 'sessions' order by bucket_start",
        app,
    )
    assert rows


async def test_an_envelope_or_a_bare_array_both_work(
    pool: Any, moca_sandbox: RunningSandbox
) -> None:
    sandbox = moca_sandbox.moca
    sandbox.settings = replace(sandbox.settings, envelope=False)
    result = await sync(pool, moca_sandbox)
    assert result.ok, result.errors
    await assert_tables_equal_source(pool, moca_sandbox)
    assert {s.left for s in result.streams} == {None}  # a bare array says no total


async def test_a_server_that_honours_updated_since_is_read_incrementally(
    pool: Any, moca_sandbox: RunningSandbox
) -> None:
    sandbox = moca_sandbox.moca
    sandbox.settings = replace(sandbox.settings, updated_since=True)
    await sync(pool, moca_sandbox, streams=["beacons"])
    sandbox.data.update("beacons", 3)
    sandbox.reset_log()
    result = await sync(pool, moca_sandbox, streams=["beacons"])
    assert result.ok
    reads = [r for r in sandbox.requests if r.path == "/v2/beacons"]
    assert all("updatedSince" in r.query for r in reads)
    assert len(reads) == 2  # the detection, then one page of changes
    assert result.streams[0].upserted == 3
    await assert_tables_equal_source(pool, moca_sandbox, ["beacons"])


async def test_a_wrong_token_and_a_malformed_response_each_give_one_clear_message(
    pool: Any, moca_sandbox: RunningSandbox
) -> None:
    wrong = await sync(pool, moca_sandbox, token=Secret("MOCA_API_TOKEN", "nope-7a1"))
    assert not wrong.ok
    assert len(wrong.errors) == 1
    assert "MOCA_API_TOKEN" in wrong.errors[0]
    assert "403" in wrong.errors[0]
    assert "nope-7a1" not in wrong.errors[0]
    moca_sandbox.moca.faults.malformed_next = 1
    broken = await sync(pool, moca_sandbox, streams=["apps"])
    assert not broken.ok
    assert "not valid JSON" in broken.errors[0]


async def test_a_sync_killed_mid_run_and_run_again_equals_the_source(
    db_url: str, pool: Any, moca_sandbox: RunningSandbox, tmp_path: Path
) -> None:
    config = tmp_path / "schedules.toml"
    config.write_text(
        f"""
[sources.moca]
type = "moca"
base_url = "{moca_sandbox.moca_base_url}"
token_env = "MOCA_API_TOKEN"
page_size = 20
rate_limit = {{ requests = 40, per_seconds = 1 }}
"""
    )
    env = {**os.environ, "SYNCER_DATABASE_URL": db_url, "MOCA_API_TOKEN": TOKEN}
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        "sync",
        "moca",
        "--config",
        str(config),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(60):
        while await pool.fetchval("select count(*) from moca.beacons") < 200:
            assert child.returncode is None
            await asyncio.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    await child.wait()
    await wait_for_dead_sessions(pool)
    moca_sandbox.moca.data.update("beacons", 5)
    moca_sandbox.moca.data.delete("places", 2)
    result = await sync(pool, moca_sandbox, page_size=20)
    assert result.ok, result.errors
    await assert_tables_equal_source(pool, moca_sandbox)
