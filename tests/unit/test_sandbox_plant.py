"""When ``syncer sandbox --backdate`` takes a first sync for done (``sandbox/moco_plant.py``)."""

from __future__ import annotations

import time

from syncer.sandbox.moco import RequestRecord
from syncer.sandbox.moco_plant import first_sync_done


def page(
    path: str, *, more: bool = False, ago_s: float = 5.0, per_page: str = "100"
) -> RequestRecord:
    query = {"page": "1", "per_page": per_page}
    return RequestRecord("GET", f"/api/v1{path}", query, 200, time.monotonic() - ago_s, more)


def test_nothing_served_yet_or_only_a_probe_is_no_sync() -> None:
    assert not first_sync_done([], 2.0)
    assert not first_sync_done([page("/users", per_page="1")], 2.0)


def test_every_list_at_its_last_page_and_idle_is_done() -> None:
    assert first_sync_done(
        [page("/activities", more=True, ago_s=9), page("/activities"), page("/users")], 2.0
    )


def test_a_list_left_in_the_middle_is_not_done_however_long_it_waits() -> None:
    # A sync waiting for its rate limit in the middle of a list.
    assert not first_sync_done([page("/users"), page("/activities", more=True, ago_s=60)], 2.0)


def test_a_request_within_the_idle_time_is_not_done() -> None:
    assert not first_sync_done([page("/users", ago_s=0.5)], 2.0)
    assert not first_sync_done([page("/users"), page("/deals", per_page="1", ago_s=0.5)], 2.0)
