"""Benchmark 3: pacing, as the rate-limited server sees it, for one process and two replicas.

The MOCO sandbox limits the key to L requests per W seconds (a sliding window, 429 beyond).
syncer is configured with the same limit and has more to read than it can in the time given;
it is stopped (SIGTERM) once the server has seen k whole windows since its first request.
Judged from the server's log of admitted requests (arrival times t):

* **rate achieved** = W / mean(t[i+L] − t[i]): a request can reuse the slot of the one L
  before it only once that one has left the server's window, so a perfect client reuses every
  slot exactly W later (100%); this holds for bursts and for even spacing alike;
* the requests admitted in the k windows, the most in any sliding window of W (at most L),
  and the 429s.

Scenarios, each on a fresh database with the server's window emptied:

* **one process**: ``syncer sync moco`` reading activities and contacts at once;
* **two processes**: ``syncer sync moco --stream activities`` and ``syncer backfill moco
  --stream contacts`` at once, one key, sharing the limit through the ledger
  ``syncer.rate_log`` (two *syncs* of one source cannot run at once against one database:
  the run lock; a backfill runs beside the sync by design);
* **short window**: one process at 20 per 1 s, where the minimum window margin (0.1 s) is 10%.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from benchmarks import common
from benchmarks.sandbox import IndexedMocoSandbox
from syncer.pacing import margin_for
from syncer.sandbox.moco import MocoSandboxSettings, RequestRecord
from syncer.sandbox.moco_data import MocoData
from syncer.sandbox.server import RunningSandbox

TARGET_FRACTION = 0.95
STREAM_OF_PATH = {"/api/v1/activities": "activities", "/api/v1/contacts/people": "contacts"}


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    requests: int  # L
    window_s: float  # W
    windows: int  # k
    processes: tuple[tuple[str, ...], ...]  # each process's syncer arguments


SYNC_BOTH = ("sync", "moco")
SYNC_ONE = ("sync", "moco", "--stream", "activities")
BACKFILL = ("backfill", "moco", "--stream", "contacts", "--since", "2000-01-01", "--window", "90d")
SCENARIOS = (
    Scenario("one", "one process, 200 per 10 s", 200, 10.0, 3, (SYNC_BOTH,)),
    Scenario("two", "two processes (sync + backfill), 200 per 10 s", 200, 10.0, 3,
             (SYNC_ONE, BACKFILL)),
    Scenario("short", "one process, 20 per 1 s", 20, 1.0, 10, (SYNC_BOTH,)),
)  # fmt: skip


@dataclass(frozen=True)
class Outcome:
    fraction: float  # rate achieved over the allowed rate
    admitted: int  # in the k windows
    max_in_window: int
    rate_limited: int
    per_stream: dict[str, int]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=3, help="runs of each scenario")


def config_text(base_url: str, scenario: Scenario) -> str:
    return common.moco_config(
        base_url,
        requests=scenario.requests,
        per_seconds=scenario.window_s,
        streams=("activities", "contacts"),
    )


def max_in_window(times: list[float], window_s: float) -> int:
    """The most entries of ``times`` (ascending) inside any half-open window of ``window_s``."""
    best = start = 0
    for end, at in enumerate(times):
        while times[start] <= at - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def judge(log: list[RequestRecord], scenario: Scenario) -> Outcome:
    answered = [r for r in log if r.status != 0]
    t0 = answered[0].at
    end = t0 + scenario.windows * scenario.window_s
    admitted = [r for r in answered if r.status != 429]
    inside = [r for r in admitted if r.at < end]
    times = [r.at for r in admitted]
    reuse = [
        later - earlier for earlier, later in zip(times, times[scenario.requests :], strict=False)
    ]
    return Outcome(
        fraction=scenario.window_s / (sum(reuse) / len(reuse)),
        admitted=len(inside),
        max_in_window=max_in_window([r.at for r in admitted], scenario.window_s),
        rate_limited=sum(r.status == 429 for r in answered),
        per_stream=dict(Counter(STREAM_OF_PATH.get(r.path, r.path) for r in inside)),
    )


async def run_scenario(
    admin: str, running: RunningSandbox, sandbox: IndexedMocoSandbox, folder: Path, s: Scenario
) -> Outcome:
    sandbox.settings = dataclasses.replace(
        sandbox.settings, rate_limit_requests=s.requests, rate_limit_window_s=s.window_s
    )
    sandbox.reset_rate_limit()
    url = await common.fresh_database(admin, f"pacing_{s.key}")
    config = common.write_config(folder, config_text(running.moco_base_url, s))
    first = len(sandbox.requests)
    children = [
        common.start_child(
            [str(common.BIN / "syncer"), *arguments], env=common.syncer_env(config, url), cwd=folder
        )
        for arguments in s.processes
    ]
    try:
        if not await common.poll_until(lambda: len(sandbox.requests) > first, 60):
            for child in children:
                child.stop()
            output = [await child.wait(60) for child in children]
            raise RuntimeError(
                "syncer made no request within 60 s:\n"
                + "\n".join(f"{c.stdout}\n{c.stderr}" for c in output)
            )
        t0 = sandbox.requests[first].at
        await asyncio.sleep(max(0.0, t0 + s.windows * s.window_s + 0.3 - time.monotonic()))
    finally:
        for child in children:
            child.stop()
        for child in children:
            await child.wait(120)
    await common.drop_database(admin, url)
    return judge(sandbox.requests[first:], s)


async def main(args: argparse.Namespace) -> None:
    data = MocoData(seed=1, counts={"activities": 100_000, "contacts": 50_000})
    sandbox = IndexedMocoSandbox(data, settings=MocoSandboxSettings())
    sandbox.warm("activities", "contacts")
    outcomes: dict[str, list[Outcome]] = {s.key: [] for s in SCENARIOS}
    with common.postgres() as admin, tempfile.TemporaryDirectory() as tmp:
        async with common.sandbox_in_thread(moco=sandbox) as running:
            for number in range(args.rounds):
                for s in SCENARIOS:
                    folder = Path(tmp) / f"{s.key}-{number}"
                    folder.mkdir()
                    outcome = await run_scenario(admin, running, sandbox, folder, s)
                    outcomes[s.key].append(outcome)
                    print(
                        f"  round {number + 1} {s.label}: rate {outcome.fraction:.1%} of allowed, "
                        f"{outcome.admitted} admitted in {s.windows} windows, max "
                        f"{outcome.max_in_window} in a window, {outcome.rate_limited} × 429, "
                        f"{outcome.per_stream}",
                        flush=True,
                    )
        version = await common.server_version(admin)

    rows = []
    for s in SCENARIOS:
        got = outcomes[s.key]
        fraction = common.median([o.fraction for o in got])
        margin = margin_for(s.window_s)
        ideal = s.window_s / (s.window_s + margin)
        split = ", ".join(
            f"{stream} {common.median([o.per_stream.get(stream, 0) for o in got]):.0f}"
            for stream in ("activities", "contacts")
        )
        rows.append(
            [
                s.label,
                f"{s.requests / s.window_s:g}/s for {s.windows} × {s.window_s:g} s",
                f"{fraction:.1%}",
                common.spread([float(o.admitted) for o in got]),
                f"{ideal:.1%}",
                f"{max(o.max_in_window for o in got)} (limit {s.requests})",
                str(sum(o.rate_limited for o in got)),
                split,
                common.verdict(
                    fraction >= TARGET_FRACTION and not any(o.rate_limited for o in got)
                ),
            ]
        )
    body = "\n\n".join(
        [
            common.provenance(version),
            f"Median (min–max) of {args.rounds} runs per scenario. *Rate achieved* is W over "
            "the mean time between a request and the one L after it, at the server (100% = "
            "every slot reused the moment it left the window); *admitted* counts the requests "
            "the server accepted in the k whole windows after syncer's first; *ceiling* is "
            "what syncer's window margin leaves (each window counted 1% longer, at least "
            "0.1 s, against clock skew), before the time a request spends in flight, which "
            "holds its slot too. *Split* is per stream (two processes: sync, backfill).",
            common.markdown_table(
                [
                    "scenario",
                    "limit",
                    "rate achieved",
                    "admitted in k windows",
                    "ceiling",
                    "most in any window",
                    "429s (all runs)",
                    "split (median)",
                    "target ≥ 95%, no 429",
                ],
                rows,
            ),
        ]
    )
    common.report("pacing", "Pacing", body, version)
