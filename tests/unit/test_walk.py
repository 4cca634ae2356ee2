"""The walk's watermark rule, driven by a simulated offset-paged API with changes mid-walk."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from syncer.extract.walk import Walk

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
PAGE = 10


def at(seconds: float) -> datetime:
    return EPOCH + timedelta(seconds=seconds)


@dataclass
class FakeApi:
    """Offset paging, ``updated_after`` strict, whole-second ``Date`` headers.

    Sorted by (updated_at, id) as asked, or by id when ``ignores_sort`` (an API that ignores
    ``sort_by``).
    """

    records: dict[int, float]  # id -> updated_at (seconds since EPOCH)
    now: float
    ignores_sort: bool = False
    next_id: int = 10_000

    def query(self, lower: float | None, page: int) -> tuple[list[tuple[int, float]], int, bool]:
        matching = [(i, u) for i, u in self.records.items() if lower is None or u > lower]
        matching.sort(key=(lambda r: r[0]) if self.ignores_sort else (lambda r: (r[1], r[0])))
        chunk = matching[(page - 1) * PAGE : page * PAGE]
        return chunk, len(matching), len(matching) > page * PAGE

    def change(self, rng: random.Random) -> None:
        self.now += rng.uniform(0.01, 0.7)
        kind = rng.random()
        if kind < 0.6 and self.records:
            self.records[rng.choice(list(self.records))] = self.now
        elif kind < 0.8 and self.records:
            del self.records[rng.choice(list(self.records))]
        else:
            self.next_id += 1
            self.records[self.next_id] = self.now


def seconds(value: datetime) -> float:
    return (value - EPOCH).total_seconds()


def walk_once(
    api: FakeApi,
    stored: dict[int, float],
    watermark: datetime | None,
    rng: random.Random,
    *,
    recheck: bool = True,
) -> tuple[datetime | None, int]:
    """One run: the new watermark and the number of requests it made. ``recheck``: ask the
    previous query's total again when a step's total falls short (as the extractor does)."""
    lower = watermark - timedelta(seconds=1) if watermark else None  # 1 s overlap
    walk = Walk(lower_bound=lower)
    requests = 0
    while True:
        api.now += rng.uniform(0.05, 0.4)
        bound = seconds(walk.lower_bound) if walk.lower_bound else None
        # Sent in whole seconds, rounded down, as the extractor does.
        chunk, total, more = api.query(math.floor(bound) if bound is not None else None, walk.page)
        requests += 1
        for i, u in chunk:
            stored[i] = u
        again = None
        if recheck and walk.needs_recheck(total):
            previous = seconds(walk.recheck_lower) if walk.recheck_lower else None
            _, again, _ = api.query(math.floor(previous) if previous is not None else None, 1)
            requests += 1
        walk = walk.after_page(
            served_at=at(math.floor(api.now)),
            total=total,
            updated_ats=[at(u) for _, u in chunk],
            has_next=bool(chunk) and more,
            recheck_total=again,
        )
        if walk.done:
            return walk.watermark(watermark), requests
        for _ in range(rng.choice([0, 0, 0, 1, 2])):
            api.change(rng)


def make_api(rng: random.Random, *, ignores_sort: bool = False, pockets: bool = False) -> FakeApi:
    stamps = [rng.uniform(0, 1000) for _ in range(rng.randint(5, 120))]
    if pockets:  # bulk edits: many records share one second
        stamps += [500.0 + rng.random() * 0.9 for _ in range(rng.randint(PAGE, 4 * PAGE))]
    return FakeApi(dict(enumerate(stamps)), now=1000.0, ignores_sort=ignores_sort)


@pytest.mark.parametrize("ignores_sort", [False, True], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("pockets", [False, True], ids=["spread", "pockets"])
@pytest.mark.parametrize("seed", range(150))
def test_no_record_is_ever_behind_the_watermark_unstored(
    seed: int, ignores_sort: bool, pockets: bool
) -> None:
    rng = random.Random(seed)
    api = make_api(rng, ignores_sort=ignores_sort, pockets=pockets)
    stored: dict[int, float] = {}
    watermark: datetime | None = None
    for _ in range(4):
        watermark, _ = walk_once(api, stored, watermark, rng)
        if watermark is None:
            continue
        # Everything the next run will not read again must already be stored as it is now.
        horizon = seconds(watermark) - 1.0
        for i, u in api.records.items():
            if u <= math.floor(horizon):
                assert stored.get(i) == u, f"record {i} (updated {u}) lost behind {horizon}"


@pytest.mark.parametrize("ignores_sort", [False, True], ids=["sorted", "unsorted"])
@pytest.mark.parametrize("seed", range(40))
def test_after_changes_one_quiet_run_converges_to_the_source(seed: int, ignores_sort: bool) -> None:
    rng = random.Random(seed)
    api = make_api(rng, ignores_sort=ignores_sort, pockets=seed % 2 == 0)
    stored: dict[int, float] = {}
    watermark, _ = walk_once(api, stored, None, rng)  # with changes between pages
    quiet = random.Random(seed)
    quiet.choice = lambda seq: 0  # type: ignore[assignment,method-assign]  # no more changes
    watermark, _ = walk_once(api, stored, watermark, quiet)
    assert {i: stored.get(i) for i in api.records} == api.records


def test_a_quiet_stream_costs_one_request() -> None:
    rng = random.Random(7)
    api = make_api(rng)
    stored: dict[int, float] = {}
    quiet = random.Random(7)
    quiet.choice = lambda seq: 0  # type: ignore[assignment,method-assign]
    watermark, _ = walk_once(api, stored, None, quiet)
    api.now += 100
    _, requests = walk_once(api, stored, watermark, quiet)
    assert requests == 1


def test_a_sorted_page_with_more_steps_to_a_new_query_one_second_back() -> None:
    walk = Walk(lower_bound=None).after_page(
        served_at=at(100), total=300, updated_ats=[at(1), at(5.5)], has_next=True
    )
    assert (walk.lower_bound, walk.page, walk.watched) == (at(4), 1, False)


def test_a_page_all_in_one_second_pages_by_offset_and_is_watched() -> None:
    walk = Walk(lower_bound=at(4)).after_page(
        served_at=at(100), total=300, updated_ats=[at(5.1), at(5.9)], has_next=True
    )
    assert (walk.lower_bound, walk.page, walk.watch_since, walk.watch_lower) == (
        at(4),
        2,
        at(100),
        at(4),
    )


def test_an_undisturbed_walk_moves_the_watermark_to_the_newest_stored_record() -> None:
    walk = Walk(lower_bound=None)
    walk = walk.after_page(served_at=at(100), total=3, updated_ats=[at(1), at(5)], has_next=True)
    walk = walk.after_page(served_at=at(101), total=2, updated_ats=[at(5), at(7)], has_next=False)
    assert not walk.disturbed
    assert walk.watermark(None) == at(7)


def test_a_change_after_a_watched_query_began_holds_the_watermark_at_its_lower_bound() -> None:
    walk = Walk(lower_bound=at(2))
    walk = walk.after_page(served_at=at(100), total=4, updated_ats=[at(3), at(3.5)], has_next=True)
    walk = walk.after_page(served_at=at(102), total=4, updated_ats=[at(3.7)], has_next=True)
    walk = walk.after_page(served_at=at(103), total=4, updated_ats=[at(101)], has_next=False)
    assert walk.disturbed
    assert walk.watermark(None) == at(2)


def test_a_moving_total_under_offset_paging_disturbs_the_walk() -> None:
    walk = Walk(lower_bound=at(2))
    walk = walk.after_page(served_at=at(100), total=5, updated_ats=[at(3), at(3.5)], has_next=True)
    walk = walk.after_page(served_at=at(101), total=4, updated_ats=[at(3.7)], has_next=False)
    assert walk.watermark(at(1)) == at(2)


def test_an_api_that_ignores_the_sort_is_paged_by_offset() -> None:
    walk = Walk(lower_bound=at(0))
    walk = walk.after_page(served_at=at(100), total=3, updated_ats=[at(9), at(2)], has_next=True)
    assert (walk.keyset, walk.page, walk.watch_lower) == (False, 2, at(0))
    walk = walk.after_page(served_at=at(101), total=3, updated_ats=[at(3)], has_next=False)
    assert walk.watermark(at(1)) == at(9)


def test_the_watermark_never_moves_backwards() -> None:
    walk = Walk(lower_bound=at(50)).after_page(
        served_at=at(100), total=1, updated_ats=[at(51)], has_next=False
    )
    assert walk.watermark(at(60)) == at(60)


def test_an_empty_walk_keeps_the_watermark() -> None:
    walk = Walk(lower_bound=at(50)).after_page(
        served_at=at(100), total=0, updated_ats=[], has_next=False
    )
    assert walk.watermark(at(60)) == at(60)


def test_the_walk_survives_a_round_trip_through_json() -> None:
    walk = Walk(lower_bound=at(3))
    for n in range(5):
        walk = walk.after_page(
            served_at=at(100 + n), total=1000, updated_ats=[at(4), None], has_next=True
        )
    assert walk.watched
    assert Walk.from_json(walk.to_json()) == walk


# -- the order is verified: an API that ignores sort_by while ids grow with updated_at --------


def make_correlated_api(rng: random.Random, n: int) -> FakeApi:
    """Ids grow with updated_at (later records get higher ids, as in real accounts), then a
    few old records are edited: listed by id, most pages still look sorted."""
    stamps = sorted(rng.uniform(0, 1000) for _ in range(n))
    api = FakeApi(dict(enumerate(stamps)), now=1000.0, ignores_sort=True)
    for i in rng.sample(range(n), rng.randint(1, max(1, n // 8))):
        api.now += rng.uniform(0.01, 2.0)
        api.records[i] = api.now
    return api


def test_the_reported_case_27_invoices_3_a_page_all_stored() -> None:
    """The issue's case: the first page looks sorted, the step drops records, X-Total shows it."""
    global PAGE
    saved, PAGE = PAGE, 3
    try:
        records = {i: float(10 * i) for i in range(27)}
        records[2] = 990.0  # an old invoice edited lately: its id sits on the first page
        api = FakeApi(records, now=1000.0, ignores_sort=True)
        quiet = random.Random(1)
        quiet.choice = lambda seq: 0  # type: ignore[assignment,method-assign]
        stored: dict[int, float] = {}
        watermark, requests = walk_once(api, stored, None, quiet)
        assert stored == api.records
        assert watermark == at(990)
        # Page 1, the step that shows it, the first query's total again (not a deletion?),
        # then the 9 offset pages from the start.
        assert requests == 2 + 1 + 9
    finally:
        PAGE = saved


