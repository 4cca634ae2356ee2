"""``--json``: one JSON document on stdout with the documented fields, nothing else.

Every command that runs something is run as a user runs it (a real subprocess against the
sandboxes and PostgreSQL); its stdout must parse as exactly one JSON document whose figures agree
with the warehouse and the sandbox. The fields are those of docs/operations.md, "JSON output".
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import RunningSandbox
from tests.conftest import CLASSIC_STREAMS as MOCO_STREAMS
from tests.conftest import SANDBOX_KEY
from tests.integration.test_cli import Env, Ran, syncer

COMMON = {"command", "outcome", "exit_code", "errors", "warnings", "elapsed_s"}
REQUESTS = {"requests", "retries", "rate_limited", "waited_s"}
SYNC_STREAM = {
    "stream",
    "outcome",
    "pages",
    "requests",
    "records",
    "changed",
    "deleted",
    "rejected",
    "resumed_after_pages",
    "error",
}
SWEEP_STREAM = {
    "stream",
    "outcome",
    "checked",
    "requests",
    "deleted",
    "restored",
    "withheld",
    "error",
}


@pytest.fixture
def env(db_url: str, tmp_path: Path, sandbox: RunningSandbox) -> Env:
    home = tmp_path / "home"
    home.mkdir()
    return {
        **{k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")},
        "SYNCER_DATABASE_URL": db_url,
        "SYNCER_HOME": str(home),
        "MOCO_API_KEY": SANDBOX_KEY,
        "MOENGAGE_WORKSPACE_ID": sandbox.moengage.settings.workspace_id,
        "MOENGAGE_API_KEY": sandbox.moengage.settings.api_key,
    }


def write_config(tmp_path: Path, sandbox: RunningSandbox) -> Path:
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

[destinations.moengage]
type = "moengage"
base_url = "{sandbox.moengage_base_url}"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"

[[jobs]]
id = "moco"
run = "sync moco --stream projects"
every = "15m"
"""
    )
    return path


def one_document(ran: Ran, code: int, command: str) -> dict[str, Any]:
    """stdout is exactly one JSON object (orjson refuses anything around it)."""
    assert ran.code == code, ran
    assert "Traceback" not in ran.output, ran.stderr
    document: dict[str, Any] = orjson.loads(ran.stdout)
    assert set(document) >= COMMON, sorted(document)
    assert document["command"] == command
    assert document["exit_code"] == code
    assert isinstance(document["elapsed_s"], float | int)
    return document


async def test_every_command_prints_one_document_with_the_documented_figures(
    env: Env, sandbox: RunningSandbox, moco: MocoSandbox, tmp_path: Path, pool: Any
) -> None:
    moco.settings = replace(moco.settings, rate_limit_requests=1000, rate_limit_window_s=1.0)
    config = write_config(tmp_path, sandbox)

    async def run(*args: str) -> Ran:
        return await syncer(
            *args, "--json", "--config", config, env=env, cwd=tmp_path, timeout_s=120
        )

    sync = one_document(await run("sync", "moco"), 0, "sync")
    assert sync["outcome"] == "succeeded"
    assert sync["source"] == "moco"
    assert sync["run_id"] == await pool.fetchval("select max(id) from syncer.runs")
    assert set(sync) >= REQUESTS
    assert [s["stream"] for s in sync["streams"]] == list(MOCO_STREAMS)
    for s in sync["streams"]:
        assert set(s) == SYNC_STREAM
        stored = await pool.fetchval(f"select count(*) from moco.{s['stream']}")
        assert (s["outcome"], s["changed"]) == ("succeeded", stored)
        assert s["records"] >= stored  # records read; a page may be read twice, never stored so
    assert sync["requests"] == sum(s["requests"] for s in sync["streams"])
    assert sync["requests"] == len(moco.requests)
    assert sync["errors"] == []

    sweep = one_document(await run("sweep", "moco", "--stream", "projects"), 0, "sweep")
    assert set(sweep) >= REQUESTS
    (projects,) = sweep["streams"]
    assert set(projects) == SWEEP_STREAM
    assert projects["checked"] == await pool.fetchval("select count(*) from moco.projects")
    assert (projects["deleted"], sweep["outcome"]) == (0, "succeeded")

    backfill = one_document(
        await run("backfill", "moco", "--stream", "projects", "--since", "2020-01-01"),
        0,
        "backfill",
    )
    assert {
        "source",
        "stream",
        "backfill_id",
        "windows",
        "pages",
        "records",
        "changed",
        "rejected",
    } | REQUESTS <= set(backfill)
    assert backfill["outcome"] == "succeeded"
    windows = backfill["windows"]
    assert windows["total"] == windows["done"] + windows["skipped"] > 0
    assert backfill["records"] >= len(moco.data.records("projects"))  # each window reads on
    assert backfill["pages"] > 0
    assert backfill["requests"] >= backfill["pages"]

    load = one_document(await run("load", "moengage", "--only", "users"), 0, "load")
    assert {
        "destination",
        "run_id",
        "dry_run",
        "models",
        "requests",
        "bytes",
        "dead_letters",
        "rate_limited",
        "server_errors",
    } <= set(load)
    assert load["outcome"] == "succeeded"
    assert load["models"]["users"]["sent"] == len(sandbox.moengage.users) > 0
    assert load["requests"] == len(sandbox.moengage.requests)

    once = one_document(await run("run", "--once"), 0, "run")
    assert once["outcome"] == "succeeded"
    assert [(j["job"], j["outcome"]) for j in once["jobs"]] == [("moco", "succeeded")]

    check = one_document(await run("check"), 0, "check")
    assert {r["check"]: r["status"] for r in check["checks"]}["source moco"] == "ok"


async def test_a_failure_is_a_document_too_and_one_error_line(
    env: Env, sandbox: RunningSandbox, tmp_path: Path, pool: Any
) -> None:
    config = write_config(tmp_path, sandbox)
    wrong = {**env, "MOCO_API_KEY": "wrong-key-json"}
    failed = await syncer(
        "sync",
        "moco",
        "--stream",
        "projects",
        "--json",
        "--config",
        config,
        env=wrong,
        cwd=tmp_path,
    )
    document = one_document(failed, 1, "sync")
    assert document["outcome"] == "failed"
    assert document["streams"][0]["outcome"] == "failed"
    assert "MOCO_API_KEY" in document["errors"][0]
    assert failed.stderr.startswith("error: ")
    assert "wrong-key-json" not in failed.output

    unknown = await syncer("sync", "nosuch", "--json", "--config", config, env=env, cwd=tmp_path)
    document = one_document(unknown, 2, "sync")
    assert document["outcome"] == "usage_error"
    assert "nosuch" in document["errors"][0]
    assert len(unknown.stderr.splitlines()) == 1

    daemon = await syncer("run", "--json", "--config", config, env=env, cwd=tmp_path)
    assert one_document(daemon, 2, "run")["errors"][0].endswith(
        "--json needs --once: the daemon logs each job instead of a summary"
    )
    assert await pool.fetchval("select count(*) from syncer.runs where outcome = 'failed'") == 1
