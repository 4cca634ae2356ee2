"""Benchmark 2: the load-path ceiling, and what stands between it and a whole sync.

The same N activity records (as syncer stores them: ``split_records`` of what the sandbox
serves) are written, per round and on fresh databases of one server:

1. with one asyncpg ``copy_records_to_table`` into a bare table (no key, no index): the ceiling;
2. with one COPY per 100-record page, each page its own transaction;
3. through syncer's upsert path, ``pages.commit_page`` per 100-record page (COPY into the
   stage, ``INSERT … ON CONFLICT``, the stream's position and counters, one transaction);
   and (3b, a what-if) with ten pages' rows per transaction;
4. by ``syncer sync moco`` end to end against the sandbox (rate limit off);
5. the same with ``synchronous_commit = off`` on the database (a what-if: commits stop waiting
   for the WAL flush);
6. the same command with the in-process limiter (a what-if: no rate ledger; see
   ``benchmarks/library_sync.py``).

Then one run with timers around each step of a page (``benchmarks.breakdown``) and one under
py-spy (CPU samples) show where the time of a page goes.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg

from benchmarks import common, profiles
from benchmarks.extract import UNLIMITED
from benchmarks.sandbox import IndexedMocoSandbox, check_equivalence
from syncer.extract.records import Row, split_records
from syncer.extract.walk import Walk
from syncer.sandbox.moco_data import MocoData
from syncer.sources.moco.catalog import CATALOG
from syncer.store import database, pages, runs

TARGET_FRACTION = 0.40
PAGE = 100
SPEC = CATALOG["activities"]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=100_000, help="activities")
    parser.add_argument("--rounds", type=int, default=3, help="measurements of each path")


async def copy_all(url: str, records: list[tuple[Any, ...]]) -> float:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "create table bench_bare (id bigint, updated_at timestamptz, data jsonb)"
        )
        started = time.perf_counter()
        async with conn.transaction():
            await conn.copy_records_to_table(
                "bench_bare", records=records, columns=["id", "updated_at", "data"]
            )
        return time.perf_counter() - started
    finally:
        await conn.close()


async def copy_pages(url: str, records: list[tuple[Any, ...]]) -> float:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "create table bench_bare (id bigint, updated_at timestamptz, data jsonb)"
        )
        started = time.perf_counter()
        for start in range(0, len(records), PAGE):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "bench_bare",
                    records=records[start : start + PAGE],
                    columns=["id", "updated_at", "data"],
                )
        return time.perf_counter() - started
    finally:
        await conn.close()


async def syncer_pages(url: str, rows: list[Row], page_size: int = PAGE) -> float:
    """``pages.commit_page`` per page, as the pipeline calls it (a pooled connection each);
    with ``page_size`` above 100, several API pages' rows go into one transaction."""
    async with database.open_pool(url, max_size=3) as pool:
        async with pool.acquire() as conn:
            run_id = await runs.start_run(conn, kind="sync", source="moco", command="bench")
            await runs.start_stream_run(conn, run_id, SPEC.name, None)
        started = time.perf_counter()
        for number, start in enumerate(range(0, len(rows), page_size), 1):
            page = rows[start : start + page_size]
            walk = Walk(
                lower_bound=page[0].updated_at, pages=number, max_stored=page[-1].updated_at
            )
            async with pool.acquire() as conn:
                await pages.commit_page(
                    conn,
                    pages.PageCommit(
                        schema="moco", table=SPEC.name, volatile=SPEC.volatile, source="moco",
                        stream=SPEC.name, run_id=run_id, rows=page, rejected=[], requests=1,
                        walk=walk.to_json(), watermark=None,
                    ),
                )  # fmt: skip
        return time.perf_counter() - started


async def end_to_end(
    admin: str, base_url: str, folder: Path, *, how: str, profile: Path | None = None
) -> tuple[common.Child, float]:
    """One sync of the activities on a fresh database: the child and the seconds of its
    stream (the sync itself, without process start and migrations)."""
    url = await common.fresh_database(admin, "ceiling")
    if how == "async-commit":
        conn = await asyncpg.connect(admin)
        try:
            name = common.database_name(url)
            await conn.execute(f'alter database "{name}" set synchronous_commit = off')
        finally:
            await conn.close()
    config = common.write_config(
        folder,
        common.moco_config(base_url, requests=1_000_000, per_seconds=1, streams=["activities"]),
    )
    env = common.syncer_env(config, url)
    python = str(common.BIN / "python")
    if how == "library":
        argv = [python, "-m", "benchmarks.library_sync", "moco"]
    elif how == "breakdown":
        assert profile is not None
        argv = [python, "-m", "benchmarks.breakdown", str(profile), "sync", "moco"]
    elif how == "py-spy":
        assert profile is not None
        argv = [*common.py_spy(profile), str(common.BIN / "syncer"), "sync", "moco"]
    else:
        argv = [str(common.BIN / "syncer"), "sync", "moco"]
    child = (await common.run_child(argv, env=env, cwd=folder)).check()
    conn = await asyncpg.connect(url)
    try:
        stream_s = await conn.fetchval(
            "select extract(epoch from finished_at - started_at)::float8 from syncer.stream_runs"
        )
    finally:
        await conn.close()
    await common.drop_database(admin, url)
    return child, stream_s


