"""A stream is one catalog entry: added to the catalog, and to nothing else, it is offered by
``syncer streams``, provisioned (table and typed view), synced first and incrementally, swept
and verified, against a sandbox serving the same catalog.

The entry is a list MOCO does not have (``/labels``, shaped as ``/tags``), so nothing in syncer
or the sandbox can know it but from the catalog; syncer reads it from ``SYNCER_MOCO_CATALOG``.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
import pytest

from syncer.catalog import Catalog
from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.moco_data import MocoData
from syncer.sources.moco.catalog import CATALOG, ENV
from tests.conftest import SANDBOX_KEY, sandbox_in_thread
from tests.integration.test_cli import Env, assert_one_error_line, syncer

pytestmark = pytest.mark.slow


def with_labels() -> Catalog:
    tags = CATALOG["tags"]
    labels = replace(tags, name="labels", path="/labels", title="List labels", webhook_targets=())
    return CATALOG.with_stream(labels)


def environment(db_url: str, tmp_path: Path, catalog: Path) -> Env:
    env = {k: v for k, v in os.environ.items() if k not in ("SYNCER_CONFIG", "COLUMNS")}
    env.update(SYNCER_DATABASE_URL=db_url, SYNCER_HOME=str(tmp_path), MOCO_API_KEY=SANDBOX_KEY)
    env[ENV] = str(catalog)
    return env


def config(tmp_path: Path, base_url: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(
        "\n".join(
            [
                "[sources.moco]",
                'type = "moco"',
                f'base_url = "{base_url}"',
                'api_key_env = "MOCO_API_KEY"',
                'streams = ["projects", "labels"]',
                "rate_limit = { requests = 1000, per_seconds = 1 }",
                "",
            ]
        )
    )
    return path


async def stored(pool: Any) -> dict[int, Any]:
    rows = await pool.fetch("select id, data from moco.labels where _deleted_at is null")
    return {r["id"]: orjson.loads(r["data"]) for r in rows}


async def test_a_catalog_entry_is_a_working_stream(pool: Any, db_url: str, tmp_path: Path) -> None:
    catalog = with_labels()
    catalog_file = tmp_path / "catalog.json"
    catalog_file.write_bytes(catalog.dumps())
    env = environment(db_url, tmp_path, catalog_file)
    data = MocoData(seed=5, counts={"labels": 130}, catalog=catalog)
    async with sandbox_in_thread(moco=MocoSandbox(data)) as running:
        path = config(tmp_path, running.moco_base_url)

        async def run(*args: str) -> Any:
            return await syncer(*args, "--config", path, env=env, cwd=tmp_path)

        listed = await run("streams", "moco", "--json")
        assert listed.code == 0, listed
        labels = next(s for s in orjson.loads(listed.stdout) if s["stream"] == "labels")
        assert (labels["path"], labels["table"], labels["enabled"]) == (
            "/labels",
            "moco.labels",
            True,
        )

        first = await run("sync", "moco")
        assert first.code == 0, first
        served = {r["id"]: r for r in data.records("labels")}
        assert len(served) == 130
        assert await stored(pool) == served
        typed = await pool.fetchval("select count(*) from moco_views.labels")
        assert typed == len(served)

        changed = data.update("labels", 4)
        created = data.create("labels", 3)
        running.moco.reset_log()
        second = await run("sync", "moco")
        assert second.code == 0, second
        asked = [r for r in running.moco.requests if r.path.endswith("/labels")]
        assert len(asked) == 1, asked  # one page of what changed
        assert await stored(pool) == {r["id"]: r for r in data.records("labels")}
        assert set(created) <= set(await stored(pool))
        assert len(changed) == 4

        gone = data.delete("labels", 2)
        swept = await run("sweep", "moco")
        assert swept.code == 0, swept
        marked = await pool.fetch("select id from moco.labels where _deleted_at is not null")
        assert {r["id"] for r in marked} == set(gone)

        verified = await run("verify", "moco", "--json")
        assert verified.code == 0, verified
        reports = orjson.loads(verified.stdout)["streams"]
        report = next(s for s in reports if s["stream"] == "labels")
        assert (report["missing"], report["extra"]) == (0, 0)
        assert report["source_count"] == report["warehouse_count"] == len(data.records("labels"))


async def test_a_catalog_file_that_is_not_one_is_refused_in_one_line(
    db_url: str, tmp_path: Path
) -> None:
    bad = tmp_path / "catalog.json"
    bad.write_text('{"streams": 3}')
    env = environment(db_url, tmp_path, bad)
    ran = await syncer("streams", "moco", env=env, cwd=tmp_path)
    assert_one_error_line(ran, 2, "SYNCER_MOCO_CATALOG", str(bad))
