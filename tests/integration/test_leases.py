"""Leases and lost locks: a run whose lock connection dies stops, and never overlaps the next.

The process tests terminate a run's database sessions (``pg_terminate_backend``, as a failover
or a restart does) in the middle of the run and start a second run at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import sys
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from syncer import cli
from syncer.extract.records import Row
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import RunningSandbox
from syncer.store import leases, pages, runs
from tests.conftest import SANDBOX_KEY, wait_for_dead_sessions
from tests.integration.test_crash import write_config
from tests.integration.test_moco_sync import assert_tables_equal_source
from tests.integration.test_moengage_load import (
    NO_DEVICES,
    PEOPLE,
    PURCHASES,
    limit_sandbox,
    make_people,
)

LOST = "lost the database connection that held the lock of"
OUTCOMES = "select outcome from syncer.runs order by id"


# -- the fence, in the database ------------------------------------------------------------


def page(run_id: int, row_id: int) -> pages.PageCommit:
    return pages.PageCommit(
        schema="moco",
        table="activities",
        volatile=(),
        source="moco",
        stream="activities",
        run_id=run_id,
        rows=[Row(row_id, None, f'{{"id": {row_id}}}')],
        rejected=[],
        requests=1,
        walk=None,
        watermark=None,
    )


async def start_holding(conn: Any, resource: str) -> tuple[int, leases.Fence]:
    run_id = await runs.start_run(conn, kind="sync", source="moco", command="test")
    async with conn.transaction():
        tokens, _ = await leases.take(conn, [resource], run_id)
    return run_id, leases.Fence(tokens, resource)


async def test_a_page_commit_with_a_stale_token_is_refused_and_writes_nothing(pool: Any) -> None:
    async with pool.acquire() as conn:
        old_run, old = await start_holding(conn, "sync:moco.activities")
        await runs.start_stream_run(conn, old_run, "activities", None)
        with leases.fencing(old):
            await pages.commit_page(conn, page(old_run, 1))  # its token is current: stored
        # Another run takes the stream over (the first one's lock died unnoticed).
        new_run, new = await start_holding(conn, "sync:moco.activities")
        assert new.tokens["sync:moco.activities"] == old.tokens["sync:moco.activities"] + 1
        with leases.fencing(old), pytest.raises(leases.LeaseLost, match=LOST):
            await pages.commit_page(conn, page(old_run, 2))
        assert old.lost is not None
        with leases.fencing(new):
            await pages.commit_page(conn, page(new_run, 3))
    ids = [r["id"] for r in await pool.fetch("select id from moco.activities order by id")]
    assert ids == [1, 3]
    assert (
        await pool.fetchval("select pages from syncer.stream_runs where run_id = $1", old_run) == 1
    )


async def test_a_send_in_flight_keeps_the_lease_from_being_taken_over(pool: Any) -> None:
    """While a body is in flight (``leases.holding``), a new holder cannot bump the token."""
    async with pool.acquire() as conn:
        _, fence = await start_holding(conn, "load:moengage")
    with leases.fencing(fence):
        async with leases.holding(pool):
            await leases.still_held()  # before the body is journaled: the hold begins
            async with pool.acquire() as other, other.transaction():
                await other.execute("set local lock_timeout = '300ms'")
                with pytest.raises(asyncpg.LockNotAvailableError):
                    await leases.take(other, ["load:moengage"], 0)
            await leases.still_held()  # untouched: the send may go on
    async with pool.acquire() as other, other.transaction():
        tokens, _ = await leases.take(other, ["load:moengage"], 0)  # free once the send is over
    assert tokens["load:moengage"] == fence.tokens["load:moengage"] + 1
    with leases.fencing(fence), pytest.raises(leases.LeaseLost, match=LOST):
        async with leases.holding(pool):
            await leases.still_held()  # taken over: no new body
    assert fence.lost is not None


async def test_closing_dead_runs_leaves_live_runs_of_other_streams_alone(pool: Any) -> None:
    from syncer.runframe import exclusive_run

    async with pool.acquire() as conn:
        live, _ = await start_holding(conn, "sync:moco.contacts")  # a run of another stream
        dead, _ = await start_holding(conn, "sync:moco.activities")  # died holding activities
        await runs.start_stream_run(conn, dead, "activities", None)
        await runs.start_stream_run(conn, live, "contacts", None)

    async def finish(conn: Any, frame: Any) -> None:
        await runs.finish_run(conn, frame.run_id, "succeeded", None)

    async with exclusive_run(
        pool,
        lock_class=1,
        kind="sync",
        keys=["moco.activities"],
        busy=str,
        start=lambda conn: runs.start_run(conn, kind="sync", source="moco", command="test"),
        close_dead=lambda conn, run_id, previous: runs.mark_interrupted(
            conn, kind="sync", source="moco", current_run=run_id, previous=previous
        ),
        finish=finish,
    ) as frame:
        pass
    outcomes = dict(await pool.fetch("select id, outcome from syncer.runs"))
    assert outcomes == {live: "running", dead: "interrupted", frame.run_id: "succeeded"}
    streams = dict(await pool.fetch("select run_id, outcome from syncer.stream_runs"))
    assert streams == {live: "running", dead: "interrupted"}


# -- real processes ----------------------------------------------------------------------------


async def terminate_sessions(pool: Any, child_pid: int) -> int:
    """Terminate the database sessions of the syncer process ``child_pid`` (whose run it is)."""
    running = await pool.fetch("select pid from syncer.runs where outcome = 'running'")
    assert [r["pid"] for r in running] == [child_pid]
    killed: int = await pool.fetchval(
        "select count(*) from (select pg_terminate_backend(pid) from pg_stat_activity"
        " where application_name = 'syncer' and datname = current_database()) t"
    )
    assert killed >= 1
    return killed


async def start(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "syncer",
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(proc: asyncio.subprocess.Process, timeout_s: float = 90) -> tuple[int, str]:
    async with asyncio.timeout(timeout_s):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err.decode()


# What a run says when the connection its work was using went first: the sessions are
# terminated one after another, and where the lock's still answered when the run asked, that is
# the truth (its work's connection failed; the lock went a moment later).
WORK_LOST = "error: the database failed (ConnectionDoesNotExistError: connection was closed"


def assert_stopped_with_one_line(code: int, stderr: str, what: str, verbose: bool) -> None:
    """Exit 1, one line naming why: the lock's connection lost (mostly), or, where the run's
    other connection was cut first and the lock's still answered, that one."""
    assert code == 1, stderr
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    assert f"{LOST} {what}" in errors[0] or errors[0].startswith(WORK_LOST), stderr
    if not verbose:
        assert stderr.splitlines() == errors, stderr


