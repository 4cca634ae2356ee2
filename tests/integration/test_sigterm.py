"""A one-off command stopped by SIGTERM or SIGINT: real processes, real signals.

The page in flight commits, the run is recorded ``interrupted`` (never left ``running``), the
process exits 143 (SIGTERM) or 130 (SIGINT), and the next run converges to the source.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import RunningSandbox
from tests.conftest import SANDBOX_KEY, wait_for_dead_sessions
from tests.integration.test_cli import syncer
from tests.integration.test_moco_sync import assert_tables_equal_source


def write_config(tmp_path: Path, sandbox: RunningSandbox, rate: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[sources.moco]
type = "moco"
base_url = "{sandbox.moco_base_url}"
api_key_env = "MOCO_API_KEY"
streams = ["activities", "projects", "companies", "contacts",
    "users", "invoices", "offers", "deals"]
rate_limit = {rate}
per_page = 20
concurrency = 2
page_concurrency = 1
"""
    )
    return path


def environment(db_url: str, tmp_path: Path) -> dict[str, str]:
    return {
        **os.environ,
        "SYNCER_DATABASE_URL": db_url,
        "MOCO_API_KEY": SANDBOX_KEY,
        "SYNCER_HOME": str(tmp_path / "home"),
    }


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
async def test_a_signalled_sync_records_interrupted_exits_and_a_rerun_converges(
    db_url: str,
    pool: Any,
    sandbox: RunningSandbox,
    moco: MocoSandbox,
    tmp_path: Path,
    sig: signal.Signals,
    code: int,
) -> None:
    # The sandbox lets the rerun go fast; the first run is slowed by its own pacing.
    moco.settings = replace(moco.settings, rate_limit_requests=1000, rate_limit_window_s=1.0)
    slow = write_config(tmp_path, sandbox, "{ requests = 4, per_seconds = 1 }")
    env = environment(db_url, tmp_path)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        "sync",
        "moco",
        "--json",
        "--config",
        str(slow),
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):  # a few pages are committed: the run is under way
            while await pool.fetchval("select coalesce(sum(pages), 0) from syncer.stream_runs") < 3:
                await asyncio.sleep(0.05)
        assert await pool.fetchval("select outcome from syncer.runs") == "running"
        proc.send_signal(sig)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == code, err.decode()
    assert "Traceback" not in err.decode()
    stderr = err.decode().splitlines()
    assert stderr == [line for line in stderr if line.startswith("error: stopped by")], stderr
    assert len(stderr) == 1
    assert sig.name in stderr[0]
    document = orjson.loads(out)  # the figures of what was done, as one document
    assert document["outcome"] == "interrupted"
    assert document["exit_code"] == code
    assert "interrupted" in {s["outcome"] for s in document["streams"]}
    await wait_for_dead_sessions(pool)

    runs = await pool.fetch("select id, outcome, finished_at from syncer.runs")
    assert [(r["outcome"], r["finished_at"] is not None) for r in runs] == [("interrupted", True)]
    streams = await pool.fetch("select outcome from syncer.stream_runs")
    assert "running" not in {s["outcome"] for s in streams}
    committed = await pool.fetchval("select sum(pages) from syncer.stream_runs")
    assert document["streams"]
    assert sum(s["pages"] for s in document["streams"]) == committed
    assert await pool.fetchval("select count(*) from moco.activities") > 0

    fast = write_config(tmp_path, sandbox, "{ requests = 1000, per_seconds = 1 }")
    rerun = await syncer("sync", "moco", "--config", fast, env=env, cwd=tmp_path, timeout_s=120)
    assert rerun.code == 0, rerun
    await assert_tables_equal_source(pool, moco)
    resumed = await pool.fetch(
        "select resumed_after_pages from syncer.stream_runs sr join syncer.runs r"
        " on r.id = sr.run_id where r.outcome = 'succeeded' and resumed_after_pages is not null"
    )
    assert resumed  # a walk interrupted mid-way resumed where it stopped


