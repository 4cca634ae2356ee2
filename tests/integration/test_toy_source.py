"""A source type registered from outside ``syncer/``: the toy plugin (``tests/plugins/toyplug``).

The real ``syncer`` command runs as a subprocess with ``PYTHONPATH`` holding the plugin's folder
and ``SYNCER_PLUGINS=toyplug.source``; the toy API (cursor paging) serves over loopback from a
thread of this process, the database is the tests' embedded PostgreSQL. Nothing in ``syncer/``
knows the toy.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import wait_for_dead_sessions
from tests.integration.test_cli import Env, assert_one_error_line, syncer
from tests.plugins.toyplug.server import TOKEN, ToyApi, running_toy

REPO = Path(__file__).resolve().parents[2]
PLUGINS = REPO / "tests" / "plugins"
STREAMS = ("widgets", "gadgets")
WRONG = "tok-wrong-77"  # distinctive, so that finding it in the output means a leak


@pytest.fixture
def toy() -> ToyApi:
    return ToyApi({"widgets": 7, "gadgets": 5})


@pytest.fixture
async def toy_url(toy: ToyApi) -> AsyncIterator[str]:
    async with running_toy(toy) as url:
        yield url


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Env:
    home = tmp_path / "home"
    home.mkdir()
    environ = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
    environ.update(
        SYNCER_DATABASE_URL=db_url,
        SYNCER_HOME=str(home),
        PYTHONPATH=str(PLUGINS),
        SYNCER_PLUGINS="toyplug.source",
        TOY_TOKEN=TOKEN,
    )
    return environ


def write_config(tmp_path: Path, url: str, *, extra: str = "", jobs: str = "") -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[sources.toys]
type = "toy"
base_url = "{url}"
token_env = "TOY_TOKEN"
rate_limit = {{ requests = 1000, per_seconds = 1 }}
overlap = "5m"
{extra}

[[jobs]]
id = "toys-every-15-min"
run = "sync toys"
every = "15m"
{jobs}
"""
    )
    return path


