"""The ``syncer`` command as a user runs it: real subprocesses, real sandbox, real PostgreSQL.

The sandbox serves from this test's event loop, so the child is awaited with asyncio (never
``subprocess.run``, which would block the loop and leave the child without an API to talk to).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest

from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import RunningSandbox
from syncer.sources.moco.catalog import CATALOG
from tests.conftest import CLASSIC_STREAMS as MOCO_STREAMS
from tests.conftest import SANDBOX_KEY

WRONG_KEY = "wrong-key-5d1c9e"  # distinctive, so that finding it in the output means a leak
DB_PASSWORD = "db-pw-8f3a71"


@dataclass(frozen=True)
class Ran:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


Env = dict[str, str]
WriteConfig = Callable[..., Path]


async def syncer(*args: str | Path, env: Env, cwd: Path, timeout_s: float = 60.0) -> Ran:
    """Run ``python -m syncer ARGS`` to the end without blocking the event loop."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        *map(str, args),
        env=env,
        cwd=cwd,
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


def assert_one_error_line(ran: Ran, code: int, *facts: str) -> None:
    """The run exited with ``code`` and said why in one ``error:`` line holding ``facts``."""
    assert ran.code == code, ran
    assert "Traceback" not in ran.output, ran.stderr
    lines = ran.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error:")]
    assert errors, ran.stderr
    for line in errors:
        for fact in facts:
            assert fact in line, (fact, line)
    assert len(lines) == 1, ran.stderr


async def moco_row_counts(pool: Any) -> dict[str, int]:
    return {s: await pool.fetchval(f"select count(*) from moco.{s}") for s in MOCO_STREAMS}


def sandbox_counts(moco: MocoSandbox) -> dict[str, int]:
    return {s: len(moco.data.records(s)) for s in MOCO_STREAMS}


def with_password(url: str, password: str) -> str:
    """``url`` with ``password`` unless it carries one already (embedded Postgres trusts)."""
    parts = urlsplit(url)
    if parts.password:
        return url
    where = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username or 'postgres'}:{password}@{where}"))


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Env:
    home = tmp_path / "home"
    home.mkdir()
    environ = dict(os.environ)
    for name in ("SYNCER_CONFIG", "COLUMNS"):  # output as piped, at rich's default width
        environ.pop(name, None)
    environ.update(
        SYNCER_DATABASE_URL=db_url,
        MOCO_API_KEY=SANDBOX_KEY,
        SYNCER_HOME=str(home),
    )
    return environ


@pytest.fixture
def write_config(tmp_path: Path, sandbox: RunningSandbox) -> WriteConfig:
    """Writes schedules.toml with one [sources.moco] at the sandbox; extra lines go in it."""

    def write(*lines: str, base_url: str | None = None) -> Path:
        path = tmp_path / "schedules.toml"
        body = [
            "[sources.moco]",
            'type = "moco"',
            f'base_url = "{base_url or sandbox.moco_base_url}"',
            'api_key_env = "MOCO_API_KEY"',
            'streams = ["activities", "projects", "companies", "contacts",',
            '    "users", "invoices", "offers", "deals"]',
            *lines,
        ]
        if not any(line.startswith("rate_limit") for line in lines):
            body.append("rate_limit = { requests = 1000, per_seconds = 1 }")
        path.write_text("\n".join(body) + "\n")
        return path

    return write


# --- failures: one line, no traceback, nothing half-written ------------------------------------


async def test_a_wrong_key_fails_naming_the_variable_and_never_shows_the_key(
    env: Env, write_config: WriteConfig, tmp_path: Path, pool: Any
) -> None:
    config = write_config("max_attempts = 2")
    ran = await syncer(
        "sync", "moco", "--config", config, env={**env, "MOCO_API_KEY": WRONG_KEY}, cwd=tmp_path
    )
    assert WRONG_KEY not in ran.output
    assert await moco_row_counts(pool) == dict.fromkeys(MOCO_STREAMS, 0)
    assert await pool.fetchval("select count(*) from syncer.streams") == 0
    run = await pool.fetchrow("select outcome, error, command from syncer.runs")
    assert run["outcome"] == "failed"
    assert WRONG_KEY not in f"{run['error']} {run['command']}"
    assert_one_error_line(ran, 1, "MOCO_API_KEY", "401")


async def test_an_unreachable_host_fails_saying_it_cannot_connect_and_naming_base_url(
    env: Env, write_config: WriteConfig, tmp_path: Path, pool: Any
) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/api/v1"
    config = write_config("max_attempts = 2", "concurrency = 8", base_url=dead)
    ran = await syncer("sync", "moco", "--config", config, env=env, cwd=tmp_path)
    assert await moco_row_counts(pool) == dict.fromkeys(MOCO_STREAMS, 0)
    assert await pool.fetchval("select count(*) from syncer.streams") == 0
    assert_one_error_line(ran, 1, "cannot connect", "base_url")


