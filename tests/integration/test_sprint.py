"""Sprints: several pages of one query at once, against the sandbox over loopback HTTP."""

from __future__ import annotations

from typing import Any

from syncer.sandbox.moco import MocoSandbox
from syncer.sandbox.server import RunningSandbox
from tests.integration.test_moco_sync import (
    assert_tables_equal_source,
    source_contents,
    sync,
    table_contents,
)

ACTIVITIES = {"streams": ("activities",), "page_concurrency": 4}


def list_requests(moco: MocoSandbox) -> list[dict[str, str]]:
    return [r.query for r in moco.requests if r.path.endswith("/activities")]


async def test_a_long_query_is_read_in_sprints_and_stored_exactly(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    result = await sync(pool, sandbox, source=ACTIVITIES)
    assert result.ok, result.errors
    assert await table_contents(pool, "activities") == source_contents(moco, "activities")
    queries = list_requests(moco)
    offset_pages = [q for q in queries if q["page"] != "1"]
    assert len(offset_pages) >= 8, "no sprints happened"
    # Beyond the pages stored: one check per sprint of 4 pages, and the pages of a sprint
    # after a boundary between equal updated_at values (read again by a keyset step).
    pages = result.streams[0].pages
    extra = len(queries) - pages
    assert len(offset_pages) / 4 <= extra <= len(offset_pages) / 4 + 3 * len(offset_pages) / 8
    recorded = await pool.fetchval("select sum(requests) from syncer.stream_runs")
    assert recorded == len(moco.requests)
    assert result.streams[0].watermark is not None


async def test_a_change_during_a_sprint_throws_it_away_and_loses_nothing(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    moco.faults.change_between_pages = 2  # every offset page changes records first
    first = await sync(pool, sandbox, source=ACTIVITIES)
    assert first.ok, first.errors
    queries = list_requests(moco)
    sprinted = [q for q in queries if q["page"] != "1"]
    assert 0 < len(sprinted) <= 4  # one sprint, not trusted, and no more in this run
    moco.faults.change_between_pages = 0
    assert (await sync(pool, sandbox, source=ACTIVITIES)).ok
    assert await table_contents(pool, "activities") == source_contents(moco, "activities")


async def test_a_deletion_during_a_sprint_is_noticed_and_no_record_is_missed(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    """A deletion shifts every later record back by one: a record at a page boundary would
    never be served. After this one run, every record the source still has is stored."""
    moco.faults.delete_between_pages = 1
    result = await sync(pool, sandbox, source=ACTIVITIES)
    assert result.ok, result.errors
    moco.faults.delete_between_pages = 0
    assert any(q["page"] != "1" for q in list_requests(moco)), "no sprint happened"
    stored = await table_contents(pool, "activities")
    served = source_contents(moco, "activities")
    assert set(served) <= set(stored)
    assert all(stored[i] == record for i, record in served.items())


async def test_no_sprint_where_one_page_at_a_time_uses_the_limit(
    pool: Any, sandbox: RunningSandbox, moco: MocoSandbox
) -> None:
    from syncer.config import RateLimit

    limited = {**ACTIVITIES, "rate_limit": RateLimit(100, 100.0)}  # 1 request a second
    assert (await sync(pool, sandbox, source={**limited, "streams": ("users",)})).ok
    assert all(q["page"] == "1" for q in (r.query for r in moco.requests))
    await assert_tables_equal_source_for(pool, moco, "users")


async def assert_tables_equal_source_for(pool: Any, moco: MocoSandbox, stream: str) -> None:
    assert await table_contents(pool, stream) == source_contents(moco, stream)


__all__ = ["assert_tables_equal_source"]