LOAD_CONFIG = """
[destinations.moengage]
type = "moengage"
base_url = "{base_url}"
workspace_id_env = "MOENGAGE_WORKSPACE_ID"
api_key_env = "MOENGAGE_API_KEY"
max_request_bytes = 20000
rate_limit = {{ users = 100000, events = 400, per_seconds = 0.5 }}
[destinations.moengage.users]
sql = "{people}"
[destinations.moengage.devices]
sql = "{devices}"
[destinations.moengage.events]
sql = "{events}"
"""


@pytest.mark.parametrize("verbose", [False, True])
async def test_a_load_that_loses_its_connections_stops_and_the_next_one_sends_nothing_twice(
    verbose: bool, db_url: str, pool: Any, sandbox: RunningSandbox, tmp_path: Path
) -> None:
    await make_people(pool, 300)
    await pool.execute(
        "insert into purchases select g, 1 + g % 300, now() - interval '1 hour', repeat('x', 200) "
        "from generate_series(1, 4000) g"
    )
    config = tmp_path / "schedules.toml"
    config.write_text(
        LOAD_CONFIG.format(
            base_url=sandbox.moengage_base_url,
            people=PEOPLE,
            devices=NO_DEVICES,
            events=PURCHASES,
        )
    )
    limit_sandbox(sandbox.moengage, events_per_window=400, window_s=0.5)
    env = {
        **os.environ,
        "SYNCER_DATABASE_URL": db_url,
        "MOENGAGE_WORKSPACE_ID": sandbox.moengage.settings.workspace_id,
        "MOENGAGE_API_KEY": sandbox.moengage.settings.api_key,
    }
    args = ["load", "moengage", "--config", str(config), *(["-v"] if verbose else [])]
    first = await start(*args, env=env)
    second: asyncio.subprocess.Process | None = None
    try:
        async with asyncio.timeout(60):
            while len(sandbox.moengage.events) < 1200:
                assert first.returncode is None, "the load ended before its sessions were cut"
                await asyncio.sleep(0.01)
        await terminate_sessions(pool, first.pid)
        second = await start(*args, env=env)
        code, stderr = await finish(first)
        assert_stopped_with_one_line(code, stderr, "moengage", verbose)
        code, stderr = await finish(second)
        assert code == 0, stderr
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
    await wait_for_dead_sessions(pool)
    keys = Counter(e.attributes["purchase_id"] for e in sandbox.moengage.events)
    assert len(keys) == 4000  # nothing lost
    assert [k for k, n in keys.items() if n > 1] == []  # and nothing sent twice

    rerun = await start(*args, env=env)
    code, stderr = await finish(rerun)
    assert code == 0, stderr
    assert len(sandbox.moengage.events) == 4000  # the rerun had nothing left to send
    acked = await pool.fetchval("select count(*) from syncer.acks where model = 'events'")
    assert acked == 4000
    outcomes = [
        r["outcome"] for r in await pool.fetch("select outcome from syncer.runs order by id")
    ]
    # The first ends failed; if it could not even record that, the next run closed it.
    assert outcomes[0] in ("failed", "interrupted")
    assert outcomes[1:] == ["succeeded", "succeeded"]
    assert await pool.fetchval("select count(*) from syncer.inflight") == 0


