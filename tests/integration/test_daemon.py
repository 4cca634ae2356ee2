"""``syncer run``: real daemon processes, real PostgreSQL, the sandbox on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import socket
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import aiohttp
import pytest

from syncer.configfile import load_settings
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import RunningSandbox
from syncer.warehouse import ensure_schema
from tests.conftest import SANDBOX_KEY, wait_for_dead_sessions
from tests.integration.test_cli import syncer
from tests.integration.test_moco_sync import assert_tables_equal_source
from tests.unit.test_observability import parse_exposition


def config(tmp_path: Path, sandbox: RunningSandbox, *, rate: str, jobs: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[sources.moco]
type = "moco"
base_url = "{sandbox.moco_base_url}"
api_key_env = "MOCO_API_KEY"
streams = ["activities", "projects", "companies", "contacts",
    "users", "invoices", "offers", "deals"]
rate_limit = {rate}
concurrency = 2
{jobs}
"""
    )
    return path


def environment(db_url: str, tmp_path: Path, key: str = SANDBOX_KEY) -> dict[str, str]:
    return {
        **os.environ,
        "SYNCER_DATABASE_URL": db_url,
        "MOCO_API_KEY": key,
        "SYNCER_HOME": str(tmp_path / "home"),
    }


async def start(path: Path, env: dict[str, str], *extra: str) -> asyncio.subprocess.Process:
    # The daemon logs every page at INFO: to a file, since an unread pipe would fill and block it.
    with (path.parent / f"daemon-{time.monotonic_ns()}.log").open("wb") as log:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "syncer",
            "run",
            "--config",
            str(path),
            *extra,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=log,
        )


async def job_runs(pool: Any) -> list[Any]:
    return list(
        await pool.fetch(
            "select id, pid, started_at, finished_at, outcome from syncer.runs"
            " where command like 'job %' order by started_at"
        )
    )


async def test_two_replicas_never_run_a_job_at_once_and_share_the_rate_limit(
    db_url: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, tmp_path: Path
) -> None:
    moco.settings = replace(moco.settings, rate_limit_requests=20, rate_limit_window_s=1.0)
    path = config(
        tmp_path,
        sandbox,
        rate="{ requests = 20, per_seconds = 1 }",
        jobs='[[jobs]]\nid = "moco-full"\nrun = "sync moco --full-refresh"\nevery = "1s"\n',
    )
    env = environment(db_url, tmp_path)
    replicas = [await start(path, env), await start(path, env)]
    async with asyncio.timeout(120):  # startup is slow on a loaded machine: count runs, not time
        while len([r for r in await job_runs(pool) if r["outcome"] == "succeeded"]) < 3:
            await asyncio.sleep(0.2)
    for replica in replicas:
        replica.send_signal(signal.SIGTERM)
    codes = [await asyncio.wait_for(r.wait(), 15) for r in replicas]
    assert codes == [0, 0]
    runs = await job_runs(pool)
    assert len(runs) >= 3
    assert len({r["pid"] for r in runs}) >= 1
    # Never two at once: each run ended before the next began.
    for earlier, later in itertools.pairwise(runs):
        assert earlier["finished_at"] is not None
        assert earlier["finished_at"] <= later["started_at"]
    statuses = [r.status for r in moco.requests]
    assert 429 not in statuses  # the two replicas shared one rate limit
    # No speed assertion: on a loaded machine a run's request rate says nothing of pacing.


async def test_a_replica_killed_mid_job_leaves_the_job_to_the_other(
    db_url: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, tmp_path: Path
) -> None:
    path = config(
        tmp_path,
        sandbox,
        rate="{ requests = 15, per_seconds = 1 }",
        jobs='[[jobs]]\nid = "moco"\nrun = "sync moco"\nevery = "2s"\n',
    )
    env = environment(db_url, tmp_path)
    first = await start(path, env)
    async with asyncio.timeout(30):
        while not [r for r in await job_runs(pool) if r["outcome"] == "running"]:
            await asyncio.sleep(0.05)
    second = await start(path, env)
    await asyncio.sleep(1.0)
    first.send_signal(signal.SIGKILL)
    await first.wait()
    async with asyncio.timeout(60):
        while True:
            runs = await job_runs(pool)
            done = [r for r in runs if r["pid"] == second.pid and r["outcome"] == "succeeded"]
            if done:
                break
            await asyncio.sleep(0.1)
    second.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(second.wait(), 15) == 0
    await assert_tables_equal_source(pool, moco)
    outcomes = {r["pid"]: r["outcome"] for r in await job_runs(pool) if r["pid"] == first.pid}
    assert set(outcomes.values()) <= {"interrupted", "succeeded"}


