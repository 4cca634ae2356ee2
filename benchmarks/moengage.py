"""Benchmark 4: MoEngage loads: how full the bodies are, how much of each rate window is used,
and the CPU a load costs per 100,000 events.

The warehouse gets generated customers and business events (``bench.customers``,
``bench.events``: ten events per customer on average, a handful of attributes each, as the
default models produce) and the users and events models select from them. Two parts, each on
fresh databases with a fresh MoEngage sandbox:

* **packing and CPU**: limits far above what the load needs (nothing waits for the rate
  limit): ``syncer load moengage`` sends everything; the bodies' sizes against
  ``max_request_bytes`` come from ``syncer.load_batches``, the process's CPU seconds from
  the kernel. A second load, with nothing left to send, measures the fixed cost (start,
  migrations, model checks), which the *net* figure leaves out.
* **window use**: MoEngage's default amounts (1,000 users and 10,000 events per window), but
  a 10 s window instead of 60 s so that three windows take 30 s; the load has more to send
  than three windows allow and is stopped after them. From the sandbox's log: users and events
  admitted per whole window (aligned to the first request) as a fraction of the limits, the
  most in any sliding window, and the 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from benchmarks import common, profiles
from syncer.sandbox.moengage import MoengageSandbox, MoengageSandboxSettings, RequestRecord

TARGET_FILL = 0.95
MAX_REQUEST_BYTES = 100_000
WORKSPACE = "SANDBOXWORKSPACE1"
KEY = "sandbox-moengage-key"

USERS_SQL = "select customer_id, attributes from bench.customers"
EVENTS_SQL = "select event_key, customer_id, action, occurred_at, attributes from bench.events"

GENERATE = """
create schema bench;
create table bench.customers as
select 'moco-contact-' || (310000000 + i) as customer_id,
       jsonb_build_object(
           'first_name', (array['Jürgen','Käthe','Zoë','Ömer','Lena','Björn'])[1 + i % 6],
           'last_name', (array['Müller','Weiß','Groß','Schäfer','Krüger'])[1 + i % 5],
           'email', 'kunde' || i || '@bäckerei-beispiel.de',
           'company', 'Bäckerei Nummer ' || (i % 997),
           'tags', jsonb_build_array('Key Account', 'Süd'),
           'moco_contact_id', 310000000 + i,
           'moco_created_at', '2024-05-06T07:08:09Z'
       ) as attributes
from generate_series(1, $1::int) as i;
create table bench.events as
select 'moco-invoice-paid-' || (4294000000 + i) as event_key,
       'moco-contact-' || (310000000 + 1 + (i::bigint * 7919) % $1::int) as customer_id,
       (array['Invoice Paid','Offer Accepted','Deal Won','Project Created'])[1 + i % 4] as action,
       now() - make_interval(secs => i) as occurred_at,
       jsonb_build_object(
           'invoice_id', 4294000000 + i, 'identifier', 'R' || (200000 + i),
           'title', 'Rechnung Website-Relaunch Phase ' || (i % 9),
           'gross_total', round((i % 100000) * 1.19, 2), 'currency', 'EUR',
           'project_id', 944000000 + i % 5000
       ) as attributes
