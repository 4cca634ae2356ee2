"""``syncer check`` as a user runs it: a real subprocess against the sandboxes and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from syncer.sandbox.server import RunningSandbox
from syncer.store.database import head_revision, with_database
from tests.conftest import SANDBOX_KEY
from tests.integration.test_cli import WRONG_KEY, Env, closed_port, syncer

MOCA_TOKEN = "sandbox-moca-token"


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Env:
    """The environment of a user: the test's database, the sandbox's MOCO key, no COLUMNS."""
    environ = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
    home = tmp_path / "home"
    home.mkdir()
    return {
        **environ,
        "SYNCER_DATABASE_URL": db_url,
        "MOCO_API_KEY": SANDBOX_KEY,
        "SYNCER_HOME": str(home),
    }


def write_all(tmp_path: Path, sandbox: RunningSandbox) -> Path:
    """MOCO, MOCA and MoEngage, each at its sandbox."""
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[sources.moco]
type = "moco"
base_url = "{sandbox.moco_base_url}"
api_key_env = "MOCO_API_KEY"
streams = ["projects", "activities"]

[sources.moca]
type = "moca"
base_url = "{sandbox.moca_base_url}"
token_env = "MOCA_API_TOKEN"

[destinations.moengage]
type = "moengage"
base_url = "{sandbox.moengage_base_url}"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"
"""
    )
    return path


def all_env(env: Env, sandbox: RunningSandbox) -> Env:
    return {
        **env,
        "MOCA_API_TOKEN": MOCA_TOKEN,
        "MOENGAGE_WORKSPACE_ID": sandbox.moengage.settings.workspace_id,
        "MOENGAGE_API_KEY": sandbox.moengage.settings.api_key,
    }


async def check_json(config: Path, env: Env, cwd: Path) -> tuple[int, dict[str, Any]]:
    ran = await syncer("check", "--json", "--config", config, env=env, cwd=cwd)
    assert "Traceback" not in ran.output, ran.stderr
    document = orjson.loads(ran.stdout)  # one document, nothing else
    assert document["exit_code"] == ran.code
    return ran.code, {row["check"]: row for row in document["checks"]}


async def test_everything_reachable_is_all_ticks_and_exit_0(
    env: Env, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    config = write_all(tmp_path, sandbox)
    environ = all_env(env, sandbox)
    code, rows = await check_json(config, environ, tmp_path)
    assert code == 0, rows
    assert list(rows) == [
        "configuration",
        "database",
        "migrations",
        "source moco",
        "source moca",
        "destination moengage",
    ]
    assert {name: row["status"] for name, row in rows.items()} == {
        "configuration": "ok",
        "database": "ok",
        "migrations": "ok",
        "source moco": "ok",
        "source moca": "ok",
        "destination moengage": "not_checked",
    }
    assert "PostgreSQL" in rows["database"]["detail"]
    assert head_revision() in rows["migrations"]["detail"]
    assert "MoEngage" in rows["destination moengage"]["detail"]
    table = await syncer("check", "--config", config, env=environ, cwd=tmp_path)
    assert table.code == 0, table
    assert table.stdout.count("✓") == 5
    assert "✗" not in table.stdout


async def test_a_wrong_moco_key_is_a_cross_naming_the_fix_and_exit_1(
    env: Env, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    config = write_all(tmp_path, sandbox)
    environ = {**all_env(env, sandbox), "MOCO_API_KEY": WRONG_KEY}
    code, rows = await check_json(config, environ, tmp_path)
    assert code == 1
    moco = rows["source moco"]
    assert moco["status"] == "failed"
    assert "401" in moco["detail"]
    assert "MOCO_API_KEY" in moco["fix"]
    assert rows["source moca"]["status"] == "ok"  # the others are still checked
    table = await syncer("check", "--config", config, env=environ, cwd=tmp_path)
    assert table.code == 1
    assert "✗" in table.stdout
    assert "MOCO_API_KEY" in table.stdout
    assert table.stderr.startswith("error: 1 of 6 checks failed (source moco)")
    assert len(table.stderr.splitlines()) == 1
    assert WRONG_KEY not in table.output


async def test_an_unset_variable_is_a_cross_not_a_usage_error(
    env: Env, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    config = write_all(tmp_path, sandbox)
    environ = {k: v for k, v in all_env(env, sandbox).items() if k != "MOCA_API_TOKEN"}
    environ.pop("MOENGAGE_API_KEY")
    code, rows = await check_json(config, environ, tmp_path)
    assert code == 1
    assert rows["source moca"]["status"] == "failed"
    assert "MOCA_API_TOKEN is not set" in rows["source moca"]["detail"]
    assert "export it" in rows["source moca"]["fix"]
    assert rows["destination moengage"]["status"] == "failed"
    assert "MOENGAGE_API_KEY" in rows["destination moengage"]["detail"]
    assert rows["source moco"]["status"] == "ok"


async def test_an_unreachable_database_is_a_cross(
    env: Env, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    config = write_all(tmp_path, sandbox)
    dead = f"postgresql://postgres@127.0.0.1:{closed_port()}/syncer"
    environ = {**all_env(env, sandbox), "SYNCER_DATABASE_URL": dead}
    code, rows = await check_json(config, environ, tmp_path)
    assert code == 1
    assert rows["database"]["status"] == "failed"
    assert "cannot connect" in rows["database"]["detail"]
    assert rows["database"]["fix"]
    assert rows["migrations"]["status"] == "not_checked"
    assert rows["source moco"]["status"] == "ok"


async def test_check_reports_the_migration_state_and_never_migrates(
    env: Env, sandbox: RunningSandbox, tmp_path: Path, db_url: str, pg_admin_url: str
) -> None:
    config = write_all(tmp_path, sandbox)
    environ = all_env(env, sandbox)
    conn = await asyncpg.connect(db_url)
    try:
        await conn.execute("update syncer.alembic_version set version_num = '9999'")
        code, rows = await check_json(config, environ, tmp_path)
        assert code == 1
        assert rows["migrations"]["status"] == "failed"
        assert "9999" in rows["migrations"]["detail"]
        assert "upgrade syncer" in rows["migrations"]["fix"]
        assert await conn.fetchval("select version_num from syncer.alembic_version") == "9999"
    finally:
        await conn.close()

    admin = await asyncpg.connect(pg_admin_url)
    name = f"empty_{tmp_path.name[-12:].lower().replace('-', '_')}"
    await admin.execute(f'create database "{name}"')
    try:
        empty = with_database(pg_admin_url, name)
        code, rows = await check_json(config, {**environ, "SYNCER_DATABASE_URL": empty}, tmp_path)
        assert code == 0, rows
        assert "next command migrates" in rows["migrations"]["detail"]
        conn = await asyncpg.connect(empty)
        try:
            assert await conn.fetchval("select to_regclass('syncer.alembic_version')") is None
        finally:
            await conn.close()
    finally:
        await admin.execute(f'drop database if exists "{name}" with (force)')
        await admin.close()