async def main(args: argparse.Namespace) -> None:
    check_equivalence()
    n = args.records
    data = MocoData(seed=1, counts={"activities": n})
    rows, rejected = split_records(data.records("activities"), SPEC)
    if rejected or len(rows) != n:
        raise RuntimeError(f"the sandbox served {len(rejected)} records syncer cannot store")
    records = [(r.id, r.updated_at, r.data) for r in rows]
    mean_bytes = sum(len(r.data.encode()) for r in rows) / n
    sandbox = IndexedMocoSandbox(data, settings=UNLIMITED)
    sandbox.warm("activities")
    paths = {
        "copy": "1. COPY, all rows in one transaction, bare table (the ceiling)",
        "copy-pages": "2. COPY per 100-row page, one transaction each, bare table",
        "commit-page": "3. syncer's upsert path: `pages.commit_page` per 100-row page",
        "commit-10-pages": "3b. what-if: 3 with 10 pages (1,000 rows) per transaction",
        "sync": "4. `syncer sync moco` end to end (sandbox, rate limit off)",
        "async-commit": "5. what-if: 4 with `synchronous_commit = off` on the database",
        "library": "6. what-if: 4 with the in-process limiter instead of the rate ledger",
    }
    seconds: dict[str, list[float]] = {key: [] for key in paths}
    stream_seconds: dict[str, list[float]] = {
        key: [] for key in ("sync", "async-commit", "library")
    }
    with common.postgres() as admin, tempfile.TemporaryDirectory() as tmp:
        async with common.sandbox_in_thread(moco=sandbox) as running:
            for number in range(args.rounds):
                for key in ("copy", "copy-pages", "commit-page", "commit-10-pages"):
                    url = await common.fresh_database(admin, "ceiling")
                    if key == "copy":
                        seconds[key].append(await copy_all(url, records))
                    elif key == "copy-pages":
                        seconds[key].append(await copy_pages(url, records))
                    else:
                        size = PAGE if key == "commit-page" else 10 * PAGE
                        seconds[key].append(await syncer_pages(url, rows, size))
                    await common.drop_database(admin, url)
                for key in ("sync", "async-commit", "library"):
                    folder = Path(tmp) / f"{key}-{number}"
                    folder.mkdir()
                    child, stream_s = await end_to_end(
                        admin, running.moco_base_url, folder, how=key
                    )
                    seconds[key].append(child.wall_s)
                    stream_seconds[key].append(stream_s)
                print(
                    f"  round {number + 1}: "
                    + ", ".join(f"{key} {n / s[-1]:,.0f} rows/s" for key, s in seconds.items()),
                    flush=True,
                )
            breakdown_path = Path(tmp) / "breakdown.json"
            folder = Path(tmp) / "breakdown"
            folder.mkdir()
            await end_to_end(
                admin, running.moco_base_url, folder, how="breakdown", profile=breakdown_path
            )
            spy_path = Path(tmp) / "py-spy.txt"
            folder = Path(tmp) / "py-spy"
            folder.mkdir()
            spy_child, _ = await end_to_end(
                admin, running.moco_base_url, folder, how="py-spy", profile=spy_path
            )
            cpu, samples = profiles.cpu_table(spy_path)
            steps = profiles.step_table(breakdown_path)
        version = await common.server_version(admin)

    ceiling = n / common.median(seconds["copy"])
    table_rows = []
    for key, label in paths.items():
        rates = [n / s for s in seconds[key]]
        sync_rates = [n / s for s in stream_seconds.get(key, [])]
        table_rows.append(
            [
                label,
                common.spread(seconds[key], 2),
                common.spread(rates),
                common.spread(sync_rates) if sync_rates else "",
                f"{common.median(rates) / ceiling:.0%}",
            ]
        )
    fraction = n / common.median(seconds["sync"]) / ceiling
    body = "\n\n".join(
        [
            common.provenance(version),
            f"Median (min–max) of {args.rounds} rounds; {n:,} activities, {mean_bytes:,.0f} "
            "bytes of JSON each on average; every path writes into a fresh database of the same "
            "server. Rates are rows per second of the whole path (for a sync: the whole command, "
            "process start and migrations included); *sync phase* is the stream's own time "
            "from `syncer.stream_runs`.",
            common.markdown_table(
                ["path", "seconds", "rows/s", "rows/s, sync phase", "of the ceiling"], table_rows
            ),
            f"**syncer end to end: {fraction:.0%} of the COPY ceiling**; target ≥ "
            f"{TARGET_FRACTION:.0%}: {common.verdict(fraction >= TARGET_FRACTION)}.",
            "Where the wall time of a page goes (one run of path 4 with timers around each step, "
            "`benchmarks/breakdown.py`; steps overlap, since the next page is fetched while "
            "the current one commits):",
            steps,
            f"Where the CPU of the syncer process goes (one run of path 4 under py-spy, "
            f"{samples:,} samples at 250 Hz, {spy_child.cpu_s:.1f} CPU s in "
            f"{spy_child.wall_s:.1f} s wall; by the innermost syncer function on the stack):",
            cpu,
        ]
    )
    common.report("ceiling", "Load-path ceiling", body, version)
