"""Freshness in ``syncer status`` as a user sees it: real subprocesses, the MOCO sandbox, real
PostgreSQL. Staleness is made by setting a stream's bookkeeping back, as time would."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from syncer import registry
from syncer.sandbox.server import RunningSandbox
from syncer.store.status import stream_statuses
from tests.conftest import SANDBOX_KEY
from tests.integration.test_cli import Env, Ran, syncer

SYNCED = ("projects", "companies")


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Env:
    environ = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
    environ.update(
        SYNCER_DATABASE_URL=db_url, MOCO_API_KEY=SANDBOX_KEY, SYNCER_HOME=str(tmp_path / "home")
    )
    return environ


def write_config(tmp_path: Path, sandbox: RunningSandbox, streams: tuple[str, ...]) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(
        "[sources.moco]\n"
        'type = "moco"\n'
        f'base_url = "{sandbox.moco_base_url}"\n'
        'api_key_env = "MOCO_API_KEY"\n'
        f"streams = {list(streams)!r}\n".replace("'", '"')
        + "rate_limit = { requests = 1000, per_seconds = 1 }\n"
        'stale_after = "1h"\n'
    )
    return path


async def status(config: Path, env: Env, tmp_path: Path, *flags: str) -> tuple[Ran, Ran]:
    """``status --json`` and the table, run side by side."""
    as_json, human = await asyncio.gather(
        syncer("status", "--json", *flags, "--config", config, env=env, cwd=tmp_path),
        syncer("status", *flags, "--config", config, env=env, cwd=tmp_path),
    )
    for ran in (as_json, human):
        assert "Traceback" not in ran.output, ran
    return as_json, human


def streams_of(ran: Ran) -> dict[str, dict[str, Any]]:
    return {s["stream"]: s for s in orjson.loads(ran.stdout)["streams"]}


def table_row(ran: Ran, stream: str) -> str:
    rows = [line for line in ran.stdout.splitlines() if f" moco.{stream} " in line]
    assert len(rows) == 1, ran.stdout
    return rows[0]


async def newest_age_s(pool: Any, stream: str) -> float:
    age = await pool.fetchval(
        "select greatest(0, extract(epoch from now() - max(updated_at)))::float8"
        f" from moco.{stream} where _deleted_at is null"
    )
    assert isinstance(age, float)
    return age


async def test_status_shows_freshness_and_flags_a_stream_without_a_recent_success(
    env: Env, tmp_path: Path, pool: Any, sandbox: RunningSandbox
) -> None:
    config = write_config(tmp_path, sandbox, SYNCED)
    ran = await syncer("sync", "moco", "--config", config, env=env, cwd=tmp_path)
    assert ran.code == 0, ran

    # Just synced: fresh, with the ages the database implies.
    as_json, human = await status(config, env, tmp_path, "--fail-if-stale")
    assert (as_json.code, human.code) == (0, 0), (as_json, human)
    streams = streams_of(as_json)
    for name in SYNCED:
        s = streams[name]
        assert s["stale"] is False
        assert s["stale_after_s"] == 3600.0
        assert 0 <= s["since_success_s"] < 60, s
        assert s["last_run_outcome"] == "succeeded"  # the fields that were there stay
        assert s["rows"] > 0
        now_age = await newest_age_s(pool, name)
        assert now_age - 60 <= s["newest_record_age_s"] <= now_age, (s, now_age)
        assert "ok" in table_row(human, name)
        assert "STALE" not in table_row(human, name)
    # Not configured, so never synced and never stale.
    activities = streams["activities"]
    assert activities["since_success_s"] is None
    assert activities["newest_record_age_s"] is None
    assert activities["stale"] is False
    assert "STALE" not in human.stdout

    # Two hours without a success, past stale_after = "1h".
    await pool.execute(
        "update syncer.streams set last_success_at = now() - interval '2 hours'"
        " where source = 'moco' and stream = 'projects'"
    )
    as_json, human = await status(config, env, tmp_path)
    assert (as_json.code, human.code) == (0, 0), (as_json, human)  # only an opt-in fails
    streams = streams_of(as_json)
    assert streams["projects"]["stale"] is True
    assert 7200 <= streams["projects"]["since_success_s"] < 7200 + 60
    assert streams["companies"]["stale"] is False
    projects = table_row(human, "projects")
    assert "STALE (> 1h)" in projects
    assert "2h ago" in projects
    assert "STALE" not in table_row(human, "companies")
    assert "STALE (no successful sync within stale_after): moco.projects\n" in human.stdout

    failing_json, failing = await status(config, env, tmp_path, "--fail-if-stale")
    for ran in (failing_json, failing):
        assert ran.code == 1, ran
        errors = ran.stderr.splitlines()
        assert len(errors) == 1, ran.stderr
        assert errors[0].startswith("error: 1 stream(s)"), ran.stderr
        assert "moco.projects" in errors[0]
        assert "moco.companies" not in errors[0]
    assert streams_of(failing_json)["projects"]["stale"] is True  # the JSON is still whole


async def test_a_configured_stream_that_never_synced_is_stale(
    env: Env, tmp_path: Path, pool: Any, sandbox: RunningSandbox
) -> None:
    config = write_config(tmp_path, sandbox, (*SYNCED, "deals"))
    ran = await syncer(
        "sync", "moco", "--stream", "projects", "--config", config, env=env, cwd=tmp_path
    )
    assert ran.code == 0, ran
    as_json, human = await status(config, env, tmp_path, "--fail-if-stale")
    streams = streams_of(as_json)
    assert streams["projects"]["stale"] is False
    for name in ("companies", "deals"):
        assert streams[name]["since_success_s"] is None
        assert streams[name]["stale"] is True
        assert "never" in table_row(human, name)
        assert "STALE" in table_row(human, name)
    assert streams["activities"]["stale"] is False  # not configured
    for ran in (as_json, human):
        assert ran.code == 1, ran
        assert "moco.companies, moco.deals" in ran.stderr


async def test_moca_tables_are_aged_by_updated_at_and_analytics_by_its_newest_bucket(
    pool: Any,
) -> None:
    await pool.execute(
        "insert into moca.beacons (id, updated_at, data) values"
        " ('b1', now() - interval '3 hours', '{}'), ('b2', now() - interval '1 hour', '{}'),"
        " ('b3', now() - interval '1 minute', '{}')"
    )
    await pool.execute("update moca.beacons set _deleted_at = now() where id = 'b3'")
    await pool.execute(
        "insert into moca.analytics (app_id, metric, interval, bucket_start, value, data) values"
        " ('a', 'sessions', 'day', now() - interval '2 days', 1, '{}'),"
        " ('a', 'sessions', 'day', now() - interval '1 day', 2, '{}')"
    )
    await pool.execute(
        "insert into syncer.streams (source, stream, last_success_at) values"
        " ('moca', 'beacons', now() - interval '10 minutes')"
    )
    moca = registry.source_type("moca")
    async with pool.acquire() as conn:
        now = await conn.fetchval("select now()")
        found = {
            s.stream: s
            for s in await stream_statuses(
                conn,
                "moca",
                "moca",
                moca.streams,
                count_rows=moca.count_rows,
                stale_after_s=3600.0,
                configured=("beacons", "analytics"),
            )
        }
    beacons, analytics = found["beacons"].freshness, found["analytics"].freshness
    assert found["beacons"].rows == 2  # the deleted one is neither counted nor aged
    assert 3600 <= (beacons.newest_record_age_s or -1) <= 3600 + 60, beacons
    assert 600 <= (beacons.since_success_s or -1) <= 600 + 60, beacons
    assert not beacons.stale
    assert found["analytics"].rows == 2
    assert 86400 <= (analytics.newest_record_age_s or -1) <= 86400 + 60, analytics
    assert analytics.stale  # configured, never succeeded
    assert not found["zones"].freshness.stale  # not configured
    newest = found["analytics"].newest_record_at
    assert newest is not None
    assert newest < now


async def test_status_shows_each_jobs_last_tick_and_its_busy_ticks_in_a_row(
    env: Env, pool: Any, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    config = write_config(tmp_path, sandbox, SYNCED)
    with config.open("a") as f:
        f.write(
            '\n[[jobs]]\nid = "projects"\nrun = "sync moco --stream projects"\nevery = "1m"\n'
            '\n[[jobs]]\nid = "hang"\nrun = "sync moco --stream companies"\nevery = "1m"\n'
            '\n[[jobs]]\nid = "quiet"\nrun = "sync moco --stream companies"\nevery = "1m"\n'
        )
    # The ticks as the daemon records them: "projects" ran, then found its stream busy three
    # times; "hang" timed out; "quiet" never fired.
    busy = "another sync of moco.projects is running against this database"
    timed_out = "timed out after 1h; raise the job's timeout if its runs need longer"
    fires = [
        ("projects", 4, "succeeded", None),
        ("projects", 3, "busy", busy),
        ("projects", 2, "busy", busy),
        ("projects", 1, "busy", busy),
        ("hang", 2, "succeeded", None),
        ("hang", 1, "failed", timed_out),
    ]
    for job, minutes_ago, outcome, error in fires:
        await pool.execute(
            "insert into syncer.job_fires (job_id, fire_time, replica, finished_at, outcome, error)"
            " values ($1, date_trunc('minute', now()) - make_interval(mins => $2), 'host:1',"
            " now(), $3, $4)",
            job,
            minutes_ago,
            outcome,
            error,
        )
    as_json, human = await status(config, env, tmp_path)
    jobs = {j["id"]: j for j in orjson.loads(as_json.stdout)["jobs"]}
    assert {
        i: (j["last_tick_outcome"], j["last_tick_error"], j["busy_in_a_row"])
        for i, j in jobs.items()
    } == {
        "projects": ("busy", busy, 3),
        "hang": ("failed", timed_out, 0),
        "quiet": (None, None, 0),
    }
    assert jobs["projects"]["last_tick_at"] is not None
    rows = {line.split()[1]: line for line in human.stdout.splitlines() if line.startswith("│")}
    assert "busy (3 in a row)" in rows["projects"], human.stdout
    assert f"job projects: last tick busy: {busy}" in human.stdout
    assert f"job hang: last tick failed: {timed_out}" in human.stdout
    assert "job quiet:" not in human.stdout
