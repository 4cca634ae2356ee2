"""Odd shapes never fail a stream: `syncer sync` as a user runs it (real subprocesses), the
sandboxes over loopback, real PostgreSQL.

MOCA analytics in the second shape (geolocations aggregated over the requested range) are
stored with their range and replaced when the same range is pulled again; a metric answered in
neither shape, and MOCO records that cannot be stored, land in ``syncer.rejected_records`` with
their payload and reason while the stream succeeds; ``syncer status`` counts them.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from syncer.sandbox.moca import MocaSandbox, MocaSandboxSettings
from syncer.sandbox.moca_data import MocaData
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.moco_data import MocoData
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moca import api as moca
from tests.conftest import SANDBOX_KEY, sandbox_in_thread

MOCA_TOKEN = "sandbox-moca-token"


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


async def syncer(*args: str | Path, env: dict[str, str], timeout_s: float = 120.0) -> Ran:
    """``python -m syncer ARGS`` to the end, without blocking the loop (the sandbox is on a
    thread of its own, but the test's pool shares this loop)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        *map(str, args),
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> dict[str, str]:
    home = tmp_path / "home"
    home.mkdir()
    environ = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
    environ.update(
        SYNCER_DATABASE_URL=db_url,
        SYNCER_HOME=str(home),
        COLUMNS="200",
        MOCO_API_KEY=SANDBOX_KEY,
        MOCA_API_TOKEN=MOCA_TOKEN,
    )
    return environ


def moca_config(tmp_path: Path, sandbox: RunningSandbox) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[sources.moca]
type = "moca"
base_url = "{sandbox.moca_base_url}"
token_env = "MOCA_API_TOKEN"
analytics_since = "10d"
rate_limit = {{ requests = 1000, per_seconds = 1 }}
"""
    )
    return path


def moco_config(tmp_path: Path, sandbox: RunningSandbox) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[sources.moco]
type = "moco"
base_url = "{sandbox.moco_base_url}"
api_key_env = "MOCO_API_KEY"
streams = ["activities", "projects", "companies", "contacts",
    "users", "invoices", "offers", "deals"]
rate_limit = {{ requests = 1000, per_seconds = 1 }}
"""
    )
    return path