@pytest.mark.parametrize("seed", range(150))
def test_ids_growing_with_updated_at_lose_nothing_behind_the_watermark(seed: int) -> None:
    rng = random.Random(seed)
    api = make_correlated_api(rng, rng.randint(5, 150))
    stored: dict[int, float] = {}
    watermark: datetime | None = None
    for _ in range(4):
        watermark, _ = walk_once(api, stored, watermark, rng)
        if watermark is None:
            continue
        horizon = seconds(watermark) - 1.0
        for i, u in api.records.items():
            if u <= math.floor(horizon):
                assert stored.get(i) == u, f"record {i} (updated {u}) lost behind {horizon}"


@pytest.mark.parametrize("seed", range(60))
def test_ids_growing_with_updated_at_converge_after_one_quiet_run(seed: int) -> None:
    rng = random.Random(seed)
    api = make_correlated_api(rng, rng.randint(5, 150))
    stored: dict[int, float] = {}
    watermark, _ = walk_once(api, stored, None, rng)  # with changes between pages
    quiet = random.Random(seed)
    quiet.choice = lambda seq: 0  # type: ignore[assignment,method-assign]
    walk_once(api, stored, watermark, quiet)
    assert {i: stored.get(i) for i in api.records} == api.records


@pytest.mark.parametrize("seed", range(60))
def test_a_quiet_first_walk_over_ids_growing_with_updated_at_is_exact(seed: int) -> None:
    rng = random.Random(seed)
    api = make_correlated_api(rng, rng.randint(5, 150))
    quiet = random.Random(seed)
    quiet.choice = lambda seq: 0  # type: ignore[assignment,method-assign]
    stored: dict[int, float] = {}
    walk_once(api, stored, None, quiet)
    assert stored == api.records