async def test_a_backfill_stopped_by_sigterm_is_recorded_interrupted_and_resumes(
    db_url: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, tmp_path: Path
) -> None:
    moco.settings = replace(moco.settings, rate_limit_requests=1000, rate_limit_window_s=1.0)
    slow = write_config(tmp_path, sandbox, "{ requests = 4, per_seconds = 1 }")
    env = environment(db_url, tmp_path)
    command = [
        "backfill",
        "moco",
        "--stream",
        "activities",
        "--since",
        "2015-01-01",
        "--window",
        "30d",
    ]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        *command,
        "--config",
        str(slow),
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    done = "select count(*) from syncer.backfill_windows where status = 'done'"
    try:
        async with asyncio.timeout(60):
            while await pool.fetchval(done) < 2:
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 143, err.decode()
    assert err.decode().startswith("error: stopped by SIGTERM"), err.decode()
    assert "interrupted" in out.decode()  # the summary line
    await wait_for_dead_sessions(pool)
    (first,) = await pool.fetch("select outcome, finished_at from syncer.backfills")
    assert first["outcome"] == "interrupted"
    assert first["finished_at"] is not None
    finished_before = await pool.fetchval(done)
    total = await pool.fetchval("select count(*) from syncer.backfill_windows")
    assert 2 <= finished_before < total

    fast = write_config(tmp_path, sandbox, "{ requests = 1000, per_seconds = 1 }")
    rerun = await syncer(*command, "--json", "--config", fast, env=env, cwd=tmp_path, timeout_s=120)
    assert rerun.code == 0, rerun
    document = orjson.loads(rerun.stdout)
    assert document["outcome"] == "succeeded"
    assert document["windows"]["skipped"] == finished_before
    assert document["windows"]["done"] + finished_before == total


async def test_a_load_stopped_by_sigterm_finishes_its_body_and_the_rerun_sends_the_rest(
    db_url: str, pool: Any, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    # The sandbox lets the rerun go fast; the first run is slowed by its own pacing.
    settings = sandbox.moengage.settings
    sandbox.moengage.settings = replace(settings, users_per_window=100_000, window_s=1.0)
    await pool.execute(
        "create table people as select g as id, jsonb_build_object('n', g) as attributes"
        " from generate_series(1, 3000) g"
    )
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[destinations.moengage]
type = "moengage"
base_url = "{sandbox.moengage_base_url}"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"
max_request_bytes = 2048
rate_limit = {{ users = 100, events = 100, per_seconds = 1 }}
[destinations.moengage.users]
sql = "select 'p-' || id as customer_id, attributes from people"
"""
    )
    env = {
        **environment(db_url, tmp_path),
        "MOENGAGE_WORKSPACE_ID": sandbox.moengage.settings.workspace_id,
        "MOENGAGE_API_KEY": sandbox.moengage.settings.api_key,
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        "load",
        "moengage",
        "--only",
        "users",
        "--json",
        "--config",
        str(path),
        env=env,
        cwd=tmp_path,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            while len(sandbox.moengage.users) < 200:
                await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 143, err.decode()
    document = orjson.loads(out)
    assert (document["outcome"], document["exit_code"]) == ("interrupted", 143)
    sent_before = len(sandbox.moengage.users)
    assert document["models"]["users"]["sent"] == sent_before < 3000
    await wait_for_dead_sessions(pool)
    assert await pool.fetchval("select outcome from syncer.runs") == "interrupted"

    path.write_text(path.read_text().replace("users = 100, events = 100", "users = 100000"))
    rerun = await syncer(
        "load",
        "moengage",
        "--only",
        "users",
        "--json",
        "--config",
        path,
        env=env,
        cwd=tmp_path,
        timeout_s=120,
    )
    assert rerun.code == 0, rerun
    assert orjson.loads(rerun.stdout)["models"]["users"]["sent"] == 3000 - sent_before
    assert len(sandbox.moengage.users) == 3000