async def test_sigterm_during_a_sync_commits_the_page_exits_0_and_the_next_start_resumes(
    db_url: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, tmp_path: Path
) -> None:
    path = config(
        tmp_path,
        sandbox,
        rate="{ requests = 5, per_seconds = 1 }",
        jobs='[[jobs]]\nid = "moco"\nrun = "sync moco --stream activities"\nevery = "1h"\n',
    )
    env = environment(db_url, tmp_path)
    daemon = await start(path, env)
    async with asyncio.timeout(30):
        while await pool.fetchval("select coalesce(sum(pages), 0) from syncer.stream_runs") < 4:
            await asyncio.sleep(0.05)
    signalled = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.wait(), 15) == 0
    assert time.monotonic() - signalled < 10
    await wait_for_dead_sessions(pool)
    stream = await pool.fetchrow("select walk from syncer.streams where stream = 'activities'")
    assert stream["walk"] is not None  # the walk in progress is kept
    stored = await pool.fetchval("select count(*) from moco.activities")
    pages = await pool.fetchval("select sum(pages) from syncer.stream_runs")
    assert stored > 0
    assert pages >= 4
    run = (await job_runs(pool))[-1]
    assert run["outcome"] == "interrupted"
    once = await syncer("run", "--once", "--config", path, env=env, cwd=tmp_path, timeout_s=120)
    assert once.code == 0, once
    resumed = await pool.fetchval(
        "select resumed_after_pages from syncer.stream_runs order by started_at desc limit 1"
    )
    assert resumed is not None
    assert resumed >= 4


