"""Locks at the grain of the work: runs of different streams of one source side by side, two
runs of one stream never (real processes, real PostgreSQL, the MOCO sandbox)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncer.errors import BusyError
from syncer.runners.sweep import SWEEP_LOCK_CLASS, sweep_source
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import RunningSandbox
from tests.conftest import SANDBOX_KEY, moco_source
from tests.integration.test_crash import write_config
from tests.integration.test_leases import finish, start
from tests.integration.test_moco_sync import source_contents, table_contents

RUNNING_PAGES = (
    "select coalesce(sum(s.pages), 0) from syncer.stream_runs s join syncer.runs r"
    " on r.id = s.run_id where s.stream = $1 and r.outcome = 'running'"
)


async def started(pool: Any, proc: asyncio.subprocess.Process, stream: str) -> None:
    """Wait until ``proc``'s run of ``stream`` has committed two pages and is still running."""
    async with asyncio.timeout(60):
        while await pool.fetchval(RUNNING_PAGES, stream) < 2:
            assert proc.returncode is None, "the sync ended before the test could go on"
            await asyncio.sleep(0.02)


@pytest.fixture
def slow(db_url: str, sandbox: RunningSandbox, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A configuration whose activities take about 30 requests at 2 a second (shared by every
    process using the key), so a sync of them is still running while another one starts."""
    config = tmp_path / "schedules.toml"
    write_config(config, sandbox.moco_base_url, requests_per_s=2)
    env = {**os.environ, "SYNCER_DATABASE_URL": db_url, "MOCO_API_KEY": SANDBOX_KEY}
    return config, env


async def test_syncs_of_two_streams_of_one_source_run_side_by_side(
    pool: Any, moco: MocoSandbox, slow: tuple[Path, dict[str, str]]
) -> None:
    config, env = slow
    first = await start("sync", "moco", "--stream", "activities", "--config", str(config), env=env)
    try:
        await started(pool, first, "activities")
        second = await start(
            "sync", "moco", "--stream", "contacts", "--config", str(config), env=env
        )
        code, stderr = await finish(second)
        assert code == 0, stderr
        code, stderr = await finish(first)
        assert code == 0, stderr
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    rows = await pool.fetch("select started_at, finished_at, outcome from syncer.runs order by id")
    assert [r["outcome"] for r in rows] == ["succeeded", "succeeded"]
    assert rows[1]["started_at"] < rows[0]["finished_at"]  # they overlapped
    for stream in ("activities", "contacts"):
        assert await table_contents(pool, stream) == source_contents(moco, stream), stream


async def test_a_second_sync_of_the_same_stream_is_refused_naming_it(
    pool: Any, slow: tuple[Path, dict[str, str]]
) -> None:
    config, env = slow
    first = await start("sync", "moco", "--stream", "activities", "--config", str(config), env=env)
    try:
        await started(pool, first, "activities")
        # Two streams asked for, one busy: all or nothing, and the busy one is named.
        second = await start(
            "sync",
            "moco",
            "--stream",
            "contacts",
            "--stream",
            "activities",
            "--config",
            str(config),
            env=env,
        )
        code, stderr = await finish(second)
        assert code == 1, stderr
        assert "Traceback" not in stderr
        assert stderr.splitlines() == [
            "error: another sync of moco.activities is running against this database; "
            "wait for it to finish (see `syncer status`)"
        ]
        assert first.returncode is None  # the refusal did not disturb the run
        # No need to wait for all its pages: stopped, it records its run as interrupted.
        first.send_signal(signal.SIGTERM)
        code, stderr = await finish(first)
        assert code == 143, stderr
    finally:
        if first.returncode is None:
            first.kill()
            await first.wait()
    assert [r["outcome"] for r in await pool.fetch("select outcome from syncer.runs")] == [
        "interrupted"
    ]
    assert await pool.fetchval("select count(*) from moco.contacts") == 0  # nothing was taken


async def test_sweeps_lock_streams_too(pool: Any, sandbox: RunningSandbox) -> None:
    source = moco_source(sandbox.moco_base_url)
    async with pool.acquire() as conn:
        await conn.execute(
            "select pg_advisory_lock($1, hashtext('moco.projects'))", SWEEP_LOCK_CLASS
        )
        async with aiohttp.ClientSession() as session:
            with pytest.raises(BusyError, match=r"a sweep of moco\.projects is running"):
                await sweep_source(pool, session, source, streams=["contacts", "projects"])
            result = await sweep_source(pool, session, source, streams=["contacts"])
        assert result.ok
        await conn.execute("select pg_advisory_unlock_all()")
    outcomes = [r["outcome"] for r in await pool.fetch("select outcome from syncer.runs")]
    assert outcomes == ["succeeded"]