def test_a_keyset_step_expects_what_the_query_had_not_served_plus_what_it_keeps() -> None:
    walk = Walk(lower_bound=None).after_page(
        served_at=at(100), total=27, updated_ats=[at(1), at(4), at(5.5)], has_next=True
    )
    # Bound 4 s: 24 records not served, and 5.5 is kept; 4.0 itself may not be (strict `>`).
    assert (walk.lower_bound, walk.stepped, walk.expect_total) == (at(4), True, 25)


def test_records_the_page_served_but_could_not_store_count_as_served() -> None:
    walk = Walk(lower_bound=None).after_page(
        served_at=at(100), total=27, updated_ats=[at(1), None, at(5.5)], has_next=True
    )
    assert walk.expect_total == 25
    walk = Walk(lower_bound=None).after_page(
        served_at=at(100), total=27, updated_ats=[at(1), at(5.5)], has_next=True, count=4
    )
    assert walk.expect_total == 24


def step_then(total: int, **next_page: object) -> Walk:
    walk = Walk(lower_bound=at(0)).after_page(
        served_at=at(100), total=27, updated_ats=[at(1), at(2), at(5.5)], has_next=True
    )
    assert walk.expect_total == 25
    page: dict[str, object] = {
        "served_at": at(101),
        "updated_ats": [at(5.5), at(6), at(7)],
        "has_next": True,
    }
    page.update(next_page)
    return walk.after_page(total=total, **page)  # type: ignore[arg-type]