async def test_run_once_exits_1_when_a_job_failed_and_0_when_all_succeeded(
    db_url: str, pool: Any, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    path = config(
        tmp_path,
        sandbox,
        rate="{ requests = 1000, per_seconds = 1 }",
        jobs='[[jobs]]\nid = "moco"\nrun = "sync moco"\nevery = "15m"\n',
    )
    failed = await syncer(
        "run",
        "--once",
        "--config",
        path,
        env=environment(db_url, tmp_path, "wrong"),
        cwd=tmp_path,
    )
    assert failed.code == 1, failed
    assert "MOCO_API_KEY" in failed.stderr
    ok = await syncer(
        "run", "--once", "--config", path, env=environment(db_url, tmp_path), cwd=tmp_path
    )
    assert ok.code == 0, ok


@pytest.mark.parametrize(
    ("job", "fact"),
    [
        ('id = "a"\nrun = "sync moco"\ncron = "61 * * * *"', "jobs[0].cron"),
        ('id = "a"\nrun = "sync moco"\ncron = "0 * * * *"\ntimezone = "Mars/Base"', "Mars/Base"),
        ('id = "a"\nrun = "fetch moco"\nevery = "1m"', "jobs[0].run"),
        ('id = "a"\nrun = "sync moco --bogus"\nevery = "1m"', "jobs (a)"),
    ],
)
async def test_a_bad_job_is_a_configuration_error_naming_it(
    job: str, fact: str, db_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    path = config(
        tmp_path, sandbox, rate="{ requests = 10, per_seconds = 1 }", jobs=f"[[jobs]]\n{job}\n"
    )
    ran = await syncer(
        "run", "--once", "--config", path, env=environment(db_url, tmp_path), cwd=tmp_path
    )
    assert ran.code == 2, ran
    assert fact in ran.stderr
    assert "Traceback" not in ran.stderr


async def test_duplicate_job_ids_are_a_configuration_error(
    db_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    jobs = '[[jobs]]\nid = "a"\nrun = "sync moco"\nevery = "1m"\n' * 2
    path = config(tmp_path, sandbox, rate="{ requests = 10, per_seconds = 1 }", jobs=jobs)
    ran = await syncer(
        "run", "--once", "--config", path, env=environment(db_url, tmp_path), cwd=tmp_path
    )
    assert ran.code == 2
    assert 'job id "a"' in ran.stderr


async def test_the_daemon_serves_healthz_and_prometheus_metrics(
    db_url: str, pool: Any, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    import socket

    import aiohttp

    from tests.unit.test_observability import parse_exposition

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = config(
        tmp_path,
        sandbox,
        rate="{ requests = 1000, per_seconds = 1 }",
        jobs='[[jobs]]\nid = "moco"\nrun = "sync moco"\nevery = "1h"\n',
    )
    daemon = await start(path, environment(db_url, tmp_path), "--metrics-port", str(port))
    try:
        async with asyncio.timeout(60):
            while not [r for r in await job_runs(pool) if r["outcome"] == "succeeded"]:
                await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as health:
                assert health.status == 200
            async with session.get(f"http://127.0.0.1:{port}/metrics") as metrics:
                assert metrics.status == 200
                text = await metrics.text()
    finally:
        daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 15) == 0
    families = parse_exposition(text)
    assert "syncer_runs_total" in families
    assert "syncer_records_fetched_total" in families
    assert SANDBOX_KEY not in text


async def test_a_second_signal_exits_at_once(
    db_url: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, tmp_path: Path
) -> None:
    moco.faults.slow_next = 1000
    moco.faults.slow_s = 5.0  # every request takes 5 s: the first signal's wait would be long
    path = config(
        tmp_path,
        sandbox,
        rate="{ requests = 100, per_seconds = 1 }",
        jobs='[[jobs]]\nid = "moco"\nrun = "sync moco"\nevery = "1h"\n',
    )
    daemon = await start(path, environment(db_url, tmp_path))
    async with asyncio.timeout(30):
        while not moco.requests:  # a request is in flight (the sandbox holds it 5 s)
            await asyncio.sleep(0.01)
    daemon.send_signal(signal.SIGTERM)
    await asyncio.sleep(0.3)
    assert daemon.returncode is None  # still finishing the requests in flight
    signalled = time.monotonic()
    daemon.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(daemon.wait(), 5) == 130
    assert time.monotonic() - signalled < 2


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """A TCP server that accepts connections and never answers; its port."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the client goes away; nothing is ever sent back

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def job_fires(pool: Any, job: str) -> list[Any]:
    return list(
        await pool.fetch("select * from syncer.job_fires where job_id = $1 order by fire_time", job)
    )


async def test_a_job_that_hangs_is_cancelled_at_its_timeout_while_another_keeps_running(
    db_url: str, pool: Any, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    async with silent_server() as port:
        # MOCO answers nothing (its request timeout is longer than the job's); MOCA works.
        path = tmp_path / "schedules.toml"
        path.write_text(
            f"""
[sources.moco]
type = "moco"
base_url = "http://127.0.0.1:{port}/api/v1"
api_key_env = "MOCO_API_KEY"
streams = ["activities", "projects", "companies", "contacts",
    "users", "invoices", "offers", "deals"]
timeout = "10m"

[sources.moca]
type = "moca"
base_url = "{sandbox.moca_base_url}"
token_env = "MOCA_API_TOKEN"

[[jobs]]
id = "hang"
run = "sync moco --stream projects"
every = "1h"
timeout = "5s"

[[jobs]]
id = "moca"
run = "sync moca --stream apps"
every = "2s"
"""
        )
        env = {**environment(db_url, tmp_path), "MOCA_API_TOKEN": "sandbox-moca-token"}
        # The job's time goes to its run, not to the first use's provisioning of MOCO's
        # tables (a second or more on a loaded machine): the run's row must be in before
        # the timeout for the last assertion to mean something.
        async with pool.acquire() as conn:
            await ensure_schema(conn, load_settings(path, env).source("moco"))
        metrics_port = free_port()
        daemon = await start(
            path, env, "--metrics-port", str(metrics_port), "--metrics-host", "127.0.0.1"
        )
        try:
            async with asyncio.timeout(90):
                while True:
                    hung = [f for f in await job_fires(pool, "hang") if f["finished_at"]]
                    after = [
                        f
                        for f in await job_fires(pool, "moca")
                        if hung
                        and f["outcome"] == "succeeded"
                        and f["claimed_at"] > hung[0]["finished_at"]
                    ]
                    if after:
                        break
                    await asyncio.sleep(0.2)
            # Its locks are released while the daemon goes on: no advisory lock named "hang"
            # (the job's) or "moco" (the source's sync).
            locks = await pool.fetchval(
                "select count(*) from pg_locks where locktype = 'advisory'"
                " and database = (select oid from pg_database where datname = current_database())"
                " and objid::bigint in (hashtext('hang')::bigint & 4294967295,"
                " hashtext('moco')::bigint & 4294967295)"
            )
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response,
            ):
                text = await response.text()
        finally:
            with contextlib.suppress(ProcessLookupError):
                daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 30) == 0
    assert [(f["outcome"], f["error"]) for f in hung] == [
        ("failed", "timed out after 5s; raise the job's timeout if its runs need longer")
    ]
    assert locks == 0
    moca_fires = await job_fires(pool, "moca")
    assert all(f["outcome"] == "succeeded" for f in moca_fires if f["finished_at"])
    # The cancelled run was closed, not left "running".
    run = await pool.fetchrow(
        "select outcome, error from syncer.runs where command like 'job hang:%'"
    )
    assert (run["outcome"], run["error"]) == (
        "interrupted",
        "cancelled before it finished (by its daemon job's timeout)",
    )
    families = parse_exposition(text)
    timeouts = families["syncer_job_timeouts_total"]
    assert timeouts.value("syncer_job_timeouts_total", job_id="hang") == 1
    assert timeouts.value("syncer_job_timeouts_total", job_id="moca") == 0
    runs = families["syncer_runs_total"]
    assert runs.value("syncer_runs_total", job_id="hang", outcome="failed") == 1


class Proxy:
    """A TCP proxy to PostgreSQL that the test can cut (every connection dropped, new ones
    refused) and restore, as a database that goes away and comes back."""

    def __init__(self, db_url: str) -> None:
        parts = urlsplit(db_url)
        socket_dir = parse_qs(parts.query).get("host", [""])[0]
        port = parts.port or 5432
        # The embedded server listens on a Unix socket (?host=/dir), others on TCP.
        self.unix = f"{socket_dir}/.s.PGSQL.{port}" if socket_dir.startswith("/") else None
        self.target = (parts.hostname or "127.0.0.1", port)
        userinfo = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        self._parts = parts
        self._userinfo = userinfo
        self.open = True
        self.writers: set[asyncio.StreamWriter] = set()
        self.server: asyncio.Server | None = None

    def url(self, port: int) -> str:
        """``db_url`` through the proxy listening on ``port``."""
        return urlunsplit(
            self._parts._replace(netloc=f"{self._userinfo}127.0.0.1:{port}", query="")
        )

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._client, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.open:
            writer.close()
            return
        try:
            if self.unix is not None:
                up_reader, up_writer = await asyncio.open_unix_connection(self.unix)
            else:
                up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (OSError, asyncio.CancelledError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self.writers -= {writer, up_writer}

    def cut(self) -> None:
        self.open = False
        for writer in list(self.writers):
            writer.transport.abort()

    def restore(self) -> None:
        self.open = True

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def healthz(session: aiohttp.ClientSession, port: int) -> tuple[int, dict[str, Any]]:
    try:
        async with session.get(
            f"http://127.0.0.1:{port}/healthz", timeout=aiohttp.ClientTimeout(total=5)
        ) as response:
            return response.status, await response.json()
    except (aiohttp.ClientError, TimeoutError):
        return 0, {}


async def test_healthz_is_503_while_the_database_is_unreachable_and_200_once_it_is_back(
    db_url: str, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    proxy = Proxy(db_url)
    proxied = proxy.url(await proxy.start())
    path = config(
        tmp_path,
        sandbox,
        rate="{ requests = 1000, per_seconds = 1 }",
        jobs='[[jobs]]\nid = "moco"\nrun = "sync moco --stream projects"\nevery = "1h"\n',
    )
    port = free_port()
    daemon = await start(path, environment(proxied, tmp_path), "--metrics-port", str(port))
    try:
        async with aiohttp.ClientSession() as session:

            async def until(status: int) -> dict[str, Any]:
                async with asyncio.timeout(60):
                    while True:
                        got, body = await healthz(session, port)
                        if got == status:
                            return body
                        await asyncio.sleep(0.2)

            assert await until(200) == {"status": "ok"}
            proxy.cut()
            down = await until(503)
            assert down["status"] == "unavailable"
            assert "database" in down["reason"]
            proxy.restore()
            assert await until(200) == {"status": "ok"}
    finally:
        with contextlib.suppress(ProcessLookupError):
            daemon.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(daemon.wait(), 30) == 0
        await proxy.close()
    # While the database was away, each failed reconnect was one line naming its cause.
    log = await asyncio.to_thread(
        lambda: "".join(p.read_text() for p in tmp_path.glob("daemon-*.log"))
    )
    assert "Traceback" not in log, log


async def test_busy_ticks_are_skips_and_after_two_the_next_tick_waits_for_the_work_and_runs(
    db_url: str, pool: Any, sandbox: RunningSandbox, moco: MocoSandbox, tmp_path: Path
) -> None:
    path = config(
        tmp_path,
        sandbox,
        rate="{ requests = 1000, per_seconds = 1 }",
        jobs='[[jobs]]\nid = "projects"\nrun = "sync moco --stream projects"\nevery = "1s"\n',
    )
    env = environment(db_url, tmp_path)
    # Another run holds the work: a one-off sync of the same stream whose first request the
    # sandbox keeps for 10 minutes.
    moco.faults.slow_next, moco.faults.slow_s = 1, 600.0
    with (tmp_path / "other.log").open("wb") as log:
        other = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "syncer",
            "sync",
            "moco",
            "--stream",
            "projects",
            "--config",
            str(path),
            env=env,
            stdout=log,
            stderr=log,
        )
    metrics_port = free_port()
    daemon: asyncio.subprocess.Process | None = None
    try:
        async with asyncio.timeout(60):
            while not moco.requests:
                await asyncio.sleep(0.05)
        daemon = await start(path, env, "--metrics-port", str(metrics_port))
        async with asyncio.timeout(90):  # two busy ticks, then a tick that waits
            while True:
                fires = await job_fires(pool, "projects")
                busy = [f for f in fires if f["outcome"] == "busy"]
                if len(busy) >= 2 and fires[-1]["outcome"] == "running":
                    break
                await asyncio.sleep(0.1)
            # A tick is "running" from its start: free the work only once it found it busy.
            logs = sorted(path.parent.glob("daemon-*.log"))
            while "waiting for its work to be free" not in logs[-1].read_text():
                await asyncio.sleep(0.1)
        other.kill()  # the work is free
        await other.wait()
        async with asyncio.timeout(90):
            while not [f for f in await job_fires(pool, "projects") if f["outcome"] == "succeeded"]:
                await asyncio.sleep(0.1)
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{metrics_port}/metrics") as response,
        ):
            text = await response.text()
    finally:
        if other.returncode is None:
            other.kill()
            await other.wait()
        if daemon is not None:
            daemon.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(daemon.wait(), 30) == 0
    fires = await job_fires(pool, "projects")
    outcomes = [f["outcome"] for f in fires if f["finished_at"]]
    assert "failed" not in outcomes  # busy is never a failure
    first = outcomes.index("succeeded")
    assert outcomes[:first] == ["busy"] * first
    assert first >= 2
    waited = next(f for f in fires if f["outcome"] == "succeeded")
    assert waited["attempts"] > 1  # it tried again until the work was free, then ran
    assert "another" in (fires[0]["error"] or "")
    families = parse_exposition(text)
    runs = families["syncer_runs_total"]
    assert runs.value("syncer_runs_total", job_id="projects", outcome="failed") == 0
    assert runs.value("syncer_runs_total", job_id="projects", outcome="skipped") >= 2
    busy_skips = families["syncer_job_busy_skips_total"]
    assert busy_skips.value("syncer_job_busy_skips_total", job_id="projects") >= 2
    logs = await asyncio.to_thread(
        lambda: "".join(p.read_text() for p in tmp_path.glob("daemon-*.log"))
    )
    assert "projects: skipped (busy)" in logs
