"""A long ``syncer sync`` or ``sweep`` shows its progress while it runs: plain lines on stderr.

The sandbox holds to a rate limit of 10 requests a second, so reading 3,000 activities (30
pages) and the other streams takes seconds; the period between lines is set small through
``SYNCER_PROGRESS_INTERVAL``. The lines must appear while the run goes on (several per stream,
with more records each time), name the share done from ``X-Total`` and the time left, and
never reach stdout, which holds only the summary.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from syncer.sandbox.moco import MocoSandbox, MocoSandboxSettings
from syncer.sandbox.moco_data import MocoData
from syncer.sandbox.server import RunningSandbox
from tests.conftest import SANDBOX_KEY, sandbox_in_thread
from tests.integration.test_cli import Env, syncer

COUNTS = {
    "activities": 3_000,
    "projects": 120,
    "companies": 60,
    "contacts": 60,
    "users": 10,
    "invoices": 60,
    "offers": 60,
    "deals": 60,
}
LINE = re.compile(r"^sync moco\.(\w+): (.*)$")


@pytest.fixture
def env(db_url: str, tmp_path: Path) -> Env:
    home = tmp_path / "home"
    home.mkdir()
    environ = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
    environ.update(SYNCER_DATABASE_URL=db_url, MOCO_API_KEY=SANDBOX_KEY, SYNCER_HOME=str(home))
    return environ


@pytest.fixture
async def limited() -> AsyncIterator[tuple[MocoSandbox, RunningSandbox]]:
    moco = MocoSandbox(
        MocoData(seed=3, counts=COUNTS),
        MocoSandboxSettings(rate_limit_requests=10, rate_limit_window_s=1.0),
    )
    async with sandbox_in_thread(moco=moco) as running:
        yield moco, running


@pytest.mark.slow
async def test_a_piped_sync_prints_periodic_progress_lines_on_stderr(
    env: Env, tmp_path: Path, pool: Any, limited: tuple[MocoSandbox, RunningSandbox]
) -> None:
    moco, running = limited
    config = tmp_path / "schedules.toml"
    config.write_text(
        "[sources.moco]\n"
        'type = "moco"\n'
        f'base_url = "{running.moco_base_url}"\n'
        'api_key_env = "MOCO_API_KEY"\n'
        'streams = ["activities", "projects", "companies", "contacts",\n'
        '    "users", "invoices", "offers", "deals"]\n'
        "rate_limit = { requests = 10, per_seconds = 1 }\n"
    )
    ran = await syncer(
        "sync",
        "moco",
        "--config",
        config,
        env={**env, "SYNCER_PROGRESS_INTERVAL": "0.2"},
        cwd=tmp_path,
        timeout_s=300,
    )
    assert ran.code == 0, ran
    assert "Traceback" not in ran.output
    assert await pool.fetchval("select count(*) from moco.activities") == COUNTS["activities"]
    assert not any(c.status == 429 for c in moco.requests), "the run was not paced"

    lines = [LINE.match(line) for line in ran.stderr.splitlines()]
    assert all(lines), ran.stderr  # stderr holds progress lines and nothing else
    activities = [m.group(2) for m in lines if m and m.group(1) == "activities"]
    # Several lines while the stream ran, each with more records than the one before.
    counts = [
        int(re.sub(r"\D", "", t.split(", ")[1]))
        for t in activities
        if not t.startswith(("succeeded", "failed"))
    ]
    assert len(counts) >= 3, ran.stderr
    assert counts == sorted(counts)
    assert counts[0] < counts[-1]
    # The share from X-Total (3,000 records, read with a 1 s overlap between keyset steps) and
    # the time left from the rate limit.
    assert any(re.search(r"\d+% of ~[\d,]+, about .* left$", t) for t in activities), ran.stderr
    assert not any(LINE.match(line) for line in ran.stdout.splitlines())  # only the summary
    assert "moco.activities" in ran.stdout

    # A sweep of the same streams: one request per 100 stored ids, its share from the ids.
    ran = await syncer(
        "sweep",
        "moco",
        "--config",
        config,
        env={**env, "SYNCER_PROGRESS_INTERVAL": "0.2"},
        cwd=tmp_path,
        timeout_s=300,
    )
    assert ran.code == 0, ran
    swept = [re.match(r"^sweep moco\.activities: (.*)$", line) for line in ran.stderr.splitlines()]
    texts = [m.group(1) for m in swept if m]
    assert len(texts) >= 2, ran.stderr
    assert any(re.search(r" ids, \d+% of ~3,000, about .* left$", t) for t in texts), ran.stderr
