"""A database shared with a replica of the previous release (0.2.x) during an upgrade: the walk
positions each writes into ``syncer.streams.walk`` are read by the other.

The previous release reads a walk by indexing these keys (and ``.get`` for the rest, ignoring
keys it does not know); this one writes them all, and reads a walk the previous one wrote
(without ``clock`` and ``cursor``) as the walk it was.
"""

from __future__ import annotations

from datetime import UTC, datetime

import orjson

from syncer.extract.walk import Walk

# What the previous release's Walk.from_json indexes directly.
REQUIRED_BY_0_2 = (
    "lower_bound",
    "page",
    "pages",
    "keyset",
    "query_started_at",
    "query_total",
    "max_stored",
    "watch_since",
    "watch_lower",
    "disturbed",
)

# A walk as the previous release wrote it, mid-query of an offset-paged (watched) read.
WRITTEN_BY_0_2 = {
    "lower_bound": "2026-11-30T08:00:00+00:00",
    "page": 3,
    "pages": 2,
    "keyset": False,
    "query_started_at": "2026-12-01T10:00:00+00:00",
    "query_total": 512,
    "max_stored": "2026-12-01T09:59:58+00:00",
    "watch_since": "2026-12-01T10:00:00+00:00",
    "watch_lower": "2026-11-30T08:00:00+00:00",
    "disturbed": False,
    "start": "2026-11-30T08:00:00+00:00",
    "stepped": False,
    "expect_total": None,
    "recheck_lower": None,
    "recheck_drop": None,
    "query_served": 200,
    "query_last": "2026-12-01T09:59:58+00:00",
    "distrust": "a page not sorted by updated_at",
    "done": False,
}


def test_every_walk_this_release_writes_holds_what_the_previous_one_reads() -> None:
    at = datetime(2026, 12, 1, 10, tzinfo=UTC)
    walks = [
        Walk(lower_bound=at),
        Walk.unsorted(at),
        Walk(lower_bound=None, cursor="abc"),
        Walk.from_json(WRITTEN_BY_0_2),
    ]
    for walk in walks:
        written = orjson.loads(orjson.dumps(walk.to_json()))
        assert set(REQUIRED_BY_0_2) <= set(written), walk


def test_a_walk_the_previous_release_wrote_resumes_where_it_stood() -> None:
    walk = Walk.from_json(WRITTEN_BY_0_2)
    assert (walk.page, walk.pages, walk.keyset, walk.query_total) == (3, 2, False, 512)
    assert (walk.watched, walk.clock, walk.cursor) == (True, False, None)
    again = walk.to_json()
    assert {k: again[k] for k in WRITTEN_BY_0_2} == WRITTEN_BY_0_2
