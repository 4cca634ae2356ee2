"""``syncer load`` as a user runs it: real subprocesses, the MoEngage sandbox, real PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson
import pytest

from syncer.sandbox.server import RunningSandbox
from tests.integration.test_cli import Env, assert_one_error_line, syncer

MOE_KEY = "moe-key-4b2e9d"  # distinctive, so that finding it in the output means a leak


@pytest.fixture
def moe_env(db_url: str, tmp_path: Path, sandbox: RunningSandbox) -> Env:
    return {
        **os.environ,
        "SYNCER_DATABASE_URL": db_url,
        "SYNCER_HOME": str(tmp_path / "home"),
        "MOENGAGE_WORKSPACE_ID": sandbox.moengage.settings.workspace_id,
        "MOENGAGE_API_KEY": sandbox.moengage.settings.api_key,
    }


def write(tmp_path: Path, sandbox: RunningSandbox, users_sql: str | None = None) -> Path:
    path = tmp_path / "schedules.toml"
    text = f"""
[destinations.moengage]
type = "moengage"
base_url = "{sandbox.moengage_base_url}"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"
"""
    if users_sql:
        text += f'[destinations.moengage.users]\nsql = "{users_sql}"\n'
    path.write_text(text)
    return path


async def people(pool: Any) -> None:
    await pool.execute(
        "create table people as select g as id, jsonb_build_object('n', g) as attributes"
        " from generate_series(1, 50) g"
    )


PEOPLE = "select 'p-' || id as customer_id, attributes from people"


async def test_a_dry_run_then_a_load_then_status(
    pool: Any, sandbox: RunningSandbox, moe_env: Env, tmp_path: Path
) -> None:
    await people(pool)
    config = write(tmp_path, sandbox, PEOPLE)
    out = tmp_path / "bodies"
    dry = await syncer(
        "load",
        "moengage",
        "--dry-run",
        out,
        "--only",
        "users",
        "--config",
        config,
        env=moe_env,
        cwd=tmp_path,
    )
    assert dry.code == 0, dry
    assert "would send" in dry.stdout
    assert len(list(out.glob("body-*.json"))) == 1
    assert sandbox.moengage.requests == []
    ran = await syncer("load", "moengage", "--config", config, env=moe_env, cwd=tmp_path)
    assert ran.code == 0, ran
    assert len(sandbox.moengage.users) == 50
    status = await syncer("status", "--json", "--config", config, env=moe_env, cwd=tmp_path)
    assert status.code == 0, status
    models = {m["model"]: m for m in orjson.loads(status.stdout)["destinations"]["moengage"]}
    assert (models["users"]["sent"], models["users"]["pending"]) == (50, 0)


async def test_wrong_credentials_end_with_one_message_and_exit_1(
    pool: Any, sandbox: RunningSandbox, moe_env: Env, tmp_path: Path
) -> None:
    await people(pool)
    config = write(tmp_path, sandbox, PEOPLE)
    ran = await syncer(
        "load",
        "moengage",
        "--config",
        config,
        env={**moe_env, "MOENGAGE_API_KEY": MOE_KEY},
        cwd=tmp_path,
    )
    assert_one_error_line(ran, 1, "MOENGAGE_API_KEY", "401")
    assert MOE_KEY not in ran.output
    assert sandbox.moengage.settings.workspace_id not in ran.output


async def test_a_model_sql_error_is_a_configuration_error_naming_the_model(
    pool: Any, sandbox: RunningSandbox, moe_env: Env, tmp_path: Path
) -> None:
    config = write(tmp_path, sandbox, "select customer_id from nowhere")
    ran = await syncer("load", "moengage", "--config", config, env=moe_env, cwd=tmp_path)
    assert_one_error_line(ran, 2, "destinations.moengage.users.sql", "nowhere")
    assert await pool.fetchval("select count(*) from syncer.runs") == 0
