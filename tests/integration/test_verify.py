"""``syncer verify``: a first sync, then records appear at the source with an old ``updated_at``
(an import, a restore: invisible to incremental reads) and others are deleted (MOCO keeps no
tombstones); a verify finds exactly those, stores and marks them, and costs a fraction of a full
re-read. Real MOCO sandbox over loopback, real PostgreSQL, the real ``syncer`` command.

The counts see net differences per window of ``updated_at``: a record missing and another
deleted in the same window cancel out (``extract/completeness.py``). The scenarios keep every
stream's differences of one sign, or (activities) the deleted records far newer than the
backdated ones, and assert it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from syncer.results import VerifyResult
from syncer.runners.sync import sync_source
from syncer.runners.verify import verify_source
from syncer.sandbox.moco import MocoSandbox, MocoSandboxSettings, RequestRecord
from syncer.sandbox.moco_data import MocoData, parse_ts
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moca.api import STREAMS as MOCA_STREAMS
from syncer.sources.moco.catalog import CATALOG
from tests.conftest import CLASSIC_STREAMS, SANDBOX_KEY, moco_source, wait_for_dead_sessions
from tests.integration.test_cli import Env, Ran, closed_port, syncer
from tests.integration.test_moca_sync import assert_tables_equal_source as moca_tables_equal_source
from tests.integration.test_moca_sync import clock as clock  # the fixtures
from tests.integration.test_moca_sync import moca_sandbox as moca_sandbox
from tests.integration.test_moca_sync import served as moca_served
from tests.integration.test_moca_sync import source as moca_source
from tests.integration.test_moca_sync import stored as moca_stored
from tests.integration.test_moca_sync import sync as sync_moca
from tests.integration.test_toy_source import PLUGINS
from tests.integration.test_toy_source import toy as toy  # the fixtures
from tests.integration.test_toy_source import toy_url as toy_url
from tests.plugins.toyplug.server import TOKEN as TOY_TOKEN

FAST = {"backoff_base_s": 0.01}
# The sandbox's own limit (MOCO's 120 a 2 minutes) would answer a first sync and two verifies
# with 429s; these tests are about what a verify asks, not about pacing.
UNLIMITED = MocoSandboxSettings(rate_limit_requests=1_000_000, rate_limit_window_s=1.0)
BACKDATED = ("activities", "contacts", "deals", "invoices")
JSON_FIELDS = {
    "stream",
    "outcome",
    "result",
    "method",
    "source_count",
    "warehouse_count",
    "missing",
    "extra",
    "repaired",
    "unrepaired",
    "requests",
    "planned_requests",
    "warning",
    "error",
}


@pytest.fixture
def moco() -> MocoSandbox:
    """The default account (about 5,000 records), without the sandbox's rate limit."""
    return MocoSandbox(settings=UNLIMITED)


# --- what the warehouse holds ------------------------------------------------------------------


def stable(record: dict[str, Any]) -> dict[str, Any]:
    """The record without fields that change on every read (invoices' signed file_url)."""
    return {k: v for k, v in record.items() if k != "file_url"}


async def live_contents(pool: Any, stream: str) -> dict[int, Any]:
    rows = await pool.fetch(f"select id, data from moco.{stream} where _deleted_at is null")
    return {r["id"]: stable(orjson.loads(r["data"])) for r in rows}


async def assert_exact(pool: Any, moco: MocoSandbox, streams: Sequence[str] = CLASSIC_STREAMS):
    """Every stream's live rows are the source's records, as served; every other row is marked
    deleted, and no id is stored twice."""
    for stream in streams:
        served = {r["id"]: stable(r) for r in moco.data.records(stream)}
        assert await live_contents(pool, stream) == served, stream
        rows = await pool.fetchrow(
            f"select count(*) as n, count(distinct id) as ids,"
            f" count(*) filter (where _deleted_at is not null) as deleted from moco.{stream}"
        )
        assert rows["n"] == rows["ids"] == len(served) + rows["deleted"], stream


async def snapshot(pool: Any) -> dict[str, list[Any]]:
    """Every row of every stream as stored, deleted or not."""
    return {
        s: [
            tuple(r)
            for r in await pool.fetch(
                f"select id, data::text, _deleted_at, _synced_at from moco.{s} order by id"
            )
        ]
        for s in CLASSIC_STREAMS
    }


