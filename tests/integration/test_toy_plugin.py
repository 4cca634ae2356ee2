"""The toy plugin end to end, from outside ``syncer/``: its source's records synced into the
warehouse, then loaded from there into its destination; ``status`` and ``run --once`` over both.

The real ``syncer`` command runs as a subprocess with ``PYTHONPATH`` holding
``tests/plugins`` and ``SYNCER_PLUGINS=toyplug.source,toyplug.destination``; the toy API and
the toy sink serve over loopback; the database is the tests' embedded PostgreSQL.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.test_cli import Env, syncer
from tests.integration.test_toy_destination import TOKEN as SINK_TOKEN
from tests.integration.test_toy_destination import Sink
from tests.integration.test_toy_destination import sink as sink  # the fixture
from tests.integration.test_toy_source import env as env  # the fixtures
from tests.integration.test_toy_source import toy_url as toy_url
from tests.plugins.toyplug.server import ToyApi

MODEL = "select 'widget-' || id as key, data as payload from toys.widgets where _deleted_at is null"


@pytest.fixture
def toy() -> ToyApi:
    return ToyApi({"widgets": 9, "gadgets": 4})


@pytest.fixture
def both(env: Env) -> Env:
    """The toy source's environment, with the toy destination's plugin and token too."""
    return {**env, "SYNCER_PLUGINS": "toyplug.source,toyplug.destination", "SINK_TOKEN": SINK_TOKEN}


def write_config(tmp_path: Path, toy_url: str, sink: Sink) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(
        f"""
[sources.toys]
type = "toy"
base_url = "{toy_url}"
token_env = "TOY_TOKEN"
page_size = 4
rate_limit = {{ requests = 1000, per_seconds = 1 }}

[destinations.sink]
type = "toy_sink"
base_url = "{sink.url}"
token_env = "SINK_TOKEN"
max_items = 5
sql = "{MODEL}"

[[jobs]]
id = "toys"
run = "sync toys"
every = "15m"

[[jobs]]
id = "sink"
run = "load sink"
every = "15m"
"""
    )
    return path


async def test_records_go_from_the_toy_source_through_the_warehouse_to_the_toy_sink(
    pool: Any, toy: ToyApi, toy_url: str, sink: Sink, both: Env, tmp_path: Path
) -> None:
    sink.refused = set()
    config = write_config(tmp_path, toy_url, sink)

    synced = await syncer("sync", "toys", "--json", "--config", config, env=both, cwd=tmp_path)
    assert synced.code == 0, synced
    assert await pool.fetchval("select count(*) from toys.widgets") == 9
    loaded = await syncer("load", "sink", "--json", "--config", config, env=both, cwd=tmp_path)
    assert loaded.code == 0, loaded
    widgets = {f"widget-{i}" for i in toy.records("widgets")}
    assert sorted(sink.keys) == sorted(widgets)  # each once
    assert all(len(body) <= 5 for body in sink.bodies)

    status = await syncer("status", "--json", "--config", config, env=both, cwd=tmp_path)
    assert status.code == 0, status
    document = orjson.loads(status.stdout)
    rows = {s["stream"]: s["rows"] for s in document["streams"] if s["source"] == "toys"}
    assert rows == {"widgets": 9, "gadgets": 4}
    [items] = document["destinations"]["sink"]
    assert (items["model"], items["pending"], items["sent"]) == ("items", 0, 9)

    # A change at the source: the daemon's jobs sync it and load exactly that row.
    changed = next(iter(toy.records("widgets")))
    toy.change("widgets", changed, name="renamed")
    before = len(sink.keys)
    once = await syncer("run", "--once", "--json", "--config", config, env=both, cwd=tmp_path)
    assert once.code == 0, once
    jobs = {j["job"]: j["outcome"] for j in orjson.loads(once.stdout)["jobs"]}
    assert jobs == {"toys": "succeeded", "sink": "succeeded"}
    assert sink.keys[before:] == [f"widget-{changed}"]
