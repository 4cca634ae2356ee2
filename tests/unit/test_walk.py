"""The walk's watermark rule, driven by a simulated offset-paged API with changes mid-walk."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest

from syncer.sources.walk import Walk

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
    api: FakeApi, stored: dict[int, float], watermark: datetime | None, rng: random.Random
) -> tuple[datetime | None, int]:
    """One run: the new watermark and the number of requests it made."""
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
        walk = walk.after_page(
            served_at=at(math.floor(api.now)),
            total=total,
            updated_ats=[at(u) for _, u in chunk],
            has_next=bool(chunk) and more,
        )
        if not (chunk and more):
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