def planned(stream: str) -> int:
    """What verifying ``stream`` costs when nothing differs."""
    return 1 if CATALOG[stream].takes("sort_by") else 2


def counts(ids: dict[str, list[int]]) -> dict[str, int]:
    return {s: len(v) for s, v in ids.items() if v}


def found(result: VerifyResult) -> tuple[dict[str, int], dict[str, int]]:
    """Missing and extra rows per stream (those with any)."""
    missing = {s.stream: s.missing for s in result.streams if s.missing}
    extra = {s.stream: s.extra for s in result.streams if s.extra}
    return missing, extra


def found_json(document: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
    missing = {s["stream"]: s["missing"] for s in document["streams"] if s["missing"]}
    extra = {s["stream"]: s["extra"] for s in document["streams"] if s["extra"]}
    return missing, extra


# --- runs ------------------------------------------------------------------------------------


async def sync(pool: Any, sandbox: RunningSandbox, **options: Any) -> Any:
    async with aiohttp.ClientSession() as session:
        result = await sync_source(pool, session, moco_source(sandbox.moco_base_url), **options)
    assert result.ok, result.errors
    return result


async def verify(pool: Any, sandbox: RunningSandbox, **options: Any) -> VerifyResult:
    async with aiohttp.ClientSession() as session:
        return await verify_source(
            pool, session, moco_source(sandbox.moco_base_url), **FAST, **options
        )


def write_config(path: Path, base_url: str, *, requests_per_s: int = 1000) -> Path:
    path.write_text(
        f"""
[sources.moco]
type = "moco"
base_url = "{base_url}"
api_key_env = "MOCO_API_KEY"
streams = ["activities", "projects", "companies", "contacts",
    "users", "invoices", "offers", "deals"]
rate_limit = {{ requests = {requests_per_s}, per_seconds = 1 }}
"""
    )
    return path


@pytest.fixture
def cli(db_url: str, tmp_path: Path) -> Env:
    environ = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
    environ.update(SYNCER_DATABASE_URL=db_url, MOCO_API_KEY=SANDBOX_KEY)
    return environ


async def run_json(*args: str | Path, env: Env, cwd: Path) -> tuple[Ran, dict[str, Any]]:
    ran = await syncer(*args, "--json", env=env, cwd=cwd, timeout_s=180)
    assert "Traceback" not in ran.stderr, ran.stderr
    return ran, orjson.loads(ran.stdout)


def hide_and_delete(moco: MocoSandbox) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
    """Backdated records in four streams, deletions in two others (their ids, by stream): what
    a verify must find."""
    hidden = moco.data.backdate(8, list(BACKDATED))
    gone = {
        "companies": moco.data.delete("companies", 2),
        "projects": moco.data.delete("projects", 1),
    }
    return hidden, gone


def hid_and_deleted(moco: MocoSandbox) -> tuple[dict[str, int], dict[str, int]]:
    """:func:`hide_and_delete`, counted per stream."""
    hidden, gone = hide_and_delete(moco)
    return counts(hidden), counts(gone)


# --- one verify, then another ------------------------------------------------------------------


@pytest.fixture
def account() -> MocoSandbox:
    """An account whose activities dominate, as in a real one: 20,000 of them (a verify's
    cost grows with the differences and the log of a list's length, a re-read with its
    length)."""
    return MocoSandbox(MocoData(counts={"activities": 20_000}), UNLIMITED)


@pytest.mark.slow
async def test_a_verify_finds_exactly_the_backdated_and_deleted_records_for_a_fraction_of_a_reread(
    pool: Any, account: MocoSandbox
) -> None:
    from tests.conftest import sandbox_in_thread

    moco = account
    async with sandbox_in_thread(moco=moco) as sandbox:
        first = await sync(pool, sandbox)
        reread = len(moco.requests)  # a first sync reads every page of every list
        assert reread == first.http.requests >= 200

        now = datetime.now(UTC)
        hidden = moco.data.backdate(12, list(BACKDATED))
        # Deleted activities: two changed within the last fortnight, far newer than the
        # backdated ones (6 to 12 weeks old), so that no window holds both.
        recent = {
            r["id"]: parse_ts(r["updated_at"])
            for r in moco.data.live("activities")
            if parse_ts(r["updated_at"]) > now - timedelta(days=14)
        }
        chosen = sorted(recent)[:: len(recent) // 2][:2]
        gone = {
            "activities": moco.data.delete("activities", 0, ids=chosen),
            "companies": moco.data.delete("companies", 2),
            "projects": moco.data.delete("projects", 2),
        }
        assert len(gone["activities"]) == 2
        assert all(
            parse_ts(r["updated_at"]) < min(recent[i] for i in chosen) - timedelta(days=21)
            for r in moco.data.live("activities")
            if r["id"] in hidden["activities"]
        )

        blind = await sync(pool, sandbox)  # an incremental sync sees none of it
        assert sum(s.upserted for s in blind.streams) == 0

        moco.reset_log()
        result = await verify(pool, sandbox)
        assert result.ok, result.errors
        first_cost = len(moco.requests)
        assert first_cost == result.http.requests
        assert found(result) == (counts(hidden), counts(gone))
        by_stream = {s.stream: s for s in result.streams}
        for s in result.streams:
            assert s.repaired == s.missing + s.extra, s
            assert s.verdict == ("repaired" if s.missing or s.extra else "verified"), s
            assert s.warning is None, s
        assert {s.stream for s in result.streams if s.verdict == "verified"} == {
            "offers",
            "users",
        }
        await assert_exact(pool, moco)
        marked = await pool.fetch("select id from moco.activities where _deleted_at is not null")
        assert sorted(r["id"] for r in marked) == gone["activities"]
        # Under a third of a re-read in all (a short list that differs is read whole, for
        # about its pages); activities, 200 pages, for a small share of them.
        assert first_cost * 3 < reread, (first_cost, reread)
        assert by_stream["activities"].http.requests * 4 < 200

        moco.reset_log()
        again = await verify(pool, sandbox)
        assert again.ok
        assert found(again) == ({}, {})
        assert len(moco.requests) == again.http.requests == sum(map(planned, CLASSIC_STREAMS))
        await assert_exact(pool, moco)
        print(
            f"\nverify: first {first_cost} requests "
            f"({', '.join(f'{s.stream} {s.http.requests}' for s in result.streams)}), "
            f"second {len(moco.requests)}, a full re-read {reread}"
        )


# --- the command, --no-repair, --json and status ----------------------------------------------


async def status_code(config: Path, env: Env, cwd: Path) -> Ran:
    ran = await syncer("status", "--fail-if-unverified", "1d", "--config", config, env=env, cwd=cwd)
    assert "Traceback" not in ran.stderr, ran.stderr
    return ran


async def test_no_repair_reports_what_verify_then_repairs_and_status_says_whether_verified(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, cli: Env, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "schedules.toml", sandbox.moco_base_url)
    synced = await syncer("sync", "moco", "--config", config, env=cli, cwd=tmp_path)
    assert synced.code == 0, synced
    never = await status_code(config, cli, tmp_path)
    assert never.code == 1, never
    assert "never verified" in never.stderr
    assert "moco.activities" in never.stderr

    hidden, gone = hid_and_deleted(moco)
    before = await snapshot(pool)
    moco.reset_log()
    ran, report = await run_json(
        "verify", "moco", "--no-repair", "--config", config, env=cli, cwd=tmp_path
    )
    # Differences left are a failure to report (exit 1), as the JSON says and why.
    assert ran.code == 1, ran
    assert (report["outcome"], report["exit_code"], report["repair"]) == ("failed", 1, False)
    assert found_json(report) == (hidden, gone)
    assert all(s["repaired"] == 0 for s in report["streams"])
    assert {s["stream"]: s["unrepaired"] for s in report["streams"] if s["unrepaired"]} == {
        s: hidden.get(s, 0) + gone.get(s, 0) for s in {*hidden, *gone}
    }
    assert any("run verify without --no-repair" in e for e in report["errors"])
    assert report["requests"] == len(moco.requests)
    assert await snapshot(pool) == before  # nothing stored, nothing marked
    left = await status_code(config, cli, tmp_path)
    assert left.code == 1, left
    assert "its last verify differs" in left.stderr

    moco.reset_log()
    ran, report = await run_json("verify", "moco", "--config", config, env=cli, cwd=tmp_path)
    assert ran.code == 0, ran
    assert (report["outcome"], report["exit_code"], report["repair"]) == ("succeeded", 0, True)
    assert report["requests"] == len(moco.requests) == sum(s["requests"] for s in report["streams"])
    assert found_json(report) == (hidden, gone)
    for s in report["streams"]:
        assert set(s) == JSON_FIELDS, s
        assert s["repaired"] == s["missing"] + s["extra"], s
        assert s["unrepaired"] == 0, s
        assert (s["outcome"], s["method"]) == ("succeeded", "counts"), s
        assert s["result"] == ("repaired" if s["missing"] or s["extra"] else "verified"), s
        assert isinstance(s["source_count"], int), s
        assert isinstance(s["warehouse_count"], int), s
        assert s["requests"] >= 1, s
        assert s["planned_requests"] == planned(s["stream"]), s
    assert [s["stream"] for s in report["streams"]] == list(CLASSIC_STREAMS)
    await assert_exact(pool, moco)
    verified = await status_code(config, cli, tmp_path)
    assert verified.code == 0, verified

    moco.reset_log()
    ran, again = await run_json("verify", "moco", "--config", config, env=cli, cwd=tmp_path)
    assert ran.code == 0, ran
    assert found_json(again) == ({}, {})
    assert {s["result"] for s in again["streams"]} == {"verified"}
    # One request a list that sorts by updated_at (its newest records' page tells both the
    # total and what changed since the last sync), two one that does not.
    assert again["requests"] == len(moco.requests) == sum(map(planned, CLASSIC_STREAMS))
    assert {s["stream"]: s["requests"] for s in again["streams"]} == {
        s: planned(s) for s in CLASSIC_STREAMS
    }
    for s in again["streams"]:
        assert s["source_count"] == s["warehouse_count"] == len(moco.data.records(s["stream"]))


# --- changes while a verify runs ----------------------------------------------------------------


async def test_records_changed_while_a_verify_runs_are_no_differences(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    await sync(pool, sandbox)
    hidden, gone = hide_and_delete(moco)
    changed: dict[str, set[int]] = {s: set() for s in CLASSIC_STREAMS}
    created: dict[str, set[int]] = {s: set() for s in CLASSIC_STREAMS}

    def change(request: RequestRecord) -> None:
        # Before every other request is answered: a record of that stream changed, another
        # created (both stamped now, after the verify began).
        stream = next((s for s in CLASSIC_STREAMS if request.path.endswith(CATALOG[s].path)), None)
        if stream is None or len(moco.requests) % 2:
            return
        changed[stream].update(moco.data.update(stream, 1))
        created[stream].update(moco.data.create(stream, 1))

    moco.hooks.append(change)
    moco.reset_log()
    result = await verify(pool, sandbox)
    moco.hooks.remove(change)
    assert result.ok, result.errors
    assert sum(len(v) for v in changed.values()) >= 10  # it changed a lot while it ran
    for s in result.streams:
        assert s.repaired == s.missing + s.extra, s
        assert s.warning is None, s
        # Missing: the backdated records, but those changed meanwhile before the verify came
        # to them (they are the next sync's now); nothing created or changed meanwhile.
        backdated = set(hidden.get(s.stream, ()))
        live = await live_contents(pool, s.stream)
        stored = {i for i in backdated if i in live}
        assert backdated - changed[s.stream] <= stored, s
        assert s.missing == len(stored), s
        assert not created[s.stream] & set(live), s
        # Extra: exactly the deleted records.
        assert s.extra == len(gone.get(s.stream, ())), s
    await sync(pool, sandbox)
    await assert_exact(pool, moco)


@pytest.mark.parametrize(
    ("before", "difference"),
    [("newest", "missing"), ("total", "extra")],
    ids=["created before the newest: a missing record", "before the total: an extra one"],
)
async def test_records_created_at_every_count_of_an_unsorted_list_hide_no_difference(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, before: str, difference: str
) -> None:
    """A list without ``sort_by`` (contacts) is counted by two requests: its total, then what
    changed after the compared time. A record created before either answer, at every take, is
    listed after that time, but whether the total holds it no count can tell: a total one
    short cancels a missing record, one long an extra one. The verify compares the list
    whole then, and finds either."""
    assert not CATALOG["contacts"].takes("sort_by")
    await sync(pool, sandbox)
    if difference == "missing":
        hidden, gone = moco.data.backdate(1, ["contacts"])["contacts"], []
    else:
        hidden, gone = [], moco.data.delete("contacts", 3)  # as many as the takes create
    created: list[int] = []

    def create(request: RequestRecord) -> None:
        newest = "updated_after" in request.query
        if request.path.endswith(CATALOG["contacts"].path) and newest == (before == "newest"):
            created.extend(moco.data.create("contacts", 1))

    moco.hooks.append(create)
    result = await verify(pool, sandbox, streams=["contacts"])
    moco.hooks.remove(create)
    assert result.ok, result.errors
    (contacts,) = result.streams
    assert len(created) >= 3, contacts  # at every take (the verify took the counts again)
    assert contacts.warning is None, contacts
    assert (contacts.missing, contacts.extra) == (len(hidden), len(gone)), contacts
    assert contacts.repaired == len(hidden) + len(gone), contacts
    live = await live_contents(pool, "contacts")
    assert set(hidden) <= set(live)
    assert not set(gone) & set(live)
    assert not set(created) & set(live)  # the next sync's
    await sync(pool, sandbox)
    await assert_exact(pool, moco)


# --- two verifies at once, and one killed ----------------------------------------------------


async def start_verify(config: Path, env: Env, *extra: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        "verify",
        "moco",
        "--config",
        str(config),
        "--json",
        *extra,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_two_verifies_started_at_once_never_overlap_and_the_end_is_exact(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, cli: Env, tmp_path: Path
) -> None:
    await sync(pool, sandbox)
    hidden, gone = hid_and_deleted(moco)
    # Slow enough (20 requests a second, shared by the key) that each takes seconds.
    config = write_config(tmp_path / "schedules.toml", sandbox.moco_base_url, requests_per_s=20)
    procs = await asyncio.gather(start_verify(config, cli), start_verify(config, cli))
    ends = await asyncio.wait_for(asyncio.gather(*(p.communicate() for p in procs)), 180)
    codes = [p.returncode for p in procs]
    documents = [orjson.loads(out) for out, _ in ends]
    for _, err in ends:
        assert "Traceback" not in err.decode(), err.decode()
    ran = [d for d, c in zip(documents, codes, strict=True) if c == 0]
    refused = [
        (d, err.decode()) for d, c, (_, err) in zip(documents, codes, ends, strict=True) if c != 0
    ]
    assert ran, (codes, ends)  # one at least did the work
    for document, stderr in refused:  # the other found the streams busy, and said so
        assert document["exit_code"] == 1, document
        assert "a sync or verify of moco." in stderr, stderr
        assert len(stderr.splitlines()) == 1, stderr
    runs = await pool.fetch(
        "select id, started_at, finished_at, outcome from syncer.runs where kind = 'verify'"
        " order by started_at"
    )
    assert len(runs) == len(ran)
    assert {r["outcome"] for r in runs} == {"succeeded"}
    for earlier, later in itertools.pairwise(runs):
        assert earlier["finished_at"] <= later["started_at"], runs
    checks = await pool.fetch(
        "select stream, run_id, verified_at from syncer.verifications order by verified_at"
    )
    assert len(checks) == len(CLASSIC_STREAMS) * len(ran)
    stream_runs = await pool.fetch(
        "select s.stream, s.run_id, s.started_at, s.finished_at from syncer.stream_runs s"
        " join syncer.runs r on r.id = s.run_id where r.kind = 'verify'"
    )
    for stream in CLASSIC_STREAMS:
        spans = sorted(
            (r["started_at"], r["finished_at"]) for r in stream_runs if r["stream"] == stream
        )
        for (_, end), (begin, _) in itertools.pairwise(spans):
            assert end <= begin, (stream, spans)
    # The first that ran found everything; a second one after it, nothing.
    assert found_json(ran[0]) == (hidden, gone)
    for later in ran[1:]:
        assert found_json(later) == ({}, {})
    await assert_exact(pool, moco)


async def test_a_verify_killed_mid_run_is_run_again_and_converges(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, cli: Env, tmp_path: Path
) -> None:
    await sync(pool, sandbox)
    hidden, gone = hid_and_deleted(moco)
    config = write_config(tmp_path / "schedules.toml", sandbox.moco_base_url, requests_per_s=10)
    moco.reset_log()
    child = await start_verify(config, cli)
    try:
        async with asyncio.timeout(120):
            # Some streams verified (and repaired), others not yet begun.
            while await pool.fetchval("select count(*) from syncer.verifications") < 2:
                assert child.returncode is None, "the verify ended before it could be killed"
                await asyncio.sleep(0.02)
    finally:
        child.send_signal(signal.SIGKILL)
        await child.communicate()
    assert child.returncode == -signal.SIGKILL
    await wait_for_dead_sessions(pool)
    killed_after = len(moco.requests)
    assert killed_after >= 2
    done = await pool.fetchval("select count(*) from syncer.verifications")
    assert done < len(CLASSIC_STREAMS)
    # The killed verify moved no stream's position: an incremental sync still sees nothing.
    positions = await pool.fetch("select stream, watermark, walk from syncer.streams order by 1")

    result = await verify(pool, sandbox)
    assert result.ok, result.errors
    assert await pool.fetch("select stream, watermark, walk from syncer.streams order by 1") == (
        positions
    )
    await assert_exact(pool, moco)
    outcomes = [
        r["outcome"]
        for r in await pool.fetch(
            "select outcome from syncer.runs where kind = 'verify' order by id"
        )
    ]
    assert outcomes == ["interrupted", "succeeded"]
    # What the killed run verified (and recorded) is no difference to the second; the streams
    # it was in the middle of may have been repaired in part, and the second finds the rest.
    first = {
        r["stream"]: r
        for r in await pool.fetch(
            "select stream, missing, extra, repaired from syncer.verifications v"
            " join syncer.runs r on r.id = v.run_id where r.outcome = 'interrupted'"
        )
    }
    for s in result.streams:
        if s.stream in first:
            earlier = first[s.stream]
            assert earlier["repaired"] == earlier["missing"] + earlier["extra"]
            assert (earlier["missing"], earlier["extra"]) == (
                hidden.get(s.stream, 0),
                gone.get(s.stream, 0),
            ), s.stream
            assert (s.missing, s.extra) == (0, 0), s
        else:
            assert s.missing <= hidden.get(s.stream, 0), s
            assert s.extra <= gone.get(s.stream, 0), s


# --- a source type that cannot count ---------------------------------------------------------


@pytest.fixture
def toy_env(cli: Env) -> Env:
    """The toy plugin enabled (``tests/plugins/toyplug``: a source type with no count)."""
    return {
        **cli,
        "PYTHONPATH": str(PLUGINS),
        "SYNCER_PLUGINS": "toyplug.source",
        "TOY_TOKEN": TOY_TOKEN,
    }


async def test_a_source_type_without_a_count_cannot_be_verified_in_one_line(
    toy_url: str, toy_env: Env, tmp_path: Path
) -> None:
    from tests.integration.test_toy_source import write_config as toy_config

    config = toy_config(tmp_path, toy_url)
    ran = await syncer("verify", "toys", "--config", config, env=toy_env, cwd=tmp_path)
    assert ran.code == 2, ran
    assert "Traceback" not in ran.output
    assert ran.stdout == ""
    (line,) = ran.stderr.splitlines()
    assert line.startswith("error: "), line
    assert "verify: 'toys' is a toy source; Toy API sources cannot be verified" in line, line
    ran = await syncer("verify", "toys", "--json", "--config", config, env=toy_env, cwd=tmp_path)
    assert ran.code == 2, ran
    assert orjson.loads(ran.stdout)["exit_code"] == 2


# --- syncer sandbox --backdate --------------------------------------------------------------


async def read_line(stream: asyncio.StreamReader, starting: str, timeout_s: float = 60) -> str:
    """The first line of ``stream`` that starts with ``starting``."""
    async with asyncio.timeout(timeout_s):
        while line := (await stream.readline()).decode():
            if line.startswith(starting):
                return line.rstrip("\n")
    raise AssertionError(f"no line starting {starting!r}")


async def test_syncer_sandbox_backdates_and_deletes_after_the_first_sync_and_verify_finds_them(
    db_url: str, pool: Any, cli: Env, tmp_path: Path
) -> None:
    port = closed_port()
    sandbox = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        "sandbox",
        "--backdate",
        "6",
        "--delete",
        "2",
        "--port",
        str(port),
        env=cli,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert sandbox.stdout is not None
        assert sandbox.stderr is not None
        base_url = (await read_line(sandbox.stdout, "MOCO ")).split()[-1]
        assert base_url == f"http://127.0.0.1:{port}/moco/api/v1"
        plan = await read_line(sandbox.stderr, "sandbox:")
        assert "6 records appear" in plan, plan
        assert "2 are deleted" in plan, plan
        config = write_config(tmp_path / "schedules.toml", base_url)
        # syncer check's one-record probe is no sync: nothing is made after it.
        checked = await syncer("check", "--config", config, env=cli, cwd=tmp_path)
        assert checked.code == 0, checked
        synced = await syncer("sync", "moco", "--config", config, env=cli, cwd=tmp_path)
        assert synced.code == 0, synced
        made = await read_line(sandbox.stderr, "sandbox: MOCO idle")
        assert "6 records backdated" in made, made
        assert "2 deleted" in made, made
        ran, report = await run_json("verify", "moco", "--config", config, env=cli, cwd=tmp_path)
        assert ran.code == 0, ran
        missing, extra = found_json(report)
        assert sum(missing.values()) == 6, report
        assert extra == {"deals": 1, "offers": 1}, report
        assert sum(s["repaired"] for s in report["streams"]) == 8
        for stream, n in missing.items():  # the ids the sandbox said, each stored now
            ids = made.split(f"{stream} ", 1)[1].split(";")[0].split(")")[0].split(", ")
            assert len(ids) == n, (stream, made)
            stored = await pool.fetchval(
                f"select count(*) from moco.{stream} where id = any($1::bigint[])"
                " and _deleted_at is null",
                [int(i) for i in ids],
            )
            assert stored == n, stream
    finally:
        sandbox.send_signal(signal.SIGTERM)
        await asyncio.wait_for(sandbox.communicate(), 30)


async def test_the_sandbox_backdates_records_when_a_script_asks(
    sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    before = {s: len(moco.data.live(s)) for s in BACKDATED}
    url = f"{sandbox.base_url}/moco/_sandbox/backdate"
    async with aiohttp.ClientSession() as session:
        async with session.post(url, json={"n": 3, "stream": "deals"}) as answer:
            assert answer.status == 200
            made = (await answer.json())["backdated"]
        async with session.post(f"{url}?n=2") as answer:
            assert answer.status == 200
            spread = (await answer.json())["backdated"]
        async with session.post(url, json={"n": 1, "stream": "nope"}) as answer:
            assert answer.status == 422
            assert "stream must be one of" in (await answer.json())["message"]
    assert list(made) == ["deals"]
    assert len(made["deals"]) == 3
    assert spread == {"activities": spread["activities"], "projects": spread["projects"]}
    old = datetime.now(UTC) - timedelta(weeks=6)
    for record in moco.data.live("deals"):
        if record["id"] in made["deals"]:
            assert parse_ts(record["updated_at"]) < old
    assert len(moco.data.live("deals")) == before["deals"] + 3
    assert moco.requests == []  # the control route is not the API


# --- MOCA ------------------------------------------------------------------------------------


async def verify_moca(pool: Any, sandbox: RunningSandbox, **options: Any) -> VerifyResult:
    async with aiohttp.ClientSession() as session:
        return await verify_source(pool, session, moca_source(sandbox), **FAST, **options)


@pytest.mark.parametrize("envelope", [True, False], ids=["with total", "bare array"])
async def test_moca_verify_compares_totals_and_where_they_differ_the_listing(
    pool: Any, moca_sandbox: RunningSandbox, envelope: bool
) -> None:
    moca = moca_sandbox.moca
    moca.settings = replace(moca.settings, envelope=envelope)
    first = await sync_moca(pool, moca_sandbox)
    assert first.ok
    scan = sum(s.http.requests for s in first.streams if s.stream != "analytics")
    data = moca.data
    experiences = {r["experienceId"]: r["campaignId"] for r in data.records("experiences")}
    notifications = {r["notificationId"]: r["campaignId"] for r in data.records("notifications")}
    added = {"beacons": data.create("beacons", 4), "segments": data.create("segments", 2)}
    gone = {"beacons": data.delete("beacons", 3), "campaigns": data.delete("campaigns", 1)}
    # A campaign's experiences and notifications go with it.
    gone["experiences"] = sorted(i for i, c in experiences.items() if c in gone["campaigns"])
    gone["notifications"] = sorted(i for i, c in notifications.items() if c in gone["campaigns"])
    expected = (counts(added), counts(gone))
    before = await pool.fetch("select id, data::text, _deleted_at from moca.beacons order by id")

    moca.reset_log()
    checked = await verify_moca(pool, moca_sandbox, repair=False)
    assert checked.outcome == "failed"  # differences left: a failure to report
    assert found(checked) == expected
    assert sum(s.repaired for s in checked.streams) == 0
    assert (
        await pool.fetch("select id, data::text, _deleted_at from moca.beacons order by id")
        == before
    )

    result = await verify_moca(pool, moca_sandbox)
    assert result.outcome == "succeeded", result.errors
    assert found(result) == expected
    by_stream = {s.stream: s for s in result.streams}
    assert by_stream["analytics"].verdict == "not_verified"
    assert by_stream["analytics"].method == "none"
    assert by_stream["analytics"].http.requests == 0
    for s in result.streams:
        if s.stream == "analytics":
            continue
        assert s.method == "scan", s
        assert s.repaired == s.missing + s.extra, s
        assert s.verdict == ("repaired" if s.missing or s.extra else "verified"), s
        assert s.warning is None, s
    # Every stream's live rows are the source's records (a record changed meanwhile, such as a
    # zone whose beacons changed, is the next sync's); the deleted ones are marked.
    for stream in MOCA_STREAMS:
        assert set(await moca_stored(pool, stream)) == set(moca_served(moca_sandbox, stream))
        marked = await moca_stored(pool, stream, deleted=True)
        assert set(marked) == set(gone.get(stream, ())), stream

    moca.reset_log()
    again = await verify_moca(pool, moca_sandbox)
    assert again.ok
    assert found(again) == ({}, {})
    assert again.http.requests == len(moca.requests)
    one_listing = [
        s for s in again.streams if s.stream in MOCA_STREAMS and not MOCA_STREAMS[s.stream].parent
    ]
    if envelope:  # a total each: one request a list of its own
        assert {s.http.requests for s in one_listing} == {1}, one_listing
    parents = {"apps": len(data.records("apps")), "campaigns": len(data.records("campaigns"))}
    for s in again.streams:  # a list per parent: one request each parent
        spec = MOCA_STREAMS.get(s.stream)
        if spec is not None and spec.parent is not None:
            assert s.http.requests == parents[spec.parent], s
    print(
        f"\nMOCA verify ({'with total' if envelope else 'bare array'}): first "
        f"{result.http.requests} requests, second {again.http.requests}, a full scan {scan}"
    )
    assert (await sync_moca(pool, moca_sandbox)).ok
    await moca_tables_equal_source(pool, moca_sandbox)


async def test_moca_verify_keeps_the_deletion_guard(
    pool: Any, moca_sandbox: RunningSandbox
) -> None:
    assert (await sync_moca(pool, moca_sandbox)).ok
    live = len(moca_sandbox.moca.data.records("beacons"))
    moca_sandbox.moca.data.delete("beacons", int(live * 0.4))
    result = await verify_moca(pool, moca_sandbox, streams=["beacons"])
    (beacons,) = result.streams
    assert beacons.extra == int(live * 0.4)
    assert beacons.repaired == 0
    assert beacons.verdict == "differs"
    assert beacons.warning is not None
    assert "deletion_guard" in beacons.warning
    assert result.outcome == "failed"
    marked = await pool.fetchval("select count(*) from moca.beacons where _deleted_at is not null")
    assert marked == 0
