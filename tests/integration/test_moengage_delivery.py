"""MoEngage as the real API behaves: 429s beyond the configured limit, answers lost after the
body was processed, duplicate keys, failing models, long values. Real PostgreSQL, the MoEngage
sandbox over loopback, `syncer` subprocesses for exit codes."""

from __future__ import annotations

import base64
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from syncer.destinations.moengage.settings import ModelSettings, MoengageRateLimit
from syncer.destinations.moengage.values import MAX_VALUE_CHARS
from syncer.errors import ConfigError
from syncer.runners.load_status import destination_status
from syncer.sandbox.server import RunningSandbox
from syncer.store import loads
from syncer.store.database import connect, migrations_dir, with_database
from tests.integration.test_cli import Env, assert_one_error_line, syncer
from tests.integration.test_cli_load import moe_env as moe_env
from tests.integration.test_moengage_load import (
    PEOPLE,
    PURCHASES,
    limit_sandbox,
    load,
    make_people,
    moengage,
    people_models,
)
from tests.integration.test_moengage_load import short_windows as short_windows


async def purchases(pool: Any, people: int, events: int, note: str = "repeat('n', 40)") -> None:
    await make_people(pool, people)
    await pool.execute(
        f"insert into purchases select g, 1 + g % {people}, now() - interval '1 hour', {note} "
        f"from generate_series(1, {events}) g"
    )


def arrived(sandbox: RunningSandbox) -> Counter[int]:
    """purchase_id -> copies the sandbox stored."""
    return Counter(e.attributes["purchase_id"] for e in sandbox.moengage.events)


async def dead_letter_rules(pool: Any) -> Counter[str]:
    rows = await pool.fetch("select rule from syncer.dead_letters")
    return Counter(r["rule"] for r in rows)


# --- 429 and 5xx ---------------------------------------------------------------------------


