"""When a sprint (several offset pages of one query at once) may be trusted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from syncer.extract.sprint import SprintPage, pages_to_fetch, trusted, worth_it

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def stamps(first: int, count: int) -> list[datetime | None]:
    return [T0 + timedelta(seconds=first + i) for i in range(count)]


def page(first: int, count: int = 3, *, total: int = 9, more: bool = True) -> SprintPage:
    return SprintPage(total=total, count=count, stamps=stamps(first, count), has_next=more)


BEFORE = T0 - timedelta(seconds=1)  # the last record read before the sprint


def test_full_sorted_pages_that_step_strictly_and_agree_on_the_total_are_trusted() -> None:
    assert trusted(9, 3, BEFORE, [page(0), page(3), page(6, more=False)], changed=False)
    assert trusted(9, 3, BEFORE, [page(0), page(3)], changed=False)  # more to come


def test_a_change_meanwhile_is_not_trusted() -> None:
    assert not trusted(9, 3, BEFORE, [page(0), page(3)], changed=True)


def test_a_total_that_moved_is_not_trusted() -> None:
    assert not trusted(9, 3, BEFORE, [page(0), page(3, total=8)], changed=False)


def test_equal_stamps_across_a_page_boundary_are_not_trusted() -> None:
    tied = SprintPage(9, 3, [T0 + timedelta(seconds=2), *stamps(4, 2)], True)
    assert not trusted(9, 3, BEFORE, [page(0), tied], changed=False)
    # ... nor across the boundary with the page read before the sprint
    assert not trusted(9, 3, T0, [page(0)], changed=False)


def test_short_unsorted_or_unstamped_pages_are_not_trusted() -> None:
    assert not trusted(9, 3, BEFORE, [page(0, count=2), page(3)], changed=False)
    backwards = SprintPage(9, 3, list(reversed(stamps(0, 3))), True)
    assert not trusted(9, 3, BEFORE, [backwards], changed=False)
    unstamped = SprintPage(9, 3, [*stamps(0, 2), None], True)
    assert not trusted(9, 3, BEFORE, [unstamped], changed=False)
    rejected = SprintPage(9, 3, stamps(0, 2), True)  # three served, two storable
    assert not trusted(9, 3, BEFORE, [rejected], changed=False)


def test_a_page_that_ends_the_query_before_the_sprint_ends_is_not_trusted() -> None:
    assert not trusted(9, 3, BEFORE, [page(0, more=False), page(3)], changed=False)
    assert not trusted(9, 3, BEFORE, [], changed=False)


def test_pages_to_fetch_stops_at_the_querys_last_page() -> None:
    assert pages_to_fetch(2, 1000, 100, 4) == [2, 3, 4, 5]
    assert pages_to_fetch(9, 1000, 100, 4) == [9, 10]
    assert pages_to_fetch(11, 1000, 100, 4) == []


def test_sprints_only_where_one_page_at_a_time_leaves_the_limit_unused() -> None:
    assert worth_it(allowed_per_s=1000, latency_s=0.01, remaining_pages=16, width=8)
    assert not worth_it(allowed_per_s=1.0, latency_s=0.3, remaining_pages=100, width=8)  # MOCO
    assert worth_it(allowed_per_s=10.0, latency_s=0.3, remaining_pages=100, width=8)  # unlimited
    assert not worth_it(allowed_per_s=1000, latency_s=0.01, remaining_pages=15, width=8)
    assert not worth_it(allowed_per_s=1000, latency_s=0.01, remaining_pages=100, width=1)
