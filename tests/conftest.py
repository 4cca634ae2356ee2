"""Shared fixtures: one real PostgreSQL per session, a migrated template, a clone per test.

The server is the embedded one (started in a temporary folder) unless
``SYNCER_TEST_DATABASE_URL`` names another server's admin database.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import shutil
import tempfile
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from syncer.config import RateLimit, Secret
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import RunningSandbox, running_sandbox
from syncer.sources.moco.settings import MocoSourceSettings
from syncer.store.database import migrate, start_embedded, with_database

SANDBOX_KEY = "sandbox-moco-key"
# The commands' periodic progress lines (syncer.progress) would mix into the stderr that tests
# read line by line; tests/integration/test_progress.py sets a short period of its own.
os.environ.setdefault("SYNCER_PROGRESS_INTERVAL", "1h")


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = os.environ.get("SYNCER_TEST_DATABASE_URL")
    if url:
        yield url
        return
    # Not under pytest's basetemp: pytest prunes old basetemps, which would pull the data
    # directory from under a server that a concurrent session is still using.
    home = Path(tempfile.mkdtemp(prefix="syncer-test-pg-"))
    # atexit runs last-in first-out: this runs after the server was stopped and its data deleted.
    atexit.register(shutil.rmtree, home, True)
    yield start_embedded(home, after_exit="delete")


@pytest.fixture(scope="session")
async def template_db(pg_admin_url: str) -> AsyncIterator[str]:
    name = f"syncer_template_{os.getpid()}"
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'drop database if exists "{name}"')
        await conn.execute(f'create database "{name}"')
        await migrate(with_database(pg_admin_url, name))
        yield name
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


@pytest.fixture
async def db_url(pg_admin_url: str, template_db: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test (a clone of the template)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(pg_admin_url)
    try:
        await conn.execute(f'create database "{name}" template "{template_db}"')
        yield with_database(pg_admin_url, name)
        await conn.execute(f'drop database if exists "{name}" with (force)')
    finally:
        await conn.close()


@pytest.fixture
async def pool(db_url: str) -> AsyncIterator[Any]:
    pool = await asyncpg.create_pool(db_url, min_size=1, max_size=8)
    yield pool
    await pool.close()


@pytest.fixture
def moco() -> MocoSandbox:
    """A MOCO sandbox with the default data set (about 5,000 records)."""
    return MocoSandbox()


@contextlib.asynccontextmanager
async def sandbox_in_thread(**simulators: Any) -> AsyncIterator[RunningSandbox]:
    """The sandbox on its own thread and event loop, as a real server is elsewhere: work in the
    test's loop (parsing pages, packing bodies) must not delay when the server sees a request,
    or a rate limit's edge would be judged by the test's load rather than by our pacing."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        try:
            async with running_sandbox(**simulators) as running:
                box["stop"] = asyncio.Event()
                box["loop"] = asyncio.get_running_loop()
                box["running"] = running
                started.set()
                await box["stop"].wait()
        except BaseException as exc:  # reported to the test below
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    await asyncio.to_thread(started.wait, 30)
    if "error" in box:
        raise box["error"]
    try:
        yield box["running"]
    finally:
        box["loop"].call_soon_threadsafe(box["stop"].set)
        await asyncio.to_thread(thread.join, 30)


@pytest.fixture
async def sandbox(moco: MocoSandbox) -> AsyncIterator[RunningSandbox]:
    async with sandbox_in_thread(moco=moco) as running:
        yield running


# The eight streams of release 0.2: what most tests sync (the catalog's other streams have
# tests of their own).
CLASSIC_STREAMS = (
    "activities",
    "projects",
    "companies",
    "contacts",
    "users",
    "invoices",
    "offers",
    "deals",
)


def moco_source(base_url: str, **overrides: Any) -> MocoSourceSettings:
    """Settings of a MOCO source as the configuration would produce them (the eight classic
    streams unless ``streams`` is given)."""
    options: dict[str, Any] = {
        "name": "moco",
        "base_url": base_url,
        "api_key": Secret("MOCO_API_KEY", SANDBOX_KEY),
        "rate_limit": RateLimit(1000, 1.0),
        "streams": CLASSIC_STREAMS,
    }
    options.update(overrides)
    return MocoSourceSettings(**options)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    return tmp_path / "schedules.toml"


async def wait_for_dead_sessions(pool: Any, timeout_s: float = 10.0) -> None:
    """Wait until a killed syncer's database sessions are gone.

    A COMMIT the process sent just before dying may still be in flight, and its advisory locks
    are released only when the server notices the closed connection.
    """
    async with asyncio.timeout(timeout_s):
        while await pool.fetchval(
            "select count(*) from pg_stat_activity"
            " where application_name = 'syncer' and datname = current_database()"
        ):
            await asyncio.sleep(0.02)