def test_a_total_that_meets_the_expectation_keeps_the_order_trusted() -> None:
    walk = step_then(25)
    assert (walk.keyset, walk.distrust, walk.lower_bound, walk.expect_total) == (
        True,
        None,
        at(6),
        25 - 3 + 1,
    )


def test_a_total_below_the_expectation_starts_the_walk_over_by_offset_pages() -> None:
    walk = step_then(24)
    assert not walk.keyset
    assert walk.distrust is not None
    assert "X-Total 24" in walk.distrust
    assert (walk.lower_bound, walk.page, walk.stepped, walk.watched) == (at(0), 1, False, False)
    # The query from the start is watched from its first page and never steps again.
    walk = walk.after_page(
        served_at=at(102), total=27, updated_ats=[at(1), at(2), at(5.5)], has_next=True
    )
    assert (walk.lower_bound, walk.page, walk.watch_since, walk.watch_lower) == (
        at(0),
        2,
        at(102),
        at(0),
    )


def test_the_walk_starts_over_even_when_the_page_that_shows_it_is_the_last() -> None:
    walk = step_then(2, has_next=False)
    assert (walk.done, walk.lower_bound, walk.page, walk.keyset) == (False, at(0), 1, False)


def test_an_unsorted_page_after_a_step_starts_the_walk_over() -> None:
    walk = step_then(30, updated_ats=[at(9), at(6), at(7)])
    assert (walk.lower_bound, walk.page, walk.keyset) == (at(0), 1, False)
    assert walk.distrust == "a page not sorted by updated_at"


def test_a_page_that_starts_before_the_last_one_ended_is_not_sorted_order() -> None:
    walk = Walk(lower_bound=at(5)).after_page(
        served_at=at(100), total=30, updated_ats=[at(5.1), at(5.8)], has_next=True
    )
    assert (walk.page, walk.keyset) == (2, True)  # a pocket: offset paging, still trusted
    walk = walk.after_page(
        served_at=at(101), total=30, updated_ats=[at(5.2), at(5.9)], has_next=True
    )
    assert not walk.keyset
    assert walk.distrust == "a page that starts before the previous page ended"


def test_without_x_total_the_order_cannot_be_verified() -> None:
    walk = Walk(lower_bound=None).after_page(
        served_at=at(100), total=None, updated_ats=[at(1), at(5.5)], has_next=True
    )
    assert (walk.keyset, walk.page, walk.lower_bound) == (False, 2, None)


