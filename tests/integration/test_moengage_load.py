"""Warehouse → MoEngage, end to end: real PostgreSQL, the MoEngage sandbox over loopback."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections import Counter
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from syncer.config import Secret
from syncer.destinations.moengage.load import BODY_MARGIN_S
from syncer.destinations.moengage.settings import ModelSettings, MoengageRateLimit, MoengageSettings
from syncer.errors import ConfigError
from syncer.pacing import margin_for
from syncer.results import LoadResult
from syncer.runners.load import load_destination
from syncer.runners.sync import sync_source
from syncer.sandbox.moengage import MoengageSandbox
from syncer.sandbox.server import RunningSandbox
from tests.conftest import moco_source, wait_for_dead_sessions

PEOPLE = "select 'person-' || id as customer_id, attributes from people"
NO_DEVICES = (
    "select null::text as customer_id, null::text as device_id, null::jsonb as attributes "
    "where false"
)
NO_EVENTS = (
    "select null::text as event_key, null::text as customer_id, null::text as action, "
    "null::timestamptz as occurred_at, null::jsonb as attributes where false"
)
PURCHASES = (
    "select 'purchase-' || id as event_key, 'person-' || person as customer_id, "
    "'Purchase Made' as action, at as occurred_at, "
    "jsonb_build_object('purchase_id', id, 'note', note) as attributes from purchases"
)


def moengage(sandbox: RunningSandbox, **overrides: Any) -> MoengageSettings:
    moe = sandbox.moengage.settings
    options: dict[str, Any] = {
        "name": "moengage",
        "base_url": sandbox.moengage_base_url,
        "workspace_id": Secret("MOENGAGE_WORKSPACE_ID", moe.workspace_id),
        "api_key": Secret("MOENGAGE_API_KEY", moe.api_key),
        "timeout_s": 2.0,
        "max_attempts": 8,
        # Tests shorten MoEngage's minute: the default window would make them wait minutes.
        "rate_limit": MoengageRateLimit(users=100_000, events=100_000, per_seconds=1.0),
    }
    options.update(overrides)
    return MoengageSettings(**options)


def people_models(users: str = PEOPLE, events: str = NO_EVENTS) -> dict[str, Any]:
    return {
        "users": ModelSettings(users),
        "devices": ModelSettings(NO_DEVICES),
        "events": ModelSettings(events),
    }


async def make_people(pool: Any, count: int, *, attribute_bytes: int = 40) -> None:
    await pool.execute(
        "create table people (id int primary key, attributes jsonb not null);"
        "create table purchases (id int primary key, person int, at timestamptz, note text)"
    )
    await pool.execute(
        "insert into people select g, jsonb_build_object('name', 'Person ' || g, "
        "'bio', repeat('ü', $2), 'plan', case when g % 3 = 0 then 'pro' else 'free' end) "
        "from generate_series(1, $1) g",
        count,
        attribute_bytes,
    )


async def load(pool: Any, settings: MoengageSettings, **options: Any) -> LoadResult:
    async with aiohttp.ClientSession() as session:
        return await load_destination(pool, session, settings, backoff_base_s=0.01, **options)


def limit_sandbox(sandbox: MoengageSandbox, **settings: Any) -> None:
    sandbox.settings = replace(sandbox.settings, **settings)


@pytest.fixture(autouse=True)
def short_windows(sandbox: RunningSandbox) -> None:
    """The sandbox's limits match the tests' default: generous, in one-second windows."""
    limit_sandbox(
        sandbox.moengage, users_per_window=100_000, events_per_window=100_000, window_s=1.0
    )


async def test_the_default_models_send_moco_contacts_companies_and_events_exactly_once(
    pool: Any, sandbox: RunningSandbox
) -> None:
    async with aiohttp.ClientSession() as session:
        assert (await sync_source(pool, session, moco_source(sandbox.moco_base_url))).ok
    result = await load(pool, moengage(sandbox))
    assert result.ok, result.error
    moe = sandbox.moengage
    contacts = await pool.fetchval("select count(*) from moco.contacts")
    customers = await pool.fetchval(
        "select count(*) from moco.companies where data->>'type' = 'customer'"
    )
    assert result.sent["users"] == contacts + customers
    paid = await pool.fetchval("select count(*) from moco.invoices where data->>'status' = 'paid'")
    assert Counter(e.action for e in moe.events)["Invoice Paid"] == paid
    assert len(moe.events) == result.sent["events"] > paid
    # Events only go to users the users model sends: MoEngage creates no bare users.
    assert len(moe.users) == result.sent["users"]
    assert moe.drops == []
    assert all(r.status == 200 for r in moe.requests)
    # Nothing changed: the next load sends nothing.
    requests = len(moe.requests)
    again = await load(pool, moengage(sandbox))
    assert again.ok
    assert len(moe.requests) == requests
    assert sum(again.sent.values()) == 0


async def test_several_megabytes_go_in_nearly_full_bodies_of_at_most_100000_bytes(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await make_people(pool, 12_000, attribute_bytes=200)
    limits = MoengageRateLimit(users=100_000, events=100_000, per_seconds=1.0)
    limit_sandbox(
        sandbox.moengage, users_per_window=100_000, events_per_window=100_000, window_s=1.0
    )
    result = await load(pool, moengage(sandbox, rate_limit=limits, **people_models()))
    assert result.ok, result.error
    sizes = [r.body_bytes for r in sandbox.moengage.requests]
    assert sum(sizes) > 4_000_000
    assert max(sizes) <= 100_000
    assert sum(sizes[:-1]) / len(sizes[:-1]) >= 90_000
    assert {r.status for r in sandbox.moengage.requests} == {200}
    assert len(sandbox.moengage.users) == 12_000


async def test_users_and_events_per_window_reach_90_percent_of_the_limits_and_never_exceed_them(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await make_people(pool, 1_500)
    await pool.execute(
        "insert into purchases select g, 1 + g % 1500, now() - interval '1 day', 'n' "
        "from generate_series(1, 6000) g"
    )
    window = 1.0
    limits = MoengageRateLimit(users=500, events=2000, per_seconds=window)
    limit_sandbox(sandbox.moengage, users_per_window=500, events_per_window=2000, window_s=window)
    result = await load(
        pool, moengage(sandbox, rate_limit=limits, **people_models(events=PURCHASES))
    )
    assert result.ok, result.error
    log = sandbox.moengage.requests
    assert {r.status for r in log} == {200}  # the sandbox enforces the limits: no 429
    users = sum(r.users for r in log)
    events = sum(r.events for r in log)
    assert (users, events) == (1_500, 6_000)
    # Never more than the limit in any window: the sandbox enforces that (no 429 above), and
    # the pacer's ledger (the database clock when each body's budget was taken) agrees.
    # At least 90% in every window the pacer fills: windows of the limit's length plus the
    # margin for the distance between our clock and the server's, each starting with the
    # first body after the previous one ended (so how quickly a process wakes up does not
    # count), all but the last.
    ledger = await pool.fetch("select unit, at, amount from syncer.rate_log order by at")
    paced = timedelta(seconds=window + max(BODY_MARGIN_S, margin_for(window)))
    for unit, limit in (("users", 500), ("events", 2000)):
        entries = [(r["at"], r["amount"]) for r in ledger if r["unit"] == unit]
        for start, _ in entries:
            assert sum(n for at, n in entries if start <= at < start + paced) <= limit
        starts: list[Any] = []
        for at, _ in entries:
            if not starts or at >= starts[-1] + paced:
                starts.append(at)
        assert len(starts) >= 3  # several windows
        for start in starts[:-1]:
            used = sum(n for at, n in entries if start <= at < start + paced)
            assert 0.9 * limit <= used, (unit, start, used)


async def test_every_event_arrives_once_although_one_request_in_ten_fails_with_5xx(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await make_people(pool, 400)
    await pool.execute(
        "insert into purchases select g, 1 + g % 400, now() - interval '1 hour', repeat('x', 300) "
        "from generate_series(1, 3000) g"
    )
    moe = sandbox.moengage
    stop = asyncio.Event()

    async def fail_one_in_ten() -> None:
        seen = 0
        while not stop.is_set():
            if len(moe.requests) // 10 > seen:
                seen = len(moe.requests) // 10
                moe.faults.fail_next = 1
            await asyncio.sleep(0.005)

    chaos = asyncio.create_task(fail_one_in_ten())
    try:
        moe.faults.fail_next = 1
        limits = MoengageRateLimit(users=100_000, events=100_000, per_seconds=0.2)
        result = await load(
            pool, moengage(sandbox, rate_limit=limits, **people_models(events=PURCHASES))
        )
    finally:
        stop.set()
        await chaos
    assert result.ok, result.error
    assert result.server_errors >= 2
    keys = Counter(e.attributes["purchase_id"] for e in moe.events)
    assert len(keys) == 3000
    assert max(keys.values()) == 1  # no event arrived twice
    assert result.possibly_duplicated == 0


async def test_a_timeout_after_the_body_was_processed_is_resent_and_counted_as_possible_duplicates(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await make_people(pool, 10)
    await pool.execute(
        "insert into purchases select g, 1 + g % 10, now() - interval '1 hour', 'n' "
        "from generate_series(1, 50) g"
    )
    moe = sandbox.moengage
    moe.faults.timeout_after_processing_next = 1
    moe.faults.slow_s = 3.0
    result = await load(pool, moengage(sandbox, timeout_s=0.5, **people_models(events=PURCHASES)))
    assert result.ok, result.error
    keys = Counter(e.attributes["purchase_id"] for e in moe.events)
    assert len(keys) == 50  # nothing lost
    duplicated = sum(n - 1 for n in keys.values())
    assert duplicated == 50  # the one body carried every event, and it was processed twice
    assert result.possibly_duplicated == 50


async def test_after_changing_5_of_1000_users_the_next_load_sends_exactly_those_5(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await make_people(pool, 1_000)
    settings = moengage(sandbox, **people_models())
    assert (await load(pool, settings)).sent["users"] == 1_000
    await pool.execute(
        'update people set attributes = attributes || \'{"plan": "enterprise"}\' '
        "where id in (7, 70, 700, 701, 999)"
    )
    before = len(sandbox.moengage.requests)
    result = await load(pool, settings)
    assert result.sent["users"] == 5
    assert len(sandbox.moengage.requests) == before + 1
    changed = {
        cid for cid, attrs in sandbox.moengage.users.items() if attrs.get("plan") == "enterprise"
    }
    assert changed == {f"person-{i}" for i in (7, 70, 700, 701, 999)}


BAD_USERS = """
select * from (values
    ('null', '{"name": "forbidden id"}'::jsonb),
    ('good-1', '{"id": 5}'::jsonb),
    ('good-2', '{"moe_secret": 1}'::jsonb),
    ('good-3', '{"name": "fine"}'::jsonb)
) as u(customer_id, attributes)
"""
BAD_DEVICES = """
select 'good-3' as customer_id, 'dev-1' as device_id,
       '{"platform": "BlackBerry", "push_id": "t"}'::jsonb as attributes
