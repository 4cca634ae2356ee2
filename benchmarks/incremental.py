"""Benchmark 6: what an incremental run costs against a full one.

Per round, on a fresh database and freshly generated data (N activities, rate limit off):
a full sync; a sync with nothing changed; a sync after 1% of the activities changed at the
source; and one more with nothing changed, right after it (the changes of the last five
minutes are still inside the overlap behind the watermark, so they are read once more). Each
is ``syncer sync moco --stream activities``; requests and records come from
``syncer.stream_runs``, seconds are the whole command's and the stream's own.

The changes are spread evenly over the 15 minutes before the run, as edits between two runs
of a 15-minute schedule would be (the sandbox stamps every record of one ``update`` call with
the same instant, and a thousand records in one second would be a bulk edit, a different case).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from benchmarks import common
from benchmarks.extract import UNLIMITED
from benchmarks.sandbox import IndexedMocoSandbox
from syncer.sandbox.moco_data import MocoData

RUNS = {
    "full": "full (first) run",
    "none": "no change",
    "one-percent": "after 1% of the records changed",
    "none-after": "no change, right after the 1% run",
}


@dataclass(frozen=True)
class Measured:
    wall_s: float
    stream_s: float
    requests: int
    records: int
    upserted: int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=100_000, help="activities")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the four runs")


async def one_sync(config: Path, url: str) -> Measured:
    child = (await common.syncer(config, url, "sync", "moco")).check()
    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "select extract(epoch from s.finished_at - s.started_at)::float8 as seconds,"
            " s.requests, s.records, s.upserted from syncer.stream_runs s"
            " where s.run_id = (select max(id) from syncer.runs)"
        )
    finally:
        await conn.close()
    return Measured(child.wall_s, row["seconds"], row["requests"], row["records"], row["upserted"])


SPREAD_S = 900.0


class Clock:
    """The sandbox's clock: the real time, unless set to a moment."""

    def __init__(self) -> None:
        self.at: float | None = None

    def __call__(self) -> float:
        return time.time() if self.at is None else self.at


def change_spread(sandbox: IndexedMocoSandbox, clock: Clock, n: int) -> None:
    """Change ``n`` activities one at a time, stamped evenly over the last SPREAD_S seconds."""
    start = time.time() - SPREAD_S
    try:
        for i in range(n):
            clock.at = start + SPREAD_S * (i + 1) / (n + 1)
            sandbox.update("activities", 1)
    finally:
        clock.at = None


async def main(args: argparse.Namespace) -> None:
    n = args.records
    changed = max(1, n // 100)
    measured: dict[str, list[Measured]] = {key: [] for key in RUNS}
    with common.postgres() as admin, tempfile.TemporaryDirectory() as tmp:
        for number in range(args.rounds):
            clock = Clock()
            data = MocoData(seed=1, counts={"activities": n}, now=clock)
            sandbox = IndexedMocoSandbox(data, settings=UNLIMITED)
            sandbox.warm("activities")
            url = await common.fresh_database(admin, "incremental")
            folder = Path(tmp) / f"round-{number}"
            folder.mkdir()
            async with common.sandbox_in_thread(moco=sandbox) as running:
                config = common.write_config(
                    folder,
                    common.moco_config(
                        running.moco_base_url,
                        requests=1_000_000,
                        per_seconds=1,
                        streams=["activities"],
                    ),
                )
                for key in RUNS:
                    if key == "one-percent":
                        change_spread(sandbox, clock, changed)
                        sandbox.warm("activities")
                    measured[key].append(await one_sync(config, url))
            await common.drop_database(admin, url)
            print(
                f"  round {number + 1}: "
                + ", ".join(
                    f"{key} {m[-1].requests} requests {m[-1].wall_s:.1f}s"
                    for key, m in measured.items()
                ),
                flush=True,
            )
        version = await common.server_version(admin)

    full = measured["full"]
    full_requests = common.median([float(m.requests) for m in full])
    full_wall = common.median([m.wall_s for m in full])
    full_stream = common.median([m.stream_s for m in full])
    rows = []
    for key, label in RUNS.items():
        got = measured[key]
        requests = common.median([float(m.requests) for m in got])
        wall = common.median([m.wall_s for m in got])
        stream = common.median([m.stream_s for m in got])
        rows.append(
            [
                label,
                f"{requests:,.0f}",
                f"{common.median([float(m.records) for m in got]):,.0f}",
                f"{common.median([float(m.upserted) for m in got]):,.0f}",
                common.spread([m.wall_s for m in got], 2),
                common.spread([m.stream_s for m in got], 3),
                f"{requests / full_requests:.2%}",
                f"{wall / full_wall:.1%}",
                f"{stream / full_stream:.2%}",
            ]
        )
    body = "\n\n".join(
        [
            common.provenance(version),
            f"Median (min–max) of {args.rounds} rounds; {n:,} activities, {changed:,} of them "
            "changed for the third run. *Command s* is the whole `syncer sync` (process start, "
            "migration check, run lock, bookkeeping); *stream s* is the stream's own time in "
            "`syncer.stream_runs`.",
            common.markdown_table(
                [
                    "run",
                    "requests",
                    "records read",
                    "rows changed",
                    "command s",
                    "stream s",
                    "requests vs full",
                    "command s vs full",
                    "stream s vs full",
                ],
                rows,
            ),
        ]
    )
    common.report("incremental", "Incremental cost", body, version)