class Clock:
    """The MOCA sandbox's clock, held still: the same range is pulled again on a full refresh."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
async def moca_sandbox() -> AsyncIterator[RunningSandbox]:
    data = MocaData(now=Clock())
    async with sandbox_in_thread(moca=MocaSandbox(data)) as running:
        yield running


async def status_json(env: dict[str, str], config: Path) -> dict[str, Any]:
    ran = await syncer("status", "--json", "--config", config, env=env)
    assert ran.code == 0, ran
    document: dict[str, Any] = orjson.loads(ran.stdout)
    return {f"{s['source']}.{s['stream']}": s for s in document["streams"]}


def ms(value: datetime) -> int:
    return int(value.timestamp() * 1000)


async def served_aggregates(pool: Any, sandbox: MocaSandbox) -> dict[tuple[str, str], float]:
    """What the sandbox answers for each range stored, keyed as stored: (app, place) -> count."""
    ranges = await pool.fetch(
        "select distinct app_id, range_start, range_end from moca.analytics_ranges"
    )
    served: dict[tuple[str, str], float] = {}
    for r in ranges:
        answer = sandbox.data.analytics(
            r["app_id"],
            "geolocations",
            "day",
            ms(r["range_start"]),
            ms(r["range_end"]),
            aggregate=True,
        )
        for point in answer["series"]:
            place = f"{point['latitude']:.6f},{point['longitude']:.6f}"
            served[(r["app_id"], place)] = float(point["count"])
    return served


async def stored_aggregates(pool: Any) -> dict[tuple[str, str], float]:
    rows = await pool.fetch("select app_id, key, value from moca.analytics_ranges")
    return {(r["app_id"], r["key"]): float(r["value"]) for r in rows}


async def test_aggregated_geolocations_are_stored_with_their_range_and_replaced_on_a_re_pull(
    pool: Any, env: dict[str, str], tmp_path: Path, moca_sandbox: RunningSandbox
) -> None:
    sandbox = moca_sandbox.moca
    sandbox.settings = MocaSandboxSettings(geolocations="aggregate")
    config = moca_config(tmp_path, moca_sandbox)
    ran = await syncer("sync", "moca", "--config", config, env=env)
    assert ran.code == 0, ran.output
    assert "Traceback" not in ran.output
    apps = [a["appId"] for a in sandbox.data.records("apps")]
    ranges = await pool.fetch(
        "select distinct app_id, metric, range_start, range_end from moca.analytics_ranges"
    )
    assert {r["app_id"] for r in ranges} == set(apps)
    assert {r["metric"] for r in ranges} == {"geolocations"}
    assert all(r["range_end"] > r["range_start"] for r in ranges)
    first = await stored_aggregates(pool)
    assert first
    assert first == await served_aggregates(pool, sandbox)
    # Geolocations are aggregates only; every other metric still comes per bucket.
    metrics = {r["metric"] for r in await pool.fetch("select distinct metric from moca.analytics")}
    assert metrics == set(moca.METRIC_NAMES) - {"geolocations"}
    assert await pool.fetchval("select count(*) from syncer.rejected_records") == 0
    # The same range pulled again after the counts changed: replaced, not added to.
    for app in apps:
        sandbox.data.restate(app, "geolocations", 3)
    again = await syncer(
        "sync", "moca", "--config", config, "--stream", "analytics", "--full-refresh", env=env
    )
    assert again.code == 0, again.output
    second = await stored_aggregates(pool)
    assert second.keys() == first.keys()  # the same rows
    assert second == await served_aggregates(pool, sandbox)  # with the new values
    assert sum(second.values()) > sum(first.values())
    assert await pool.fetchval(
        "select count(*) from moca_views.analytics_ranges where latitude is not null"
    ) == len(second)


async def test_a_metric_in_neither_shape_is_rejected_with_a_warning_and_the_rest_stored(
    pool: Any, env: dict[str, str], tmp_path: Path, moca_sandbox: RunningSandbox
) -> None:
    sandbox = moca_sandbox.moca
    sandbox.faults.odd_analytics = frozenset({"sessions"})
    config = moca_config(tmp_path, moca_sandbox)
    ran = await syncer("sync", "moca", "--config", config, env=env)
    assert ran.code == 0, ran.output
    assert "Traceback" not in ran.output
    assert "warning" in ran.output
    assert "rejected_records" in ran.output
    apps = [a["appId"] for a in sandbox.data.records("apps")]
    rejected = await pool.fetch(
        "select source, stream, run_id, reason, record from syncer.rejected_records"
    )
    assert len(rejected) == len(apps)  # one window per app, each answer kept whole
    for r in rejected:
        assert (r["source"], r["stream"]) == ("moca", "analytics")
        assert r["run_id"] is not None
        assert "/analytics/sessions" in r["reason"]
        assert "'series'" in r["reason"]
        body = orjson.loads(r["record"])
        assert body["metric"] == "sessions"
        assert isinstance(body["data"], list)
    assert {orjson.loads(r["record"])["appId"] for r in rejected} == set(apps)
    metrics = {r["metric"] for r in await pool.fetch("select distinct metric from moca.analytics")}
    assert metrics == set(moca.METRIC_NAMES) - {"sessions"}
    run = await pool.fetchrow(
        "select outcome, rejected, warning from syncer.stream_runs where stream = 'analytics'"
    )
    assert run["outcome"] == "succeeded"
    assert run["rejected"] == len(apps)
    assert "sessions" in run["warning"]
    statuses = await status_json(env, config)
    assert statuses["moca.analytics"]["rejected"] == len(apps)
    assert statuses["moca.apps"]["rejected"] == 0


@pytest.fixture
async def moco_sandbox() -> AsyncIterator[RunningSandbox]:
    counts = {
        "activities": 40,
        "projects": 10,
        "companies": 10,
        "contacts": 10,
        "users": 5,
        "invoices": 10,
        "offers": 10,
        "deals": 30,
    }
    async with sandbox_in_thread(moco=MocoSandbox(MocoData(seed=3, counts=counts))) as running:
        yield running


async def test_moco_records_that_cannot_be_stored_are_kept_with_their_payload(
    pool: Any, env: dict[str, str], tmp_path: Path, moco_sandbox: RunningSandbox
) -> None:
    data = moco_sandbox.moco.data
    deals = data.live("deals")
    deals[3]["id"] = str(deals[3]["id"])  # an id that is not an integer
    deals[7]["info"] = "Notiz mit \x00 darin"  # Postgres stores no NUL character
    odd = {str(deals[3]["id"]), deals[7]["id"]}
    served = {str(d["id"]): d for d in data.records("deals")}
    config = moco_config(tmp_path, moco_sandbox)
    ran = await syncer("sync", "moco", "--config", config, env=env)
    assert ran.code == 0, ran.output
    assert "Traceback" not in ran.output
    assert "2 records could not be stored" in ran.output
    rows = await pool.fetch(
        "select stream, reason, record from syncer.rejected_records order by reason"
    )
    assert [r["stream"] for r in rows] == ["deals", "deals"]
    assert "no integer 'id'" in rows[0]["reason"]
    assert "NUL" in rows[1]["reason"]
    payloads = [orjson.loads(r["record"]) for r in rows]
    assert {str(p["id"]) for p in payloads} == {str(i) for i in odd}
    for payload in payloads:
        assert payload == served[str(payload["id"])]  # the record exactly as the API sent it
    stored = {r["id"] for r in await pool.fetch("select id from moco.deals")}
    assert stored == {d["id"] for d in deals} - odd
    run = await pool.fetchrow(
        "select outcome, records, rejected from syncer.stream_runs where stream = 'deals'"
    )
    assert (run["outcome"], run["records"], run["rejected"]) == ("succeeded", len(deals), 2)
    statuses = await status_json(env, config)
    assert statuses["moco.deals"]["rejected"] == 2
    assert statuses["moco.activities"]["rejected"] == 0
    table = await syncer("status", "--config", config, env=env)
    assert table.code == 0, table.output
    assert "rejected" in table.stdout
    lines = table.stdout.splitlines()
    header = next(line for line in lines if "rejected" in line).replace("┃", "│").split("│")
    line = next(line for line in lines if "moco.deals" in line).split("│")
    assert line[[cell.strip() for cell in header].index("rejected")].strip() == "2"
