"""A destination type from outside ``syncer/`` (``tests/plugins/toyplug/destination.py``),
loaded by the real CLI through ``$SYNCER_PLUGINS``, sending over loopback HTTP to a small
aiohttp server that checks the token and records what it got."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from tests.integration.test_cli import Env, Ran, assert_one_error_line, syncer

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "toy-token-3e9b07"
BAD_KEY = "item-07"
ROWS = 25
MAX_ITEMS = 10


@dataclass
class Sink:
    """What the toy server got: each accepted body's keys; what it refuses or throttles."""

    url: str = ""
    bodies: list[list[str]] = field(default_factory=list)  # keys of every body it answered
    refused: set[str] = field(default_factory=lambda: {BAD_KEY})
    throttle_next: int = 0
    unauthorized: int = 0

    @property
    def keys(self) -> list[str]:
        return [k for body in self.bodies for k in body]


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    state = Sink()

    async def items(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            state.unauthorized += 1
            return web.json_response({"message": "bad token"}, status=401)
        if state.throttle_next:
            state.throttle_next -= 1
            return web.json_response({"message": "slow down"}, status=429)
        got = orjson.loads(await request.read())["items"]
        state.bodies.append([i["key"] for i in got])
        refused = [i["key"] for i in got if i["key"] in state.refused]
        if refused:
            reason = "payload not wanted here"
            return web.json_response({"rejected": refused, "reason": reason}, status=400)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/items", items)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


@pytest.fixture
def toy_env(db_url: str, tmp_path: Path) -> Env:
    path = os.pathsep.join(
        p for p in (str(ROOT / "tests" / "plugins"), os.environ.get("PYTHONPATH")) if p
    )
    return {
        **os.environ,
        "SYNCER_DATABASE_URL": db_url,
        "SYNCER_HOME": str(tmp_path / "home"),
        "PYTHONPATH": path,
        "SYNCER_PLUGINS": "toyplug.destination",
        "TOY_TOKEN": TOKEN,
    }


def write_config(tmp_path: Path, sink: Sink, extra: str = "") -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[destinations.sink]
type = "toy_sink"
base_url = "{sink.url}"
token_env = "TOY_TOKEN"
max_items = {MAX_ITEMS}
rate_limit = {{ items = 1000, per_seconds = 1 }}
{extra}"""
    )
    return path


async def toy_items(pool: Any) -> None:
    await pool.execute(
        "create table toy_items as"
        " select 'item-' || lpad(g::text, 2, '0') as key, jsonb_build_object('n', g) as payload"
        " from generate_series(1, $1::int) g",
        ROWS,
    )


async def load(config: Path, env: Env, cwd: Path) -> dict[str, Any]:
    ran = await syncer("load", "sink", "--json", "--config", config, env=env, cwd=cwd)
    assert ran.code == 0, ran
    document: dict[str, Any] = orjson.loads(ran.stdout)
    return document


async def test_load_sends_each_row_once_dead_letters_refused_keys_and_resends_changes(
    pool: Any, sink: Sink, toy_env: Env, tmp_path: Path
) -> None:
    await toy_items(pool)
    config = write_config(tmp_path, sink)
    sink.throttle_next = 1  # the first body is throttled, then taken

    first = await load(config, toy_env, tmp_path)
    assert first["outcome"] == "succeeded"
    assert sorted(sink.keys) == [f"item-{n:02d}" for n in range(1, ROWS + 1)]
    assert all(len(body) <= MAX_ITEMS for body in sink.bodies)
    assert first["models"] == {"items": {"sent": ROWS - 1}}
    assert first["dead_letters"] == {"http_400": 1}
    assert first["rate_limited"] == 1
    acked = await pool.fetch("select key from syncer.acks where destination = 'sink'")
    assert len(acked) == ROWS - 1
    assert BAD_KEY not in {r["key"] for r in acked}
    letter = await pool.fetchrow(
        "select key, rule, reason, row from syncer.dead_letters where destination = 'sink'"
    )
    assert (letter["key"], letter["rule"]) == (BAD_KEY, "http_400")
    assert "payload not wanted here" in letter["reason"]
    assert orjson.loads(letter["row"]) == {"key": BAD_KEY, "payload": {"n": 7}}

    requests = len(sink.bodies)
    again = await load(config, toy_env, tmp_path)
    assert again["models"] == {"items": {"sent": 0}}
    assert len(sink.bodies) == requests  # nothing was sent

    await pool.execute(
        "update toy_items set payload = '{\"n\": 99}' where key in ('item-03', $1)", BAD_KEY
    )
    changed = await load(config, toy_env, tmp_path)
    assert sink.bodies[requests:] == [["item-03", BAD_KEY]]
    assert changed["models"] == {"items": {"sent": 1}}
    assert changed["dead_letters"] == {"http_400": 1}

    status = await syncer("status", "--json", "--config", config, env=toy_env, cwd=tmp_path)
    assert status.code == 0, status
    (items,) = orjson.loads(status.stdout)["destinations"]["sink"]
    assert items["model"] == "items"
    assert (items["pending"], items["sent"], items["dead_letters"]) == (
        0,
        ROWS - 1,
        {"http_400": 1},
    )
    assert sink.unauthorized == 0


async def test_run_once_runs_a_load_job_of_the_toy_destination(
    pool: Any, sink: Sink, toy_env: Env, tmp_path: Path
) -> None:
    await toy_items(pool)
    sink.refused = set()
    config = write_config(
        tmp_path, sink, '[[jobs]]\nid = "sink"\nrun = "load sink"\nevery = "1h"\n'
    )
    ran = await syncer("run", "--once", "--config", config, env=toy_env, cwd=tmp_path)
    assert ran.code == 0, ran
    assert sorted(sink.keys) == [f"item-{n:02d}" for n in range(1, ROWS + 1)]
    assert (
        await pool.fetchval("select count(*) from syncer.acks where destination = 'sink'") == ROWS
    )
    run = await pool.fetchrow("select outcome, counts from syncer.runs where kind = 'load'")
    assert run["outcome"] == "succeeded"


async def test_a_wrong_token_ends_the_load_with_one_line_naming_the_variable(
    pool: Any, sink: Sink, toy_env: Env, tmp_path: Path
) -> None:
    await toy_items(pool)
    config = write_config(tmp_path, sink)
    ran: Ran = await syncer(
        "load", "sink", "--config", config, env={**toy_env, "TOY_TOKEN": "wrong"}, cwd=tmp_path
    )
    assert_one_error_line(ran, 1, "TOY_TOKEN", "401")
    assert sink.bodies == []
    assert await pool.fetchval("select count(*) from syncer.acks") == 0


def test_nothing_in_syncer_names_the_toy() -> None:
    for path in (ROOT / "syncer").rglob("*.py"):
        text = path.read_text()
        assert "toy_sink" not in text, path
        assert "toyplug" not in text, path