async def test_a_page_of_malformed_json_fails_its_stream_and_the_others_complete(
    env: Env, write_config: WriteConfig, tmp_path: Path, pool: Any, moco: MocoSandbox
) -> None:
    moco.faults.malformed_next = 1
    config = write_config("concurrency = 1", "max_attempts = 2")
    ran = await syncer("sync", "moco", "--config", config, env=env, cwd=tmp_path)
    counts = await moco_row_counts(pool)
    expected = sandbox_counts(moco)
    failed = [s for s in MOCO_STREAMS if counts[s] != expected[s]]
    assert len(failed) == 1, counts
    assert counts[failed[0]] == 0
    assert await pool.fetchval("select outcome from syncer.runs") == "failed"
    assert_one_error_line(ran, 1, "not valid JSON")


# --- configuration and usage errors: exit 2 before anything runs -------------------------------


async def test_invalid_configuration_values_are_reported_together_and_nothing_runs(
    env: Env, write_config: WriteConfig, tmp_path: Path, pool: Any
) -> None:
    config = write_config("rate_limit = { requests = -5, per_seconds = 1 }", "colour = 'blue'")
    ran = await syncer("sync", "moco", "--config", config, env=env, cwd=tmp_path)
    assert ran.code == 2, ran
    assert "Traceback" not in ran.output
    assert ran.stderr.startswith("error:"), ran.stderr
    # Several problems are one message: a headline, then one "  - " line per problem.
    headline, *problems = ran.stderr.splitlines()
    assert "2 problems" in headline
    assert len(problems) == 2, ran.stderr
    assert all(p.startswith("  - ") for p in problems)
    assert "sources.moco.rate_limit.requests" in ran.stderr
    assert "sources.moco.colour" in ran.stderr
    assert await pool.fetchval("select count(*) from syncer.runs") == 0


async def test_a_missing_key_or_an_unknown_stream_is_a_usage_error(
    env: Env, write_config: WriteConfig, tmp_path: Path, pool: Any
) -> None:
    config = write_config()
    no_key = {k: v for k, v in env.items() if k != "MOCO_API_KEY"}
    missing, nonsense = await asyncio.gather(
        syncer("sync", "moco", "--config", config, env=no_key, cwd=tmp_path),
        syncer("sync", "moco", "--stream", "nonsense", "--config", config, env=env, cwd=tmp_path),
    )
    assert_one_error_line(missing, 2, "MOCO_API_KEY")
    assert_one_error_line(nonsense, 2, "nonsense")
    assert await pool.fetchval("select count(*) from syncer.runs") == 0


# --- success -----------------------------------------------------------------------------------


async def test_sync_with_bad_records_succeeds_keeps_them_aside_and_status_shows_it(
    env: Env, write_config: WriteConfig, tmp_path: Path, pool: Any, moco: MocoSandbox
) -> None:
    moco.faults.bad_records_next = 1  # the first page served: activities, page 1
    config = write_config("concurrency = 1", "max_attempts = 2")
    ran = await syncer("sync", "moco", "--config", config, env=env, cwd=tmp_path)
    assert ran.code == 0, ran
    assert "Traceback" not in ran.output
    assert await moco_row_counts(pool) == sandbox_counts(moco)
    stored = {r["id"] for r in await pool.fetch("select id from moco.activities")}
    assert stored == {r["id"] for r in moco.data.records("activities")}
    rejected = await pool.fetch("select stream, reason from syncer.rejected_records order by id")
    assert [r["stream"] for r in rejected] == ["activities", "activities"]
    reasons = " | ".join(r["reason"] for r in rejected)
    assert "not a JSON object" in reasons
    assert "no integer 'id'" in reasons

    as_json, human = await asyncio.gather(
        syncer("status", "--json", "--config", config, env=env, cwd=tmp_path),
        syncer("status", "--config", config, env=env, cwd=tmp_path),
    )
    assert as_json.code == 0, as_json
    streams = {s["stream"]: s for s in orjson.loads(as_json.stdout)["streams"]}
    assert set(streams) == set(CATALOG.names)  # every stream of the type, configured or not
    assert {s for s in streams if streams[s]["configured"]} == set(MOCO_STREAMS)
    assert {s: streams[s]["rows"] for s in MOCO_STREAMS} == sandbox_counts(moco)
    assert all(streams[s]["last_run_outcome"] == "succeeded" for s in MOCO_STREAMS)
    assert {s: streams[s]["rejected"] for s in MOCO_STREAMS} == {
        s: 2 if s == "activities" else 0 for s in MOCO_STREAMS
    }
    assert human.code == 0, human
    assert "Traceback" not in human.output
    assert "moco.activities" in human.stdout


async def test_migrate_reports_the_newest_migration_without_the_password(
    env: Env, write_config: WriteConfig, tmp_path: Path, db_url: str
) -> None:
    url = with_password(db_url, DB_PASSWORD)
    password = urlsplit(url).password
    assert password
    ran = await syncer(
        "migrate", "--config", write_config(), env={**env, "SYNCER_DATABASE_URL": url}, cwd=tmp_path
    )
    assert ran.code == 0, ran
    assert "newest migration" in ran.stdout
    assert password not in ran.output


async def test_help_mentions_syncer_config(env: Env, tmp_path: Path) -> None:
    top, sync = await asyncio.gather(
        syncer("--help", env=env, cwd=tmp_path), syncer("sync", "--help", env=env, cwd=tmp_path)
    )
    for ran in (top, sync):
        assert ran.code == 0, ran
        assert "SYNCER_CONFIG" in ran.stdout
