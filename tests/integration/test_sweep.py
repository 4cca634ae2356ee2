"""The MOCO deletion sweep: real sandbox over loopback HTTP, real PostgreSQL, real processes."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from syncer.errors import FatalError
from syncer.extract.records import split_records
from syncer.results import SweepResult
from syncer.runners.sweep import CHUNK, SWEEP_LOCK_CLASS, sweep_source
from syncer.runners.sync import sync_source
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.moco_data import MOCO_STREAM_PATHS, MocoData, format_ts
from syncer.sandbox.moco_records import Record
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moco.catalog import CATALOG
from syncer.store.pages import upsert_rows
from tests.conftest import CLASSIC_STREAMS as MOCO_STREAMS
from tests.conftest import moco_source
from tests.integration.test_cli import syncer
from tests.integration.test_daemon import config, environment

FAST = {"backoff_base_s": 0.01}
COUNTS = {
    "activities": 450,
    "projects": 150,
    "companies": 130,
    "contacts": 120,
    "users": 40,
    "invoices": 160,
    "offers": 110,
    "deals": 90,
}


class RestorableData(MocoData):
    """MOCO data whose deleted records can reappear (a restore at the vendor, a key that
    regains access): MocoData itself, like MOCO, only ever removes them."""

    def put_back(self, stream: str, records: list[Record]) -> None:
        self._rows[stream].extend(records)


@pytest.fixture
def moco() -> MocoSandbox:
    return MocoSandbox(RestorableData(counts=COUNTS))


def data(moco: MocoSandbox) -> RestorableData:
    assert isinstance(moco.data, RestorableData)
    return moco.data


async def sync(pool: Any, sandbox: RunningSandbox, **options: Any) -> Any:
    async with aiohttp.ClientSession() as session:
        result = await sync_source(
            pool, session, moco_source(sandbox.moco_base_url), **FAST, **options
        )
    assert result.ok, result.errors
    return result


async def sweep(pool: Any, sandbox: RunningSandbox, **options: Any) -> SweepResult:
    overrides = options.pop("source", {})
    async with aiohttp.ClientSession() as session:
        return await sweep_source(
            pool, session, moco_source(sandbox.moco_base_url, **overrides), **FAST, **options
        )


async def marked(pool: Any, stream: str) -> set[int]:
    rows = await pool.fetch(f"select id from moco.{stream} where _deleted_at is not null")
    return {r["id"] for r in rows}


async def stored_ids(pool: Any, stream: str) -> set[int]:
    return {r["id"] for r in await pool.fetch(f"select id from moco.{stream}")}


def requests_to(moco: MocoSandbox, stream: str) -> list[Any]:
    path = f"/api/v1{MOCO_STREAM_PATHS[stream]}"
    return [r for r in moco.requests if r.path == path]


def stream_of(result: SweepResult, name: str) -> Any:
    return next(s for s in result.streams if s.stream == name)


async def test_exactly_the_deleted_records_are_marked_at_one_request_per_100_rows(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox)
    gone = {
        "activities": data(moco).delete("activities", 7),
        "deals": data(moco).delete("deals", 2),
    }
    rows = {s: len(await stored_ids(pool, s)) for s in MOCO_STREAMS}
    moco.reset_log()
    result = await sweep(pool, sandbox)
    assert result.ok, result.errors
    for stream in MOCO_STREAMS:
        assert await marked(pool, stream) == set(gone.get(stream, [])), stream
        s = stream_of(result, stream)
        assert s.deleted == len(gone.get(stream, []))
        assert s.checked == rows[stream]
        # Each chunk's answer lists exactly what still exists: no request beyond one per chunk.
        assert len(requests_to(moco, stream)) == math.ceil(rows[stream] / CHUNK) == s.http.requests
    # Nothing but the marks changed: every other row is as the source serves it.
    for stream in MOCO_STREAMS:
        live = {r["id"] for r in moco.data.records(stream)}
        assert await stored_ids(pool, stream) - await marked(pool, stream) == live
    run = await pool.fetchrow("select kind, outcome from syncer.runs where id = $1", result.run_id)
    assert (run["kind"], run["outcome"]) == ("sweep", "succeeded")
    counts = {
        r["stream"]: r
        for r in await pool.fetch(
            "select stream, outcome, requests, records, deleted, warning from syncer.stream_runs"
            " where run_id = $1",
            result.run_id,
        )
    }
    assert counts["activities"]["deleted"] == 7
    assert counts["activities"]["records"] == rows["activities"]
    assert counts["activities"]["requests"] == len(requests_to(moco, "activities"))
    assert all(c["outcome"] == "succeeded" and c["warning"] is None for c in counts.values())


async def test_archived_inactive_and_disregarded_records_are_not_taken_for_deleted(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox)
    for stream, hidden in (
        ("projects", "data->>'active' = 'false'"),
        ("companies", "data->>'active' = 'false'"),
        ("users", "data->>'active' = 'false'"),
        ("invoices", "data->>'status' = 'disregarded'"),
    ):
        assert await pool.fetchval(f"select count(*) from moco.{stream} where {hidden}") > 0
    moco.reset_log()
    result = await sweep(pool, sandbox)
    assert result.ok, result.errors
    assert sum(s.deleted for s in result.streams) == 0
    assert result.warnings == []  # nothing missing, not merely withheld
    for stream in MOCO_STREAMS:
        assert await marked(pool, stream) == set()
    for stream in ("projects", "companies", "users"):
        assert all(r.query.get("include_archived") == "true" for r in requests_to(moco, stream))
    assert all(r.query.get("include_disregarded") == "true" for r in requests_to(moco, "invoices"))


async def test_half_of_a_stream_missing_marks_none_and_warns(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox)
    rows = len(await stored_ids(pool, "offers"))
    data(moco).delete("offers", rows // 2)
    result = await sweep(pool, sandbox, streams=["offers"])
    assert result.ok, result.errors  # withheld, not failed
    offers = stream_of(result, "offers")
    assert (offers.deleted, offers.withheld) == (0, rows // 2)
    assert await marked(pool, "offers") == set()
    assert len(result.warnings) == 1
    assert "deletion_guard = 0.2" in result.warnings[0]
    assert f"{rows // 2} of {rows} offers (50%)" in result.warnings[0]
    warning = await pool.fetchval(
        "select warning from syncer.stream_runs where run_id = $1", result.run_id
    )
    assert warning == offers.warning
    # Once confirmed, a higher guard for one sweep marks them.
    again = await sweep(pool, sandbox, streams=["offers"], source={"deletion_guard": 0.6})
    assert stream_of(again, "offers").deleted == rows // 2


async def test_a_record_that_comes_back_is_restored_by_the_next_sweep(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox)
    by_id = {r["id"]: r for r in moco.data.live("contacts")}
    gone = data(moco).delete("contacts", 5)
    first = await sweep(pool, sandbox, streams=["contacts"])
    assert stream_of(first, "contacts").deleted == 5
    back = gone[:3]
    data(moco).put_back("contacts", [by_id[i] for i in back])
    # An incremental sync does not see them: they are older than the watermark.
    await sync(pool, sandbox, streams=["contacts"])
    assert await marked(pool, "contacts") == set(gone)
    second = await sweep(pool, sandbox, streams=["contacts"])
    assert stream_of(second, "contacts").restored == 3
    assert stream_of(second, "contacts").deleted == 0
    assert await marked(pool, "contacts") == set(gone[3:])
    stored = {
        r["id"]: orjson.loads(r["data"])
        for r in await pool.fetch("select id, data from moco.contacts where id = any($1)", back)
    }
    assert stored == {i: by_id[i] for i in back}


async def test_a_record_that_comes_back_changed_is_restored_by_the_next_sync(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox)
    by_id = {r["id"]: r for r in moco.data.live("deals")}
    gone = data(moco).delete("deals", 2)
    await sweep(pool, sandbox, streams=["deals"])
    assert await marked(pool, "deals") == set(gone)
    record = by_id[gone[0]]
    record["updated_at"] = format_ts(int(time.time() * 1000), with_ms=True)
    record["info"] = "wieder da"
    data(moco).put_back("deals", [record])
    await sync(pool, sandbox, streams=["deals"])
    assert await marked(pool, "deals") == {gone[1]}


async def test_a_server_paging_fewer_than_100_gets_chunks_that_fit_one_page(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox, streams=["activities"])
    moco.settings = replace(moco.settings, max_per_page=30)
    gone = data(moco).delete("activities", 4)
    rows = len(await stored_ids(pool, "activities"))
    moco.reset_log()
    result = await sweep(pool, sandbox, streams=["activities"])
    assert result.ok, result.errors
    assert await marked(pool, "activities") == set(gone)
    requests = requests_to(moco, "activities")
    assert all(r.query["page"] == "1" for r in requests)  # never offset paging
    # The first answer shows the page size; from then on chunks of 30.
    assert len(requests) == 1 + math.ceil(rows / 30)


async def test_a_server_ignoring_the_ids_filter_fails_the_stream_and_marks_nothing(
    pool: Any, sandbox: RunningSandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    await sync(pool, sandbox, streams=["activities"])
    # A server without the filter answers the whole stream, as a request without ids gets.
    plain = CATALOG["activities"].params
    monkeypatch.setattr(
        "syncer.runners.sweep.ids_params", lambda lister, spec, chunk: {**plain, "page": "1"}
    )
    result = await sweep(pool, sandbox, streams=["activities"])
    assert not result.ok
    assert "does not honour the ids filter" in result.errors[0]
    assert await marked(pool, "activities") == set()


async def test_a_second_sweep_of_the_source_is_refused_but_a_sync_runs_beside_it(
    pool: Any, sandbox: RunningSandbox
) -> None:
    async with pool.acquire() as conn:
        lock = "select pg_advisory_lock($1, hashtext('moco.projects'))"
        await conn.execute(lock, SWEEP_LOCK_CLASS)
        with pytest.raises(FatalError, match=r"a sweep of moco\.projects is running"):
            await sweep(pool, sandbox)
        assert (await sync(pool, sandbox, streams=["projects"])).ok
        await conn.execute("select pg_advisory_unlock_all()")


async def test_a_page_requested_before_the_mark_does_not_resurrect_a_deleted_record(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    """A sync runs beside the sweep: its page, requested before the deletion was seen and
    committed after the mark, must not clear it; a page requested after the mark does."""
    await sync(pool, sandbox, streams=["contacts"])
    stale, _ = split_records(
        orjson.loads(orjson.dumps(moco.data.records("contacts"))),
        CATALOG["contacts"],
    )
    before = datetime.now(UTC)
    gone = data(moco).delete("contacts", 2)
    await sweep(pool, sandbox, streams=["contacts"])
    assert await marked(pool, "contacts") == set(gone)
    stale = [r for r in stale if r.id in gone]
    async with pool.acquire() as conn, conn.transaction():
        await upsert_rows(conn, "moco", "contacts", stale, (), requested_at=before)
    assert await marked(pool, "contacts") == set(gone)
    async with pool.acquire() as conn, conn.transaction():
        await upsert_rows(conn, "moco", "contacts", stale, (), requested_at=datetime.now(UTC))
    assert await marked(pool, "contacts") == set()


async def test_syncer_sweep_prints_the_summary_and_exits_0(
    db_url: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, tmp_path: Path
) -> None:
    await sync(pool, sandbox)
    gone = data(moco).delete("activities", 3)
    path = config(tmp_path, sandbox, rate="{ requests = 1000, per_seconds = 1 }", jobs="")
    env = environment(db_url, tmp_path)
    ran = await syncer(
        "sweep", "moco", "--stream", "activities", "--config", path, env=env, cwd=tmp_path
    )
    assert ran.code == 0, ran
    line = next(line for line in ran.stdout.splitlines() if "moco.activities" in line)
    rows = len(await stored_ids(pool, "activities"))
    requests = math.ceil(rows / CHUNK)
    cells = line.replace("│", " ").split()
    assert cells == ["moco.activities", "succeeded", str(rows), str(requests), "3", "0", "0"]
    assert f"{requests} requests" in ran.stdout
    assert await marked(pool, "activities") == set(gone)


async def test_sweeping_a_moca_source_is_a_usage_error_saying_why(
    db_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    path = tmp_path / "schedules.toml"
    path.write_text(
        f'[sources.moca]\ntype = "moca"\nbase_url = "{sandbox.moca_base_url}"\n'
        'token_env = "MOCA_API_TOKEN"\n'
    )
    env = {**environment(db_url, tmp_path), "MOCA_API_TOKEN": "t"}
    ran = await syncer("sweep", "moca", "--config", path, env=env, cwd=tmp_path)
    assert ran.code == 2, ran
    assert "moca source" in ran.stderr
    assert "confirm each missing record" in ran.stderr
    assert "Traceback" not in ran.stderr
    path.write_text(path.read_text() + '[[jobs]]\nid = "s"\nrun = "sweep moca"\nevery = "1d"\n')
    ran = await syncer("run", "--once", "--config", path, env=env, cwd=tmp_path)
    assert ran.code == 2, ran
    assert "jobs (s)" in ran.stderr
    assert "moca source" in ran.stderr


async def test_a_sweep_job_runs_with_run_once(
    db_url: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, tmp_path: Path
) -> None:
    await sync(pool, sandbox)
    gone = data(moco).delete("invoices", 4)
    path = config(
        tmp_path,
        sandbox,
        rate="{ requests = 1000, per_seconds = 1 }",
        jobs='[[jobs]]\nid = "nightly-sweep"\nrun = "sweep moco"\ncron = "0 3 * * *"\n',
    )
    ran = await syncer(
        "run", "--once", "--config", path, env=environment(db_url, tmp_path), cwd=tmp_path
    )
    assert ran.code == 0, ran
    run = await pool.fetchrow(
        "select kind, outcome, command from syncer.runs order by started_at desc limit 1"
    )
    assert (run["kind"], run["outcome"]) == ("sweep", "succeeded")
    assert run["command"] == "job nightly-sweep: sweep moco"
    assert await marked(pool, "invoices") == set(gone)