union all
select 'good-3', 'dev-2', '{"platform": "ANDROID"}'::jsonb
"""
BAD_EVENTS = """
select 'e1' as event_key, 'good-3' as customer_id, 'Signed Up' as action,
       now() - interval '1 day' as occurred_at, '{}'::jsonb as attributes,
       99999 as user_timezone_offset
union all
select 'e2', 'good-3', 'Signed Up', now() + interval '2 days', '{}'::jsonb, 0
union all
select 'e3', 'good-3', 'Signed Up', now() - interval '1 day', '{}'::jsonb, 3600
"""


async def test_rows_moengage_would_drop_are_dead_lettered_with_reasons_and_never_sent(
    pool: Any, sandbox: RunningSandbox
) -> None:
    from syncer.runners.load_status import destination_status

    settings = moengage(
        sandbox,
        users=ModelSettings(BAD_USERS),
        devices=ModelSettings(BAD_DEVICES),
        events=ModelSettings(BAD_EVENTS),
    )
    result = await load(pool, settings)
    assert result.ok, result.error
    moe = sandbox.moengage
    assert moe.drops == []
    assert set(moe.users) == {"good-3"}
    assert [e.action for e in moe.events] == ["Signed Up"]
    assert moe.devices == {}
    letters = {
        (r["model"], r["key"]): r["reason"]
        for r in await pool.fetch("select model, key, reason from syncer.dead_letters")
    }
    assert set(letters) == {
        ("users", "null"),
        ("users", "good-1"),
        ("users", "good-2"),
        ("devices", "good-3\x1fdev-1"),
        ("devices", "good-3\x1fdev-2"),
        ("events", "e1"),
        ("events", "e2"),
    }
    assert "forbidden" in letters[("users", "null")] or "null" in letters[("users", "null")]
    assert "push_id" in letters[("devices", "good-3\x1fdev-2")]
    async with pool.acquire() as conn:
        status = {m.model: m for m in await destination_status(conn, settings)}
    assert sum(status["users"].dead_letters.values()) == 3
    assert sum(status["events"].dead_letters.values()) == 2
    assert status["users"].sent == 1
    assert status["users"].pending == 0
    # A dead letter whose row is fixed is sent by the next load.
    fixed = BAD_USERS.replace('{"id": 5}', '{"user_number": 5}')
    again = await load(pool, replace(settings, users=ModelSettings(fixed)))
    assert again.sent["users"] == 1
    assert "good-1" in moe.users


async def test_a_413_splits_the_body_and_everything_arrives(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await make_people(pool, 600, attribute_bytes=100)
    limit_sandbox(sandbox.moengage, max_body_bytes=30_000)
    result = await load(pool, moengage(sandbox, max_request_bytes=100_000, **people_models()))
    assert result.ok, result.error
    assert result.splits > 0
    assert 413 in {r.status for r in sandbox.moengage.requests}
    assert len(sandbox.moengage.users) == 600


async def test_a_rejected_request_dead_letters_its_rows_with_the_message_and_request_id(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await make_people(pool, 20)
    sandbox.moengage.faults.fail_next = 1
    sandbox.moengage.faults.fail_status = 400
    result = await load(pool, moengage(sandbox, **people_models()))
    assert result.ok
    assert result.rejected_batches == 1
    reasons = await pool.fetch("select reason from syncer.dead_letters")
    assert len(reasons) == 20
    assert all("HTTP 400" in r["reason"] and "request_id" in r["reason"] for r in reasons)


async def test_wrong_credentials_and_an_unknown_workspace_end_the_run_with_one_message(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await make_people(pool, 5)
    wrong_key = await load(
        pool, moengage(sandbox, api_key=Secret("MOENGAGE_API_KEY", "nope"), **people_models())
    )
    assert not wrong_key.ok
    assert "MOENGAGE_API_KEY" in (wrong_key.error or "")
    assert "nope" not in (wrong_key.error or "")
    unknown = moengage(
        sandbox, workspace_id=Secret("MOENGAGE_WORKSPACE_ID", "OTHERWS"), **people_models()
    )
    failed = await load(pool, unknown)
    assert not failed.ok
    assert "MOENGAGE_WORKSPACE_ID" in (failed.error or "")
    assert "OTHERWS" not in (failed.error or "")
    assert await pool.fetchval("select count(*) from syncer.inflight") == 0
    assert await pool.fetchval("select count(*) from syncer.acks") == 0
    runs = await pool.fetch("select outcome, error from syncer.runs order by id")
    assert [r["outcome"] for r in runs] == ["failed", "failed"]


async def test_a_model_with_a_sql_error_or_a_missing_column_is_a_configuration_error(
    pool: Any, sandbox: RunningSandbox
) -> None:
    broken = moengage(sandbox, users=ModelSettings("select customer_id from nowhere"))
    with pytest.raises(ConfigError, match=r"destinations\.moengage\.users\.sql: the query fails"):
        await load(pool, broken)
    missing = moengage(sandbox, users=ModelSettings("select 'a' as customer_id"))
    with pytest.raises(ConfigError, match="no column 'attributes'"):
        await load(pool, missing)
    mistyped = moengage(
        sandbox, users=ModelSettings("select 'a' as customer_id, 'x'::text as attributes")
    )
    with pytest.raises(ConfigError, match="column 'attributes' is text"):
        await load(pool, mistyped)
    assert await pool.fetchval("select count(*) from syncer.runs") == 0


async def test_a_dry_run_writes_the_exact_bodies_and_sends_and_records_nothing(
    pool: Any, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    await make_people(pool, 3_000, attribute_bytes=100)
    result = await load(pool, moengage(sandbox, **people_models()), dry_run_dir=tmp_path / "out")
    assert result.ok
    bodies = sorted((tmp_path / "out").glob("body-*.json"))
    assert len(bodies) == len(result.body_sizes) >= 3
    assert all(b.stat().st_size <= 100_000 for b in bodies)
    assert sandbox.moengage.requests == []
    assert await pool.fetchval("select count(*) from syncer.acks") == 0
    # Sending for real afterwards sends the very bodies the dry run wrote.
    real = await load(pool, moengage(sandbox, **people_models()))
    assert real.body_sizes == result.body_sizes


async def test_a_load_killed_mid_run_resends_only_unanswered_events_and_loses_nothing(
    db_url: str, pool: Any, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    await make_people(pool, 300)
    await pool.execute(
        "insert into purchases select g, 1 + g % 300, now() - interval '1 hour', repeat('x', 200) "
        "from generate_series(1, 4000) g"
    )
    config = tmp_path / "schedules.toml"
    config.write_text(
        f"""