@pytest.mark.parametrize("verbose", [False, True])
async def test_a_sync_that_loses_its_connections_stops_and_the_rerun_converges(
    verbose: bool,
    db_url: str,
    pool: Any,
    sandbox: RunningSandbox,
    moco: MocoSandbox,
    tmp_path: Path,
) -> None:
    config = tmp_path / "schedules.toml"
    write_config(config, sandbox.moco_base_url, requests_per_s=12)
    env = {**os.environ, "SYNCER_DATABASE_URL": db_url, "MOCO_API_KEY": SANDBOX_KEY}
    args = ["sync", "moco", "--config", str(config), *(["-v"] if verbose else [])]
    first = await start(*args, env=env)
    second: asyncio.subprocess.Process | None = None
    try:
        async with asyncio.timeout(60):
            while await pool.fetchval("select coalesce(sum(pages), 0) from syncer.stream_runs") < 5:
                assert first.returncode is None, "the sync ended before its sessions were cut"
                await asyncio.sleep(0.02)
        await terminate_sessions(pool, first.pid)
        second = await start(*args, env=env)
        code, stderr = await finish(first)
        assert_stopped_with_one_line(code, stderr, "moco.", verbose)
        code, stderr = await finish(second)
        assert code == 0, stderr
    finally:
        for proc in (first, second):
            if proc is not None and proc.returncode is None:
                proc.kill()
                await proc.wait()
    await wait_for_dead_sessions(pool)
    await assert_tables_equal_source(pool, moco)
    runs_left = await pool.fetchval("select count(*) from syncer.runs where outcome = 'running'")
    streams_left = await pool.fetchval(
        "select count(*) from syncer.stream_runs where outcome = 'running'"
    )
    assert (runs_left, streams_left) == (0, 0)
    outcomes = [
        r["outcome"] for r in await pool.fetch("select outcome from syncer.runs order by id")
    ]
    assert outcomes[0] in ("failed", "interrupted")
    assert outcomes[1:] == ["succeeded"]
    first_run = await pool.fetchval("select min(id) from syncer.runs")
    errors = {
        r["error"]
        for r in await pool.fetch(
            "select error from syncer.stream_runs where run_id = $1 and outcome <> 'succeeded'",
            first_run,
        )
    }
    if outcomes[0] == "failed":  # its streams say why they stopped
        assert all(e is not None and LOST in e for e in errors), errors


# -- asyncpg's leftovers of a dead connection --------------------------------------------


async def leave_asyncpg_leftovers(db_url: str) -> int:
    """What asyncpg leaves, with nobody to await it, when a stopped run's connection died
    (asyncpg's issue 784), each made the deterministic way with asyncpg's own objects:

    - a pool's release task that fails (the release runs shielded from the caller's
      cancellation, so nobody retrieves its error): here asyncpg's release of a pool
      connection that is not in use, which fails at once with an InternalClientError;
    - a query's waiter failing after its caller has gone: a future holding asyncpg's
      ConnectionDoesNotExistError;
    - a connection given back inside a transaction, which asyncpg reports (without an
      exception) before it rolls it back.
    """
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    try:
        task = asyncio.ensure_future(pool._holders[0].release(None))
        while not task.done():
            await asyncio.sleep(0)
        assert isinstance(task.exception(), asyncpg.InternalClientError)
        task = asyncio.ensure_future(pool._holders[0].release(None))
        while not task.done():
            await asyncio.sleep(0)
        waiter = asyncio.get_running_loop().create_future()
        waiter.set_exception(
            asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation")
        )
        del task, waiter  # errors nobody retrieved: asyncio reports them once collected
        gc.collect()
        conn = await pool.acquire()
        await conn.transaction().start()
        await pool.release(conn)
    finally:
        await pool.close()
    return 0


async def fail_a_task() -> int:
    async def boom() -> None:
        raise ValueError("not a connection")

    task = asyncio.ensure_future(boom())
    while not task.done():
        await asyncio.sleep(0)
    del task
    gc.collect()
    return 0


NEVER_RETRIEVED = "exception was never retrieved"
RESETTING = "Resetting connection with an active transaction"


