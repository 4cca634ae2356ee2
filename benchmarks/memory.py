"""Benchmark 5: peak memory of a sync and of a load, at two sizes, to see whether it grows.

Peak RSS is the kernel's ``ru_maxrss`` of the syncer process alone (started from the small
``benchmarks.measure`` launcher, so the benchmark's own memory, which holds the sandbox's
records, is not inherited into the figure). One run per size: peak RSS of the same work
varies by a megabyte or two, and the large runs are long.

* sync: ``syncer sync moco --stream activities`` of N activities (rate limit off);
* load: ``syncer load moengage`` of N events (of N/10 customers, plus those users), limits
  high enough never to wait.

At a million records each, both do not fit the five minutes a benchmark may take on a
two-core machine, so ``benchmarks/run memory-sync`` and ``memory-load`` measure one each
(``memory`` runs both).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import asyncpg

from benchmarks import common
from benchmarks.extract import UNLIMITED
from benchmarks.moengage import Part, config_text, load_env, sandbox_for, warehouse
from benchmarks.sandbox import IndexedMocoSandbox
from syncer.sandbox.moco_data import MocoData

TARGET_MB = 250


def _sizes(text: str) -> list[int]:
    return [int(part.replace("_", "")) for part in text.split(",") if part.strip()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--only", choices=["sync", "load"], default=None, help="measure only syncs or loads"
    )
    parser.add_argument(
        "--sync-sizes",
        type=_sizes,
        default=[250_000, 1_000_000],
        help="activities, e.g. 250000,1000000",
    )
    parser.add_argument(
        "--load-sizes",
        type=_sizes,
        default=[250_000, 1_000_000],
        help="events, e.g. 250000,1000000",
    )


async def sync_peak(admin: str, folder: Path, n: int) -> tuple[common.Child, float]:
    """A sync of ``n`` activities: the child and the seconds it took to generate them."""
    started = time.monotonic()
    sandbox = IndexedMocoSandbox(MocoData(seed=1, counts={"activities": n}), settings=UNLIMITED)
    sandbox.warm("activities")
    generated = time.monotonic() - started
    url = await common.fresh_database(admin, "memory_sync")
    async with common.sandbox_in_thread(moco=sandbox) as running:
        config = common.write_config(
            folder,
            common.moco_config(
                running.moco_base_url, requests=1_000_000, per_seconds=1, streams=["activities"]
            ),
        )
        child = (await common.syncer(config, url, "sync", "moco")).check()
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetchval("select count(*) from moco.activities")
    finally:
        await conn.close()
    await common.drop_database(admin, url)
    if stored != n:
        raise RuntimeError(f"the sync stored {stored:,} activities, not {n:,}")
    return child, generated


async def load_peak(admin: str, folder: Path, n: int) -> common.Child:
    part = Part(max(1, n // 10), n, 10**7, 10**8, 60.0)
    sandbox = sandbox_for(part)
    url = await warehouse(admin, part)
    async with common.sandbox_in_thread(moengage=sandbox) as running:
        config = common.write_config(folder, config_text(running.moengage_base_url, part))
        argv = [str(common.BIN / "syncer"), "load", "moengage"]
        child = (await common.run_child(argv, env=load_env(config, url), cwd=folder)).check()
    await common.drop_database(admin, url)
    if len(sandbox.events) != n:
        raise RuntimeError(f"MoEngage got {len(sandbox.events)} events, not {n}")
    return child


async def main(args: argparse.Namespace) -> None:
    kinds = {"sync": args.sync_sizes, "load": args.load_sizes}
    if args.only:
        kinds = {args.only: kinds[args.only]}
    rows: dict[str, list[list[str]]] = {kind: [] for kind in kinds}
    peaks: dict[str, list[tuple[int, float]]] = {kind: [] for kind in kinds}
    with common.postgres() as admin, tempfile.TemporaryDirectory() as tmp:
        for kind, sizes in kinds.items():
            for n in sizes:
                folder = Path(tmp) / f"{kind}-{n}"
                folder.mkdir()
                if kind == "sync":
                    child, generated = await sync_peak(admin, folder, n)
                    extra = f" (+{generated:.0f} s generating the sandbox's records)"
                else:
                    child, extra = await load_peak(admin, folder, n), ""
                peaks[kind].append((n, child.max_rss_mb))
                rows[kind].append([f"{n:,}", f"{child.max_rss_mb:.0f}", f"{child.wall_s:.0f}",
                                   f"{child.cpu_s:.0f}", f"{n / child.wall_s:,.0f}"])  # fmt: skip
                print(f"  {kind} {n:,}: peak {child.max_rss_mb:.0f} MB, {child.wall_s:.0f} s"
                      f"{extra}", flush=True)  # fmt: skip
        version = await common.server_version(admin)

    for kind, points in peaks.items():
        what = "activities synced" if kind == "sync" else "events loaded"
        (small_n, small), (large_n, large) = points[0], points[-1]
        growth = (large - small) / small if small else 0.0
        per_million = (large - small) / max(1, large_n - small_n) * 1_000_000
        peak = max(mb for _, mb in points)
        ok = peak < TARGET_MB and growth < 0.10
        body = "\n\n".join(
            [
                common.provenance(version),
                f"`syncer {kind}`, one run per size (peak RSS of the same work varies by a "
                "megabyte or two); peak RSS of the syncer process alone; rate limits off.",
                common.markdown_table(
                    [what, "peak RSS MB", "wall s", "CPU s", "records/s"], rows[kind]
                ),
                f"Peak {peak:.0f} MB; from {small_n:,} to {large_n:,} records the peak changes "
                f"by {growth:+.0%} ({per_million:+.1f} MB per million records); target < "
                f"{TARGET_MB} MB and flat: {common.verdict(ok)}.",
            ]
        )
        common.report(f"memory-{kind}", f"Memory: {kind}", body, version)
