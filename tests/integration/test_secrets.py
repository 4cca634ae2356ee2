"""Each command needs only its own secrets: a real subprocess, the sandbox, real PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from syncer.sandbox.server import RunningSandbox
from tests.conftest import SANDBOX_KEY
from tests.integration.test_cli import assert_one_error_line, syncer


def write_all(tmp_path: Path, sandbox: RunningSandbox) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[sources.moco]
type = "moco"
base_url = "{sandbox.moco_base_url}"
api_key_env = "MOCO_API_KEY"
streams = ["projects"]

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


async def test_sync_moco_runs_with_only_its_key_and_load_names_what_it_lacks(
    db_url: str, pool: Any, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    config = write_all(tmp_path, sandbox)
    secrets = ("MOCO_API_KEY", "MOCA_API_TOKEN", "MOENGAGE_WORKSPACE_ID", "MOENGAGE_API_KEY")
    bare = {k: v for k, v in os.environ.items() if k not in (*secrets, "SYNCER_CONFIG")}
    bare |= {"SYNCER_DATABASE_URL": db_url, "SYNCER_HOME": str(tmp_path / "home")}

    only_moco = {**bare, "MOCO_API_KEY": SANDBOX_KEY}
    synced = await syncer("sync", "moco", "--config", config, env=only_moco, cwd=tmp_path)
    assert synced.code == 0, synced
    assert await pool.fetchval("select count(*) from moco.projects") > 0

    load = await syncer("load", "moengage", "--config", config, env=only_moco, cwd=tmp_path)
    assert load.code == 2, load
    assert "MOENGAGE_WORKSPACE_ID is not set" in load.stderr
    assert "MOENGAGE_API_KEY is not set" in load.stderr
    assert "MOCA_API_TOKEN" not in load.stderr  # only what load touches
    moca = await syncer("sync", "moca", "--config", config, env=only_moco, cwd=tmp_path)
    assert_one_error_line(moca, 2, "MOCA_API_TOKEN is not set", "export it")
    assert await pool.fetchval("select count(*) from syncer.runs") == 1  # the MOCO sync only

    for command in (["status"], ["migrate"]):  # need no secret at all
        ran = await syncer(*command, "--config", config, env=bare, cwd=tmp_path)
        assert ran.code == 0, ran