async def test_a_workspace_limit_below_the_configured_one_throttles_but_every_row_arrives(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await purchases(pool, 50, 1_500)
    # The configured limit is far above the workspace's: bodies of ~700 events meet 429s.
    limit_sandbox(sandbox.moengage, users_per_window=100_000, events_per_window=300, window_s=1.0)
    limits = MoengageRateLimit(users=100_000, events=100_000, per_seconds=1.0)
    settings = moengage(sandbox, rate_limit=limits, **people_models(events=PURCHASES))
    result = await load(pool, settings)
    assert result.ok, result.error
    assert result.rate_limited >= 2
    assert 429 in {r.status for r in sandbox.moengage.requests}
    assert result.lowered_limits["events"] <= 300
    keys = arrived(sandbox)
    assert len(keys) == 1_500
    assert max(keys.values()) == 1
    assert await pool.fetchval("select count(*) from syncer.dead_letters") == 0
    assert result.sent["events"] == 1_500


async def test_a_run_that_gives_up_on_5xx_fails_and_the_next_run_sends_the_rows(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await purchases(pool, 20, 200)
    moe = sandbox.moengage
    moe.faults.fail_next, moe.faults.fail_status = 1_000, 503
    settings = moengage(sandbox, max_attempts=3, **people_models(events=PURCHASES))
    failed = await load(pool, settings)
    assert failed.outcome == "failed"
    assert "stay pending" in (failed.error or "")
    assert "HTTP 503" in (failed.error or "")
    assert await pool.fetchval("select count(*) from syncer.dead_letters") == 0
    stored = await pool.fetchval("select error from syncer.runs where id = $1", failed.run_id)
    assert stored == failed.error
    moe.faults.fail_next = 0
    again = await load(pool, settings)
    assert again.ok, again.error
    assert (again.sent["users"], again.sent["events"]) == (20, 200)
    assert len(arrived(sandbox)) == 200


def _upgrade(connection: Any, revision: str) -> None:
    config = Config(str(migrations_dir() / "alembic.ini"))
    config.attributes["connection"] = connection
    command.upgrade(config, revision)


async def test_migration_0009_releases_rows_dead_lettered_for_429_and_5xx(
    pg_admin_url: str,
) -> None:
    name = f"m_{uuid.uuid4().hex[:12]}"
    admin = await connect(pg_admin_url)
    await admin.execute(f'create database "{name}"')
    url = with_database(pg_admin_url, name)

    async def creator() -> Any:
        return await connect(url)

    engine = create_async_engine("postgresql+asyncpg://", async_creator=creator, poolclass=NullPool)
    conn = await connect(url)
    try:
        async with engine.begin() as sa_conn:
            await sa_conn.run_sync(_upgrade, "0006")
        letters = [
            ("events", "e-429", "http_429"),
            ("events", "e-502", "http_502"),
            ("users", "u-500", "http_500"),
            ("events", "e-400", "http_400"),
            ("users", "u-bad", "forbidden_customer_id"),
        ]
        await conn.executemany(
            "insert into syncer.dead_letters (destination, model, key, hash, rule, reason, row)"
            " values ('moengage', $1, $2, 'h', $3, 'r', '{}'::jsonb)",
            letters,
        )
        async with engine.begin() as sa_conn:
            await sa_conn.run_sync(_upgrade, "head")
        left = {r["key"] for r in await conn.fetch("select key from syncer.dead_letters")}
        assert left == {"e-400", "u-bad"}
        assert await conn.fetchval("select count(*) from syncer.lost_answers") == 0
    finally:
        await conn.close()
        await engine.dispose()
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()


# --- lost answers --------------------------------------------------------------------------


async def test_every_copy_of_an_event_whose_answer_was_lost_is_counted_across_runs(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await purchases(pool, 10, 50)
    moe = sandbox.moengage
    # Three bodies are processed, then answered after the client gave up.
    moe.faults.timeout_after_processing_next, moe.faults.slow_s = 3, 4.0
    settings = moengage(sandbox, timeout_s=2.0, max_attempts=2, **people_models(events=PURCHASES))
    first = await load(pool, settings)
    assert first.outcome == "failed"  # two sends, no answer: it gives up, rows pending
    assert "no answer" in (first.error or "")
    second = await load(pool, settings)
    assert second.ok, second.error
    keys = arrived(sandbox)
    assert len(keys) == 50
    assert set(keys.values()) == {4}  # four copies of each: three unanswered, one answered
    extra = sum(n - 1 for n in keys.values())
    assert first.possibly_duplicated + second.possibly_duplicated == extra == 150
    assert await pool.fetchval("select count(*) from syncer.lost_answers") == 0
    async with pool.acquire() as conn:
        status = {m.model: m for m in await destination_status(conn, settings)}
    assert status["events"].possibly_duplicated == 150
    assert status["events"].unanswered == 0
    # Nothing left to send: nothing more is counted.
    third = await load(pool, settings)
    assert (third.possibly_duplicated, sum(third.sent.values())) == (0, 0)


async def test_held_events_wait_for_release_and_are_counted_when_sent(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await purchases(pool, 10, 40)
    moe = sandbox.moengage
    moe.faults.timeout_after_processing_next, moe.faults.slow_s = 1, 4.0
    settings = moengage(
        sandbox, timeout_s=2.0, on_lost_answer="hold", **people_models(events=PURCHASES)
    )
    first = await load(pool, settings)
    assert first.ok, first.error
    assert first.held == 40
    assert first.sent["users"] == 10  # upserts are sent again at once
    assert set(arrived(sandbox).values()) == {1}  # at most once: no second copy
    async with pool.acquire() as conn:
        status = {m.model: m for m in await destination_status(conn, settings)}
    assert (status["events"].held, status["events"].pending) == (40, 0)
    before = len(moe.requests)
    quiet = await load(pool, settings)
    assert quiet.ok
    assert len(moe.requests) == before  # held: not sent
    async with pool.acquire() as conn:
        assert await loads.release_held(conn, settings.name) == 40
    released = await load(pool, settings)
    assert released.ok, released.error
    assert released.sent["events"] == 40
    keys = arrived(sandbox)
    assert set(keys.values()) == {2}
    assert released.possibly_duplicated == sum(n - 1 for n in keys.values()) == 40
    assert await pool.fetchval("select count(*) from syncer.lost_answers") == 0


async def test_release_held_on_the_command_line(
    pool: Any, sandbox: RunningSandbox, moe_env: Env, tmp_path: Path
) -> None:
    await purchases(pool, 5, 10)
    config = tmp_path / "schedules.toml"
    config.write_text(
        f"""
[destinations.moengage]
type = "moengage"
base_url = "{sandbox.moengage_base_url}"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"
timeout = "2s"
on_lost_answer = "hold"
[destinations.moengage.users]
sql = "{PEOPLE}"
[destinations.moengage.events]
sql = "{PURCHASES}"
"""
    )
    moe = sandbox.moengage
    moe.faults.timeout_after_processing_next, moe.faults.slow_s = 1, 5.0
    ran = await syncer("load", "moengage", "--config", config, env=moe_env, cwd=tmp_path)
    assert ran.code == 0, ran
    assert "10 events held" in ran.stdout
    assert "--release-held" in ran.stdout
    status = await syncer("status", "--config", config, env=moe_env, cwd=tmp_path)
    assert "10 held" in status.stdout, status
    released = await syncer(
        "load", "moengage", "--release-held", "--config", config, env=moe_env, cwd=tmp_path
    )
    assert released.code == 0, released
    assert "released 10 held events" in released.stdout
    assert "possible duplicates: 10 events" in released.stdout
    assert set(arrived(sandbox).values()) == {2}


# --- duplicate keys and failing models -----------------------------------------------------

DOUBLED_EVENTS = f"""
select * from ({PURCHASES}) p
union all
select event_key, customer_id, action, occurred_at, attributes || '{{"copy": 2}}'::jsonb
from ({PURCHASES}) q
"""
DOUBLED_USERS = f"""
select * from ({PEOPLE}) p
union all
select customer_id, attributes || '{{"copy": 2}}'::jsonb from ({PEOPLE}) q where q.customer_id
    in ('person-1', 'person-2', 'person-3')
"""


async def test_duplicate_keys_are_sent_once_and_the_rest_dead_lettered(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await purchases(pool, 30, 3_000, note="repeat('x', 100)")
    settings = moengage(
        sandbox,
        users=ModelSettings(DOUBLED_USERS),
        events=ModelSettings(DOUBLED_EVENTS),
    )
    result = await load(pool, settings)
    assert result.ok, result.error
    assert len(sandbox.moengage.requests) > 2  # several bodies
    keys = arrived(sandbox)
    assert len(keys) == 3_000
    assert max(keys.values()) == 1
    assert len(sandbox.moengage.users) == 30
    assert result.dead_letters["duplicate_key"] == 3_003
    rows = await pool.fetch("select model, count(*) as n from syncer.dead_letters group by model")
    assert {r["model"]: r["n"] for r in rows} == {"events": 3_000, "users": 3}
    reason = await pool.fetchval("select reason from syncer.dead_letters where model = 'users'")
    assert "more than once" in reason
    assert "destinations.moengage.users.sql" in reason
    # The next run sends nothing, and the duplicates stay visible.
    requests = len(sandbox.moengage.requests)
    again = await load(pool, settings)
    assert again.ok
    assert len(sandbox.moengage.requests) == requests
    assert (await dead_letter_rules(pool))["duplicate_key"] == 3_003


FAILING_CAST = (
    "select 'purchase-' || id as event_key, 'person-' || person as customer_id, "
    "'Purchase Made' as action, at as occurred_at, "
    "jsonb_build_object('amount', (case when id = 7 then 'seven' else id::text end)::int) "
    "as attributes from purchases"
)


async def test_a_model_failing_while_it_runs_is_named_and_stored_as_the_runs_error(
    pool: Any, sandbox: RunningSandbox
) -> None:
    await purchases(pool, 5, 20)
    settings = moengage(sandbox, **people_models(events=FAILING_CAST))
    with pytest.raises(ConfigError, match=r"destinations\.moengage\.events\.sql") as caught:
        await load(pool, settings)
    assert "seven" in caught.value.message
    run = await pool.fetchrow("select outcome, error from syncer.runs")
    assert run["outcome"] == "failed"
    assert run["error"] == caught.value.message


async def test_a_model_failing_while_it_runs_exits_2_naming_the_model(
    pool: Any, sandbox: RunningSandbox, moe_env: Env, tmp_path: Path
) -> None:
    await purchases(pool, 5, 20)
    config = tmp_path / "schedules.toml"
    config.write_text(
        f"""
[destinations.moengage]
type = "moengage"
base_url = "{sandbox.moengage_base_url}"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"
[destinations.moengage.users]
sql = "{PEOPLE}"
[destinations.moengage.events]
sql = "{FAILING_CAST}"
"""
    )
    ran = await syncer("load", "moengage", "--config", config, env=moe_env, cwd=tmp_path)
    assert_one_error_line(ran, 2, "destinations.moengage.events.sql", "seven")


# --- long values ---------------------------------------------------------------------------

LONG_EVENTS = (
    "select 'purchase-' || id as event_key, 'person-' || person as customer_id, "
    "'Purchase Made' as action, at as occurred_at, "
    "jsonb_build_object('purchase_id', id, 'description', note, 'link', "
    "case when id % 10 = 0 then 'https://example.com/' || repeat('p', 600) "
    "else 'https://example.com/' || id end) as attributes from purchases"
)


async def test_long_values_are_cut_to_512_characters_and_long_urls_dead_lettered(
    pool: Any, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    await purchases(pool, 10, 200, note="repeat('ü', 2000)")
    settings = moengage(sandbox, **people_models(events=LONG_EVENTS))
    dry = await load(pool, settings, dry_run_dir=tmp_path / "dry")
    assert dry.truncated == Counter({"events.description": 180})
    listed = (tmp_path / "dry" / "truncations.jsonl").read_bytes().splitlines()
    assert len(listed) == 180
    assert orjson.loads(listed[0])["cut"] == "description"
    result = await load(pool, settings)
    assert result.ok, result.error
    assert result.truncated == Counter({"events.description": 180})
    assert result.sent["events"] == 180
    events = sandbox.moengage.events
    assert len(events) == 180
    assert {len(e.attributes["description"]) for e in events} == {MAX_VALUE_CHARS}
    assert sandbox.moengage.drops == []  # nothing MoEngage itself would have to cut or drop
    letters = await pool.fetch("select key, rule, reason from syncer.dead_letters")
    assert len(letters) == 20
    assert {r["rule"] for r in letters} == {"url_too_long"}
    assert all("link" in r["reason"] and "URL" in r["reason"] for r in letters)
    async with pool.acquire() as conn:
        status = {m.model: m for m in await destination_status(conn, settings)}
    assert status["events"].truncated == {"description": 180}


async def test_the_sandbox_keeps_long_values_truncated_as_moengage_does(
    sandbox: RunningSandbox,
) -> None:
    import aiohttp

    moe = sandbox.moengage.settings
    token = base64.b64encode(f"{moe.workspace_id}:{moe.api_key}".encode()).decode()
    body = {
        "type": "transition",
        "elements": [
            {
                "type": "event",
                "customer_id": "c-1",
                "actions": [
                    {
                        "action": "Viewed",
                        "current_time": "2026-01-01T00:00:00Z",
                        "attributes": {"text": "t" * 2000, "tags": ["x" * 700, "y"]},
                    }
                ],
            }
        ],
    }
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"{sandbox.moengage_base_url}/transition/{moe.workspace_id}",
            data=orjson.dumps(body),
            headers={"Content-Type": "application/json", "Authorization": f"Basic {token}"},
        ) as response,
    ):
        assert response.status == 200
    (event,) = sandbox.moengage.events
    assert event.attributes == {"text": "t" * 512, "tags": ["x" * 512, "y"]}
    assert {d.outcome for d in sandbox.moengage.drops} == {"truncated"}