def test_pages_that_continue_a_stepped_query_count_toward_what_it_served() -> None:
    """A sprint's pages 2 and 3 of the query page 1 stepped past; the check after them."""
    walk = Walk(lower_bound=None).after_page(
        served_at=at(100), total=9, updated_ats=[at(1), at(2), at(3)], has_next=True
    )
    walk = walk.after_page(
        served_at=at(100),
        total=9,
        updated_ats=[at(4), at(5), at(6)],
        has_next=True,
        offset=3,
    )
    assert (walk.keyset, walk.lower_bound, walk.expect_total) == (True, at(5), 9 - 6 + 1)
    walk = walk.after_page(
        served_at=at(100),
        total=9,
        updated_ats=[at(7), at(8), at(9)],
        has_next=False,
        offset=6,
    )
    assert (walk.keyset, walk.done) == (True, True)


def test_the_verdict_survives_a_round_trip_through_json() -> None:
    walk = step_then(24)
    assert Walk.from_json(walk.to_json()) == walk
    stepped = step_then(25)
    assert Walk.from_json(stepped.to_json()) == stepped


def test_a_walk_saved_before_the_order_was_verified_still_loads() -> None:
    old = {
        "lower_bound": at(3).isoformat(),
        "page": 2,
        "pages": 4,
        "keyset": True,
        "query_started_at": at(90).isoformat(),
        "query_total": 40,
        "max_stored": at(5).isoformat(),
        "watch_since": None,
        "watch_lower": None,
        "disturbed": False,
    }
    walk = Walk.from_json(old)
    assert (walk.start, walk.stepped, walk.expect_total, walk.done) == (at(3), False, None, False)


@pytest.mark.parametrize("recheck", [False, True], ids=["distrust", "recheck"])
@pytest.mark.parametrize("seed", range(100))
def test_sorted_order_with_deletions_loses_nothing_with_or_without_rechecks(
    seed: int, recheck: bool
) -> None:
    rng = random.Random(seed)
    api = make_api(rng, pockets=seed % 3 == 0)
    stored: dict[int, float] = {}
    watermark: datetime | None = None
    for _ in range(3):
        watermark, _ = walk_once(api, stored, watermark, rng, recheck=recheck)
    quiet = random.Random(seed)
    quiet.choice = lambda seq: 0  # type: ignore[assignment,method-assign]
    walk_once(api, stored, watermark, quiet, recheck=recheck)
    assert {i: stored.get(i) for i in api.records} == api.records


def test_a_deletion_explains_a_short_total_when_the_previous_query_has_shrunk_as_much() -> None:
    walk = Walk(lower_bound=at(0)).after_page(
        served_at=at(100), total=27, updated_ats=[at(1), at(2), at(5.5)], has_next=True
    )
    assert (walk.recheck_lower, walk.recheck_drop, walk.expect_total) == (at(0), 2, 25)
    assert walk.needs_recheck(24)
    assert not walk.needs_recheck(25)
    # One record deleted since: the query from 0 now holds 26, so 24 is what sorted order leaves.
    page = {"served_at": at(101), "updated_ats": [at(5.5), at(6), at(7)], "has_next": True}
    trusted = walk.after_page(total=24, recheck_total=26, **page)  # type: ignore[arg-type]
    assert (trusted.keyset, trusted.lower_bound, trusted.stepped) == (True, at(6), True)
    # The previous query unchanged: records were dropped by an order that was not sorted.
    caught = walk.after_page(total=24, recheck_total=27, **page)  # type: ignore[arg-type]
    assert (caught.keyset, caught.lower_bound, caught.stepped) == (False, at(0), False)


def test_the_recheck_of_a_sprint_asks_the_query_the_sprint_continued() -> None:
    walk = Walk(lower_bound=at(0)).after_page(
        served_at=at(100), total=9, updated_ats=[at(1), at(2), at(3)], has_next=True
    )
    walk = walk.after_page(
        served_at=at(100), total=9, updated_ats=[at(4), at(5), at(6)], has_next=True, offset=3
    )
    assert (walk.recheck_lower, walk.recheck_drop, walk.expect_total) == (at(0), 5, 4)