from generate_series(1, $2::int) as i;
"""


@dataclass(frozen=True)
class Part:
    users: int  # customers in the warehouse
    events: int
    limit_users: int
    limit_events: int
    window_s: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--events", type=int, default=100_000, help="events for packing/CPU")
    parser.add_argument("--rounds", type=int, default=3, help="runs of each part")


def config_text(base_url: str, part: Part) -> str:
    return (
        "[destinations.moengage]\n"
        'type = "moengage"\n'
        f'base_url = "{base_url}"\n'
        'workspace_id_env = "MOENGAGE_WORKSPACE_ID"\n'
        'api_key_env = "MOENGAGE_API_KEY"\n'
        f"max_request_bytes = {MAX_REQUEST_BYTES}\n"
        f"rate_limit = {{ users = {part.limit_users}, events = {part.limit_events}, "
        f"per_seconds = {part.window_s} }}\n"
        f'[destinations.moengage.users]\nsql = "{USERS_SQL}"\n'
        f'[destinations.moengage.events]\nsql = "{EVENTS_SQL}"\n'
    )


def sandbox_for(part: Part) -> MoengageSandbox:
    return MoengageSandbox(
        MoengageSandboxSettings(
            users_per_window=part.limit_users,
            events_per_window=part.limit_events,
            window_s=part.window_s,
        )
    )


async def warehouse(admin: str, part: Part) -> str:
    url = await common.fresh_database(admin, "moengage")
    conn = await asyncpg.connect(url)
    try:
        for statement in filter(str.strip, GENERATE.split(";")):
            if "$2" in statement:
                await conn.execute(statement, part.users, part.events)
            elif "$1" in statement:
                await conn.execute(statement, part.users)
            else:
                await conn.execute(statement)
    finally:
        await conn.close()
    return url


def load_env(config: Path, url: str) -> dict[str, str]:
    return {
        **common.syncer_env(config, url),
        "MOENGAGE_WORKSPACE_ID": WORKSPACE,
        "MOENGAGE_API_KEY": KEY,
    }


@dataclass(frozen=True)
class Packed:
    child: common.Child
    idle: common.Child  # the same command with nothing left to send
    sizes: list[int]
    events: int
    users: int


async def packing_run(admin: str, folder: Path, part: Part, profile: Path | None = None) -> Packed:
    """One load of everything (under py-spy when ``profile`` is given), then an idle one."""
    sandbox = sandbox_for(part)
    url = await warehouse(admin, part)
    async with common.sandbox_in_thread(moengage=sandbox) as running:
        config = common.write_config(folder, config_text(running.moengage_base_url, part))
        argv = [str(common.BIN / "syncer"), "load", "moengage"]
        spy = [] if profile is None else common.py_spy(profile)
        env = load_env(config, url)
        child = (await common.run_child([*spy, *argv], env=env, cwd=folder)).check()
        idle = (await common.run_child(argv, env=env, cwd=folder)).check()
    conn = await asyncpg.connect(url)
    try:
        batches = await conn.fetch(
            "select bytes, users, events from syncer.load_batches where outcome = 'acked'"
            " order by id"
        )
    finally:
        await conn.close()
    await common.drop_database(admin, url)
    events, users = len(sandbox.events), len(sandbox.users)
    if events != part.events or users != part.users or sandbox.drops:
        raise RuntimeError(
            f"MoEngage got {events} events and {users} users of {part.events} and "
            f"{part.users}, {len(sandbox.drops)} dropped"
        )
    return Packed(child, idle, [b["bytes"] for b in batches], events, users)


@dataclass(frozen=True)
class Windows:
    users: list[float]  # per whole window, fraction of the limit
    events: list[float]
    max_users: int
    max_events: int
    rate_limited: int
    mean_body: float


def max_in_window(log: list[RequestRecord], window_s: float, unit: str) -> int:
    best = total = start = 0
    for record in log:
        total += getattr(record, unit)
        while log[start].at <= record.at - window_s:
            total -= getattr(log[start], unit)
            start += 1
        best = max(best, total)
    return best


async def window_run(admin: str, folder: Path, part: Part, windows: int) -> Windows:
    sandbox = sandbox_for(part)
    url = await warehouse(admin, part)
    async with common.sandbox_in_thread(moengage=sandbox) as running:
        config = common.write_config(folder, config_text(running.moengage_base_url, part))
        child = common.start_child(
            [str(common.BIN / "syncer"), "load", "moengage"], env=load_env(config, url), cwd=folder
        )
        try:
            if await common.poll_until(lambda: bool(sandbox.requests), 120):
                t0 = sandbox.requests[0].at
                await asyncio.sleep(max(0.0, t0 + windows * part.window_s + 0.3 - time.monotonic()))
        finally:
            child.stop()
            await child.wait(120)
    await common.drop_database(admin, url)
    log = [r for r in sandbox.requests if r.status == 200]
    if not log:
        raise RuntimeError("syncer load sent nothing within 120 s")
    t0 = log[0].at
    users, events = [], []
    for i in range(windows):
        inside = [r for r in log if t0 + i * part.window_s <= r.at < t0 + (i + 1) * part.window_s]
        users.append(sum(r.users for r in inside) / part.limit_users)
        events.append(sum(r.events for r in inside) / part.limit_events)
    return Windows(
        users=users,
        events=events,
        max_users=max_in_window(log, part.window_s, "users"),
        max_events=max_in_window(log, part.window_s, "events"),
        rate_limited=sum(r.status == 429 for r in sandbox.requests),
        mean_body=sum(r.body_bytes for r in log) / len(log),
    )


async def main(args: argparse.Namespace) -> None:
    packing = Part(args.events // 10, args.events, 10**6, 10**7, 60.0)
    windows_part = Part(5_000, 50_000, 1_000, 10_000, 10.0)
    windows = 3
    packed: list[Packed] = []
    filled: list[Windows] = []
    with common.postgres() as admin, tempfile.TemporaryDirectory() as tmp:
        for number in range(args.rounds):
            folder = Path(tmp) / f"packing-{number}"
            folder.mkdir()
            p = await packing_run(admin, folder, packing)
            packed.append(p)
            full = p.sizes[:-1] or p.sizes
            print(
                f"  round {number + 1} packing: {len(p.sizes)} bodies, mean "
                f"{sum(full) / len(full):,.0f} bytes (all but the last), {p.child.cpu_s:.1f} CPU s"
                f" ({p.idle.cpu_s:.1f} with nothing to send), {p.child.wall_s:.1f} s wall",
                flush=True,
            )
            folder = Path(tmp) / f"windows-{number}"
            folder.mkdir()
            w = await window_run(admin, folder, windows_part, windows)
            filled.append(w)
            print(
                f"  round {number + 1} windows: users {[f'{x:.0%}' for x in w.users]}, events "
                f"{[f'{x:.0%}' for x in w.events]}, max {w.max_users}/{w.max_events} in a window,"
                f" {w.rate_limited} × 429",
                flush=True,
            )
        folder = Path(tmp) / "py-spy"
        folder.mkdir()
        spy_path = folder / "py-spy.txt"
        profiled = await packing_run(admin, folder, packing, profile=spy_path)
        cpu, samples = profiles.cpu_table(spy_path)
        version = await common.server_version(admin)
    body = "\n\n".join(
        [
            common.provenance(version),
            _packing_section(packed, packing, args.rounds),
            f"Where the CPU of the load goes (one more load under py-spy, {samples:,} samples "
            f"at 250 Hz, {profiled.child.cpu_s:.1f} CPU s in {profiled.child.wall_s:.1f} s "
            "wall; by the innermost syncer function on the stack):",
            cpu,
            _window_section(filled, windows_part, windows, args.rounds),
        ]
    )
    common.report("moengage", "MoEngage packing and throughput", body, version)


def _packing_section(packed: list[Packed], part: Part, rounds: int) -> str:
    full_means = [sum(p.sizes[:-1] or p.sizes) / len(p.sizes[:-1] or p.sizes) for p in packed]
    all_means = [sum(p.sizes) / len(p.sizes) for p in packed]
    fill = common.median(full_means) / MAX_REQUEST_BYTES
    gross = [p.child.cpu_s / p.events * 100_000 for p in packed]
    net = [(p.child.cpu_s - p.idle.cpu_s) / p.events * 100_000 for p in packed]
    rows = [
        ["bodies sent", common.spread([float(len(p.sizes)) for p in packed])],
        ["mean body, all but the last (bytes)", common.spread(full_means)],
        ["mean body, all (bytes)", common.spread(all_means)],
        ["largest body (bytes)", f"{max(max(p.sizes) for p in packed):,}"],
        ["mean body / max_request_bytes (all but the last)", f"{fill:.1%}"],
        ["wall s of the load", common.spread([p.child.wall_s for p in packed], 1)],
        ["CPU s of the load process", common.spread([p.child.cpu_s for p in packed], 2)],
        ["CPU s of a load with nothing to send", common.spread([p.idle.cpu_s for p in packed], 2)],
        ["CPU s per 100,000 events, gross", common.spread(gross, 2)],
        ["CPU s per 100,000 events, net of the fixed cost", common.spread(net, 2)],
        ["peak RSS MB", common.spread([p.child.max_rss_mb for p in packed])],
    ]
    return "\n\n".join(
        [
            f"**Packing and CPU**: {part.events:,} events of {part.users:,} customers plus the "
            f"{part.users:,} users, limits high enough never to wait; median (min–max) of "
            f"{rounds} loads. The last body of a load carries what is left, so the fill is "
            "judged on the others.",
            common.markdown_table(["figure", "value"], rows),
            f"Mean body {fill:.1%} of `max_request_bytes`; target ≥ {TARGET_FILL:.0%}: "
            f"{common.verdict(fill >= TARGET_FILL)}. Net CPU per 100,000 events (users "
            f"included): {common.median(net):.2f} s.",
        ]
    )


def _window_section(filled: list[Windows], part: Part, windows: int, rounds: int) -> str:
    rows = []
    for unit, limit in (("users", part.limit_users), ("events", part.limit_events)):
        per_window = [x for w in filled for x in getattr(w, unit)]
        rows.append(
            [
                unit,
                f"{limit:,} per {part.window_s:g} s",
                f"{common.median(per_window):.1%}",
                f"{min(per_window):.1%}",
                f"{max(getattr(w, f'max_{unit}') for w in filled):,}",
            ]
        )
    rate_limited = sum(w.rate_limited for w in filled)
    return "\n\n".join(
        [
            f"**Window use**: {part.events:,} events of {part.users:,} customers waiting, "
            f"MoEngage's default amounts per a {part.window_s:g} s window (60 s in production, "
            f"shortened so that {windows} windows take {windows * part.window_s:g} s); "
            f"{windows} whole windows per load, {rounds} loads.",
            common.markdown_table(
                ["unit", "limit", "per window (median)", "worst window", "most in any window"],
                rows,
            ),
            f"429s in all loads: {rate_limited}. Mean body in these loads: "
            f"{common.median([w.mean_body for w in filled]):,.0f} bytes (bodies are cut to the "
            "room left in the window).",
        ]
    )