async def test_asyncpgs_leftovers_of_a_dead_connection_print_no_traceback(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    loop = asyncio.get_running_loop()
    caplog.set_level(logging.DEBUG)

    def shown() -> list[tuple[int, str]]:
        return [
            (r.levelno, r.getMessage().split(" <")[0].split("\n")[0])
            for r in caplog.records
            if r.levelno >= logging.WARNING
        ]

    # Without syncer's handler, asyncio prints each (the first two with their tracebacks) ...
    await leave_asyncpg_leftovers(db_url)
    assert sorted(shown()) == [
        (logging.ERROR, "Future exception was never retrieved"),
        (logging.ERROR, RESETTING),
        (logging.ERROR, "Task exception was never retrieved"),
    ]
    caplog.clear()
    # ... with it (every command runs so), each is a debug line.
    try:
        await cli._quiet_dead_connections(leave_asyncpg_leftovers(db_url))
    finally:
        loop.set_exception_handler(None)
    assert shown() == []
    quiet = [r for r in caplog.records if r.name == "syncer.store.database"]
    assert [r.levelno for r in quiet] == [logging.DEBUG] * 3
    # Any other error nobody awaited is still reported as asyncio reports it.
    try:
        await cli._quiet_dead_connections(fail_a_task())
    finally:
        loop.set_exception_handler(None)
    assert shown() == [(logging.ERROR, "Task exception was never retrieved")]


@contextlib.asynccontextmanager
async def pool_of_one_in_a_transaction(db_url: str) -> AsyncIterator[tuple[Any, Any, Any]]:
    """A pool of one connection, taken, inside a transaction begun by hand (as the lease
    hold's and the load's snapshot are)."""
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=1)
    try:
        conn = await pool.acquire()
        transaction = conn.transaction()
        await transaction.start()
        yield pool, conn, transaction
    finally:
        pool.terminate()


async def test_a_connection_whose_rollback_fails_is_closed_not_given_back(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``leases.release_quietly`` after the connection died inside its transaction: the
    connection is closed, so the pool neither resets it (asyncpg's "Resetting connection with
    an active transaction", then errors on the dead socket) nor hands it out again."""
    caplog.set_level(logging.DEBUG)
    async with pool_of_one_in_a_transaction(db_url) as (pool, conn, transaction):
        pid = conn.get_server_pid()
        other = await asyncpg.connect(db_url)
        try:
            await other.fetchval("select pg_terminate_backend($1)", pid)
        finally:
            await other.close()
        await leases.release_quietly(pool, conn, transaction)
        async with pool.acquire() as fresh:  # a new connection, not the dead one
            assert await fresh.fetchval("select pg_backend_pid()") != pid
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_release_cancelled_during_its_rollback_still_frees_the_pools_place(
    db_url: str,
) -> None:
    """A run stopped while ``leases.release_quietly`` rolls back: the connection, in an
    unknown state, is closed, and its place in the pool is free again (a pool of one hands
    out a new connection)."""
    async with pool_of_one_in_a_transaction(db_url) as (pool, conn, transaction):
        pid = conn.get_server_pid()
        release = asyncio.ensure_future(leases.release_quietly(pool, conn, transaction))
        await asyncio.sleep(0)  # it has sent its ROLLBACK and waits for the answer
        assert not release.done()
        release.cancel()
        with pytest.raises(asyncio.CancelledError):
            await release
        async with asyncio.timeout(60), pool.acquire() as fresh:
            assert await fresh.fetchval("select pg_backend_pid()") != pid


async def _two_at_once(pool: Any, keys: list[str]) -> tuple[list[int], list[int]]:
    """Two runs of ``keys`` started at once, each held until both have tried."""
    from syncer.errors import BusyError
    from syncer.runframe import exclusive_run

    entered: list[int] = []
    refused: list[int] = []
    both_tried = asyncio.Event()

    def tried() -> None:
        if len(entered) + len(refused) == 2:
            both_tried.set()

    async def one(number: int) -> None:
        try:
            async with exclusive_run(
                pool, lock_class=7, kind="sync", keys=keys, source="moco", command="test"
            ):
                entered.append(number)
                tried()
                await asyncio.wait_for(both_tried.wait(), 10)
        except BusyError:
            refused.append(number)
            tried()

    await asyncio.gather(one(1), one(2))
    return entered, refused


async def test_of_two_runs_started_at_once_on_the_same_keys_one_runs(pool: Any) -> None:
    """Both take their keys in sorted order and stop at the first held one: never both refused
    (as when each took some keys before finding the rest held by the other)."""
    keys = [f"moco.stream_{i}" for i in range(6)]
    for _ in range(20):
        entered, refused = await _two_at_once(pool, keys)
        assert len(entered) == 1, f"entered {entered}, refused {refused}"
        assert len(refused) == 1