def _ts(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


async def stored(pool: Any, stream: str) -> dict[int, tuple[datetime, dict[str, Any]]]:
    rows = await pool.fetch(f"select id, updated_at, data from toys.{stream}")
    return {r["id"]: (r["updated_at"], orjson.loads(r["data"])) for r in rows}


def served(toy: ToyApi, stream: str) -> dict[int, tuple[datetime, dict[str, Any]]]:
    return {i: (_ts(r["updated_at"]), r) for i, r in toy.records(stream).items()}


async def assert_exact(pool: Any, toy: ToyApi) -> None:
    for stream in STREAMS:
        assert await stored(pool, stream) == served(toy, stream), stream


async def test_sync_stores_every_record_then_reads_only_what_changed(
    pool: Any, toy: ToyApi, toy_url: str, env: Env, tmp_path: Path
) -> None:
    config = write_config(tmp_path, toy_url, extra="page_size = 3")
    first = await syncer("sync", "toys", "--json", "--config", config, env=env, cwd=tmp_path)
    assert first.code == 0, first
    document = orjson.loads(first.stdout)
    assert document["outcome"] == "succeeded", document
    await assert_exact(pool, toy)
    assert toy.pages_served("widgets") == 3  # 7 records, 3 a page
    assert toy.pages_served("gadgets") == 2
    assert toy.count(401) == toy.count(429) == 0

    # Two records change; one is added. The second run asks from the watermark (the newest
    # record stored) minus the overlap: the changes, and the record at the watermark.
    toy.change("widgets", 2, "widget two, renamed")
    toy.change("gadgets", 3, "gadget three, renamed")
    toy.add("widgets", "widget eight")
    before = len(toy.requests)
    second = await syncer("sync", "toys", "--config", config, env=env, cwd=tmp_path)
    assert second.code == 0, second
    await assert_exact(pool, toy)
    assert sorted(toy.served_ids("widgets", before)) == [2, 7, 8]
    assert sorted(toy.served_ids("gadgets", before)) == [3, 5]
    assert all("updated_since" in r.params for r in toy.requests[before:])
    names = {i: d["name"] for i, (_, d) in (await stored(pool, "widgets")).items()}
    assert names[2] == "widget two, renamed"
    assert names[8] == "widget eight"

    table = await syncer("status", "--config", config, env=env, cwd=tmp_path)
    assert table.code == 0, table
    assert "toys.widgets" in table.stdout
    assert "toys.gadgets" in table.stdout
    status = await syncer("status", "--json", "--config", config, env=env, cwd=tmp_path)
    assert status.code == 0, status
    streams = {s["stream"]: s for s in orjson.loads(status.stdout)["streams"]}
    assert set(streams) == set(STREAMS)
    for stream in STREAMS:
        row = streams[stream]
        newest = max(t for t, _ in served(toy, stream).values())
        assert row["source"] == "toys"
        assert row["rows"] == len(toy.records(stream))
        assert _ts(row["watermark"]) == newest
        assert row["last_run_outcome"] == "succeeded"
        assert row["in_progress"] is False
        assert row["stale"] is False


async def test_run_once_runs_the_toy_job(
    pool: Any, toy: ToyApi, toy_url: str, env: Env, tmp_path: Path
) -> None:
    config = write_config(tmp_path, toy_url)
    ran = await syncer("run", "--once", "--json", "--config", config, env=env, cwd=tmp_path)
    assert ran.code == 0, ran
    document = orjson.loads(ran.stdout)
    assert document["outcome"] == "succeeded", document
    jobs = [(j["job"], j["outcome"]) for j in document["jobs"]]
    assert jobs == [("toys-every-15-min", "succeeded")]
    runs = await pool.fetch("select source, command, outcome from syncer.runs")
    assert [tuple(r) for r in runs] == [("toys", "job toys-every-15-min: sync toys", "succeeded")]
    await assert_exact(pool, toy)


async def test_a_full_refresh_reads_every_record_again(
    pool: Any, toy: ToyApi, toy_url: str, env: Env, tmp_path: Path
) -> None:
    config = write_config(tmp_path, toy_url, extra="page_size = 3")
    first = await syncer("sync", "toys", "--config", config, env=env, cwd=tmp_path)
    assert first.code == 0, first
    toy.change("gadgets", 1, "gadget one, renamed")
    before = len(toy.requests)
    again = await syncer(
        "sync", "toys", "--full-refresh", "--config", config, env=env, cwd=tmp_path
    )
    assert again.code == 0, again
    await assert_exact(pool, toy)
    for stream in STREAMS:
        assert sorted(toy.served_ids(stream, before)) == sorted(toy.records(stream))
    assert not any("updated_since" in r.params for r in toy.requests[before:])


async def test_check_shows_the_toy_sources_probe(
    toy: ToyApi, toy_url: str, env: Env, tmp_path: Path
) -> None:
    config = write_config(tmp_path, toy_url)
    ran = await syncer("check", "--json", "--config", config, env=env, cwd=tmp_path)
    assert ran.code == 0, ran
    rows = {r["check"]: r for r in orjson.loads(ran.stdout)["checks"]}
    assert rows["source toys"]["status"] == "ok", rows
    assert "Toy API accepted $TOY_TOKEN: HTTP 200" in rows["source toys"]["detail"]
    assert [r.params for r in toy.requests] == [{"limit": "1"}]

    wrong = await syncer(
        "check", "--json", "--config", config, env={**env, "TOY_TOKEN": WRONG}, cwd=tmp_path
    )
    assert wrong.code == 1, wrong
    rows = {r["check"]: r for r in orjson.loads(wrong.stdout)["checks"]}
    assert rows["source toys"]["status"] == "failed"
    assert "401" in rows["source toys"]["detail"]
    assert "TOY_TOKEN" in rows["source toys"]["fix"]
    assert WRONG not in wrong.output


async def committed_pages(pool: Any) -> int:
    return int(await pool.fetchval("select coalesce(sum(pages), 0) from syncer.stream_runs"))


async def test_a_sync_killed_mid_walk_resumes_at_its_cursor_and_converges(
    db_url: str, pool: Any, tmp_path: Path, env: Env
) -> None:
    toy = ToyApi({"widgets": 40, "gadgets": 30})
    async with running_toy(toy) as url:
        config = write_config(tmp_path, url, extra="page_size = 4")
        toy.hold_after(7)  # seven pages are answered, then the API stops answering
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "syncer",
            "sync",
            "toys",
            "--config",
            str(config),
            env=env,
            cwd=tmp_path,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            async with asyncio.timeout(60):
                while await committed_pages(pool) < 7:
                    assert child.returncode is None, "the sync ended before it could be killed"
                    await asyncio.sleep(0.02)
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        await wait_for_dead_sessions(pool)
        positions = {
            r["stream"]: orjson.loads(r["walk"])
            for r in await pool.fetch("select stream, walk from syncer.streams")
        }
        assert any(p is not None for p in positions.values()), positions
        stored_before = {s: len(await stored(pool, s)) for s in STREAMS}
        assert sum(stored_before.values()) == 7 * 4

        toy.release()
        async with asyncio.timeout(30):
            while toy.holding:
                await asyncio.sleep(0.01)
        before = len(toy.requests)
        again = await syncer("sync", "toys", "--config", config, env=env, cwd=tmp_path)
        assert again.code == 0, again
        await assert_exact(pool, toy)

        resumed = {
            r["stream"]: r["resumed_after_pages"]
            for r in await pool.fetch(
                "select stream, resumed_after_pages from syncer.stream_runs"
                " where run_id = (select max(id) from syncer.runs)"
            )
        }
        for stream, position in positions.items():
            if position is None:
                continue
            assert resumed[stream] == position["pages"]
            first = next(r for r in toy.requests[before:] if r.stream == stream)
            assert first.params.get("cursor") == position["cursor"]
            # Nothing stored before the kill is read again.
            assert len(toy.served_ids(stream, before)) == len(toy.records(stream)) - (
                position["pages"] * 4
            )
        walks = await pool.fetchval("select count(*) from syncer.streams where walk is not null")
        assert walks == 0


async def test_a_wrong_token_fails_the_sync_naming_the_variable(
    pool: Any, toy: ToyApi, toy_url: str, env: Env, tmp_path: Path
) -> None:
    config = write_config(tmp_path, toy_url)
    ran = await syncer(
        "sync", "toys", "--config", config, env={**env, "TOY_TOKEN": WRONG}, cwd=tmp_path
    )
    assert ran.code == 1, ran
    assert "TOY_TOKEN" in ran.stderr
    assert WRONG not in ran.output
    assert "Traceback" not in ran.output
    assert toy.count(401) >= 1


async def test_the_server_rate_limit_is_retried_and_the_sync_converges(
    pool: Any, env: Env, tmp_path: Path
) -> None:
    toy = ToyApi({"widgets": 12, "gadgets": 12}, rate_per_s=4)
    async with running_toy(toy) as url:
        config = write_config(tmp_path, url, extra="page_size = 2")
        ran = await syncer("sync", "toys", "--config", config, env=env, cwd=tmp_path, timeout_s=120)
        assert ran.code == 0, ran
        await assert_exact(pool, toy)
        # How many requests were refused depends on the machine's speed: not asserted.


async def test_an_unknown_plugin_module_is_one_error_line_and_exit_2(
    toy_url: str, env: Env, tmp_path: Path
) -> None:
    config = write_config(tmp_path, toy_url)
    ran = await syncer(
        "sync",
        "toys",
        "--config",
        config,
        env={**env, "SYNCER_PLUGINS": "toyplug.source, toyplug.nosuch"},
        cwd=tmp_path,
    )
    assert_one_error_line(ran, 2, "toyplug.nosuch", "SYNCER_PLUGINS")


def test_nothing_in_syncer_names_the_toy() -> None:
    named = [
        str(path.relative_to(REPO))
        for path in (REPO / "syncer").rglob("*")
        if path.is_file()
        and path.suffix in (".py", ".toml", ".md", ".ini", ".mako")
        and "toy" in path.read_text(encoding="utf-8").lower()
    ]
    assert named == []
