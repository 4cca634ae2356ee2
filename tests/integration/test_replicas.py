"""Two ``syncer run`` replicas, nine jobs on one MOCO source, the source changing meanwhile.

What a team running syncer as a service relies on: each tick runs once in all (the claims in
``syncer.job_fires``), a stream is never synced by two runs at once, busy ticks are skips and
not failures, every job gets to run, the two replicas share one rate limit, and after a final
catch-up sync every stream equals the source.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
import time
from collections import defaultdict
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import running_sandbox
from tests.conftest import CLASSIC_STREAMS as MOCO_STREAMS
from tests.integration.test_cli import syncer
from tests.integration.test_daemon import environment, start
from tests.integration.test_moco_sync import assert_tables_equal_source

EVERY_S = {"stream": 3, "all": 5}
CHANGING_S = 15.0  # the sandbox changes records for at least this long


def configuration(path: Path, base_url: str) -> Path:
    jobs = [
        f'[[jobs]]\nid = "s-{stream}"\nrun = "sync moco --stream {stream}"\n'
        f'every = "{EVERY_S["stream"]}s"\ntimeout = "90s"\n'
        for stream in MOCO_STREAMS
    ]
    jobs.append(
        f'[[jobs]]\nid = "all"\nrun = "sync moco"\nevery = "{EVERY_S["all"]}s"\ntimeout = "90s"\n'
    )
    path.write_text(
        f"""
[sources.moco]
type = "moco"
base_url = "{base_url}"
api_key_env = "MOCO_API_KEY"
streams = ["activities", "projects", "companies", "contacts",
    "users", "invoices", "offers", "deals"]
rate_limit = {{ requests = 20, per_seconds = 1 }}
concurrency = 2

{"".join(jobs)}
"""
    )
    return path


async def fires(pool: Any) -> list[Any]:
    return list(await pool.fetch("select * from syncer.job_fires order by fire_time, job_id"))


async def test_two_replicas_run_each_tick_once_never_overlap_a_stream_and_starve_no_job(
    db_url: str, pool: Any, tmp_path: Path
) -> None:
    moco = MocoSandbox()
    moco.settings = replace(moco.settings, rate_limit_requests=20, rate_limit_window_s=1.0)
    jobs = {f"s-{s}" for s in MOCO_STREAMS} | {"all"}
    # In this process's loop (the replicas are other processes): changes and reads of the
    # sandbox's records never race.
    async with running_sandbox(moco=moco) as sandbox:
        path = configuration(tmp_path / "schedules.toml", sandbox.moco_base_url)
        env = environment(db_url, tmp_path)
        replicas = [await start(path, env), await start(path, env)]
        try:
            rng = random.Random(7)
            began = time.monotonic()
            async with asyncio.timeout(300):
                while True:
                    stream = rng.choice(MOCO_STREAMS)
                    moco.data.update(stream, 3)
                    moco.data.create(stream, 1)
                    await asyncio.sleep(0.5)
                    ran = {f["job_id"] for f in await fires(pool) if f["outcome"] == "succeeded"}
                    if ran >= jobs and time.monotonic() - began >= CHANGING_S:
                        break
        finally:
            for replica in replicas:
                replica.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(r.wait(), 30) for r in replicas]
        assert codes == [0, 0]
        catch_up = await syncer(
            "sync", "moco", "--config", path, env=env, cwd=tmp_path, timeout_s=180
        )
        assert catch_up.code == 0, catch_up
        await assert_tables_equal_source(pool, moco)
        statuses = [r.status for r in moco.requests]
    assert 429 not in statuses

    # Each tick was claimed by one replica, at a fire time every replica computes alike.
    claimed = await fires(pool)
    by_job: dict[str, list[Any]] = defaultdict(list)
    for fire in claimed:
        by_job[fire["job_id"]].append(fire)
        every = EVERY_S["all"] if fire["job_id"] == "all" else EVERY_S["stream"]
        since_epoch = (fire["fire_time"] - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()
        assert since_epoch % every == 0, fire
        assert fire["finished_at"] is not None, fire
        # Busy is a skip, never a failure; interrupted only by the final SIGTERM.
        assert fire["outcome"] in ("succeeded", "busy", "skipped", "interrupted"), fire
    assert set(by_job) == jobs
    for job, its in by_job.items():
        assert any(f["outcome"] == "succeeded" for f in its), job

    # At most one run per fire time: the runs of a job are exactly the ticks that ran it.
    runs = await pool.fetch(
        "select id, command, started_at, finished_at from syncer.runs where command like 'job %'"
    )
    runs_per_job: dict[str, int] = defaultdict(int)
    for run in runs:
        runs_per_job[run["command"].split(":")[0].removeprefix("job ")] += 1
    for job, its in by_job.items():
        ran = [f for f in its if f["outcome"] in ("succeeded", "failed", "interrupted")]
        assert runs_per_job[job] == len(ran), job

    # No two runs of one stream overlapped, across both replicas and the catch-up sync.
    stream_runs = await pool.fetch(
        "select s.stream, s.run_id, s.started_at, s.finished_at from syncer.stream_runs s"
        " join syncer.runs r on r.id = s.run_id order by s.stream, s.started_at"
    )
    for stream, its in itertools.groupby(stream_runs, key=lambda r: r["stream"]):
        for earlier, later in itertools.pairwise(its):
            assert earlier["finished_at"] is not None
            assert earlier["finished_at"] <= later["started_at"], (stream, earlier, later)