[destinations.moengage]
type = "moengage"
base_url = "{sandbox.moengage_base_url}"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"
max_request_bytes = 20000
rate_limit = {{ users = 100000, events = 400, per_seconds = 0.5 }}
[destinations.moengage.users]
sql = "{PEOPLE}"
[destinations.moengage.devices]
sql = "{NO_DEVICES}"
[destinations.moengage.events]
sql = "{PURCHASES}"
"""
    )
    limit_sandbox(sandbox.moengage, events_per_window=400, window_s=0.5)
    env = {
        **os.environ,
        "SYNCER_DATABASE_URL": db_url,
        "MOENGAGE_WORKSPACE_ID": sandbox.moengage.settings.workspace_id,
        "MOENGAGE_API_KEY": sandbox.moengage.settings.api_key,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        "load",
        "moengage",
        "--config",
        str(config),
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(60):
        while len(sandbox.moengage.events) < 1500:
            assert child.returncode is None
            await asyncio.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    await child.wait()
    await wait_for_dead_sessions(pool)
    acked_events = await pool.fetchval("select count(*) from syncer.acks where model = 'events'")
    acked_users = await pool.fetchval("select count(*) from syncer.acks where model = 'users'")
    arrived_before = len(sandbox.moengage.events)
    users_requests_before = sum(r.users for r in sandbox.moengage.requests if r.status == 200)

    settings = moengage(
        sandbox,
        max_request_bytes=20_000,
        rate_limit=MoengageRateLimit(100_000, 400, 0.5),
        **people_models(events=PURCHASES),
    )
    result = await load(pool, settings)
    assert result.ok, result.error
    keys = Counter(e.attributes["purchase_id"] for e in sandbox.moengage.events)
    assert len(keys) == 4000  # nothing lost
    duplicates = sum(n - 1 for n in keys.values())
    # Only events whose request was unanswered at the kill arrive twice, and they are counted.
    assert duplicates == arrived_before - acked_events
    assert duplicates <= result.possibly_duplicated
    assert result.sent["events"] == 4000 - acked_events
    # Acknowledged users are not sent again.
    users_after = sum(r.users for r in sandbox.moengage.requests if r.status == 200)
    assert users_after - users_requests_before == 300 - acked_users
