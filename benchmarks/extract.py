"""Benchmark 1: extraction throughput, syncer against dlt, into the same PostgreSQL.

The MOCO sandbox (rate limit off) serves N activities. Each round runs, on fresh databases of
one server, ``syncer sync moco --stream activities`` and the dlt pipeline of
``benchmarks/dlt_moco.py`` (dlt's ``rest_api`` source, merge on ``id``, incremental on
``updated_at``) twice, with dlt's default loader file format for postgres (``insert_values``)
and with ``csv`` (COPY), in rotating order, and checks that each stored all N rows. Rates are
rows stored per second of the whole command (process start, migrations and all); the ratio
is taken per round against the faster dlt, all tools measured back to back.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from benchmarks import common
from benchmarks.sandbox import IndexedMocoSandbox, check_equivalence
from syncer.sandbox.moco import MocoSandboxSettings
from syncer.sandbox.moco_data import MocoData

TARGET_RATIO = 3.0
UNLIMITED = MocoSandboxSettings(rate_limit_requests=10**9, rate_limit_window_s=1.0)
TOOLS = {
    "syncer": "syncer",
    "dlt-insert": "dlt rest_api, insert_values (default)",
    "dlt-csv": "dlt rest_api, csv (COPY)",
}


@dataclass(frozen=True)
class Run:
    child: common.Child
    requests: int
    steps: dict[str, float]  # dlt's extract/normalize/load seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--records", type=int, default=100_000, help="activities served")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each tool")


async def run_tool(tool: str, admin: str, base_url: str, folder: Path) -> tuple[common.Child, int]:
    """One run of ``tool`` on a fresh database: the child and the rows it stored."""
    url = await common.fresh_database(admin, f"extract_{tool.replace('-', '_')}")
    if tool == "syncer":
        config = common.write_config(
            folder,
            common.moco_config(base_url, requests=1_000_000, per_seconds=1, streams=["activities"]),
        )
        child = await common.syncer(config, url, "sync", "moco")
        table = "moco.activities"
    else:
        file_format = tool.removeprefix("dlt-").replace("insert", "insert_values")
        argv = [str(common.BIN / "python"), "-m", "benchmarks.dlt_moco", base_url, url,
                "moco_dlt", str(folder / "dlt"), file_format]  # fmt: skip
        child = await common.run_child(argv, env={"MOCO_API_KEY": common.MOCO_KEY})
        table = "moco_dlt.activities"
    child.check()
    conn = await asyncpg.connect(url)
    try:
        rows = await conn.fetchval(f"select count(*) from {table}")
    finally:
        await conn.close()
    await common.drop_database(admin, url)
    return child, rows


async def main(args: argparse.Namespace) -> None:
    check_equivalence()
    n = args.records
    runs: dict[str, list[Run]] = {tool: [] for tool in TOOLS}
    ratios: list[float] = []
    with common.postgres() as admin, tempfile.TemporaryDirectory() as tmp:
        print(f"generating {n:,} activities …", flush=True)
        sandbox = IndexedMocoSandbox(MocoData(seed=1, counts={"activities": n}), settings=UNLIMITED)
        sandbox.warm("activities")
        async with common.sandbox_in_thread(moco=sandbox) as running:
            for number in range(args.rounds):
                order = list(TOOLS)[number % 3 :] + list(TOOLS)[: number % 3]
                rates: dict[str, float] = {}
                for tool in order:
                    folder = Path(tmp) / f"{tool}-{number}"
                    folder.mkdir()
                    before = len(sandbox.requests)
                    child, rows = await run_tool(tool, admin, running.moco_base_url, folder)
                    requests = len(sandbox.requests) - before
                    if rows != n:
                        raise RuntimeError(f"{tool} stored {rows:,} rows, not {n:,}")
                    steps = (
                        {}
                        if tool == "syncer"
                        else json.loads(child.stdout.splitlines()[-1])["steps"]
                    )
                    runs[tool].append(Run(child, requests, steps))
                    rates[tool] = rows / child.wall_s
                    print(
                        f"  round {number + 1} {tool}: {rows:,} rows in {child.wall_s:.1f}s "
                        f"= {rates[tool]:,.0f} rows/s, {requests} requests",
                        flush=True,
                    )
                ratios.append(rates["syncer"] / max(rates["dlt-insert"], rates["dlt-csv"]))
        version = await common.server_version(admin)

    table_rows = []
    for tool, label in TOOLS.items():
        got = runs[tool]
        walls = [r.child.wall_s for r in got]
        steps = ", ".join(
            f"{step} {common.median([r.steps.get(step, 0.0) for r in got]):.1f}"
            for step in ("extract", "normalize", "load")
            if tool != "syncer"
        )
        table_rows.append(
            [
                label,
                common.spread(walls, 1),
                common.spread([n / w for w in walls]),
                common.spread([r.child.cpu_s for r in got], 1),
                common.spread([r.child.max_rss_mb for r in got]),
                f"{common.median([float(r.requests) for r in got]):,.0f}",
                steps,
            ]
        )
    ratio = common.median(ratios)
    body = "\n\n".join(
        [
            common.provenance(version, {"dlt": common.package_version("dlt")}),
            f"Median (min–max) of {args.rounds} rounds; {n:,} activities; each round runs "
            "the three back to back on fresh databases of the same server. *rows/s* is per "
            "second of the whole command; dlt's steps are from its trace (seconds).",
            common.markdown_table(
                ["tool", "wall s", "rows/s", "CPU s", "peak RSS MB", "requests", "dlt steps s"],
                table_rows,
            ),
            f"**syncer / the faster dlt: {ratio:.2f}×** (median of the per-round ratios "
            f"{', '.join(f'{r:.2f}' for r in ratios)}); target ≥ {TARGET_RATIO:.0f}×: "
            f"{common.verdict(ratio >= TARGET_RATIO)}.",
        ]
    )
    common.report("extract", "Extraction throughput: syncer vs dlt", body, version)
