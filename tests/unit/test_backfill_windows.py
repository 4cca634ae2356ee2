"""How a backfill's range is cut into windows, and when earlier windows already cover one."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta

import pytest

from syncer.runners.backfill import MAX_WINDOWS, covered, plan_windows

DAY = timedelta(days=1)


def utc(y: int, m: int, d: int, h: int = 0) -> datetime:
    return datetime(y, m, d, h, tzinfo=UTC)


def test_windows_cover_the_days_from_since_to_until_inclusive_in_utc() -> None:
    windows = plan_windows(date(2024, 1, 1), date(2024, 1, 31), 10 * DAY)
    assert windows == [
        (utc(2024, 1, 1), utc(2024, 1, 11)),
        (utc(2024, 1, 11), utc(2024, 1, 21)),
        (utc(2024, 1, 21), utc(2024, 1, 31)),
        (utc(2024, 1, 31), utc(2024, 2, 1)),  # the last one cut at the range's end
    ]


def test_one_day_is_one_window_and_a_window_longer_than_the_range_is_cut() -> None:
    assert plan_windows(date(2024, 2, 29), date(2024, 2, 29), 30 * DAY) == [
        (utc(2024, 2, 29), utc(2024, 3, 1))
    ]
    assert plan_windows(date(2024, 1, 1), date(2024, 1, 2), timedelta(hours=12)) == [
        (utc(2024, 1, 1, 0), utc(2024, 1, 1, 12)),
        (utc(2024, 1, 1, 12), utc(2024, 1, 2, 0)),
        (utc(2024, 1, 2, 0), utc(2024, 1, 2, 12)),
        (utc(2024, 1, 2, 12), utc(2024, 1, 3, 0)),
    ]


@pytest.mark.parametrize("seed", range(50))
def test_windows_are_contiguous_disjoint_aligned_and_within_the_window_length(seed: int) -> None:
    rng = random.Random(seed)
    since = date(2020, 1, 1) + timedelta(days=rng.randint(0, 1500))
    until = since + timedelta(days=rng.randint(0, 400))
    window = timedelta(seconds=rng.choice([3600, 86400, 7 * 86400, 30 * 86400, 12345]))
    windows = plan_windows(since, until, window)
    assert windows[0][0] == datetime.combine(since, datetime.min.time(), UTC)
    assert windows[-1][1] == datetime.combine(until + DAY, datetime.min.time(), UTC)
    for (_, e1), (s2, _) in itertools.pairwise(windows):
        assert e1 == s2
    assert all(s < e <= s + window for s, e in windows)
    assert all(e - s == window for s, e in windows[:-1])
    # The same arguments give the same plan: a rerun finds its windows again.
    assert plan_windows(since, until, window) == windows


def test_a_bad_range_or_window_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="before it begins"):
        plan_windows(date(2024, 2, 1), date(2024, 1, 1), DAY)
    with pytest.raises(ValueError, match="at least one second"):
        plan_windows(date(2024, 1, 1), date(2024, 1, 2), timedelta(0))
    with pytest.raises(ValueError, match="larger window"):
        plan_windows(date(2000, 1, 1), date(2024, 1, 1), timedelta(seconds=1))
    assert MAX_WINDOWS >= 10_000


def test_a_window_is_covered_by_one_done_window_or_by_several_that_meet() -> None:
    w = (utc(2024, 1, 10), utc(2024, 1, 20))
    assert covered(w, [w])
    assert covered(w, [(utc(2024, 1, 1), utc(2024, 2, 1))])
    assert covered(w, [(utc(2024, 1, 15), utc(2024, 1, 25)), (utc(2024, 1, 5), utc(2024, 1, 15))])
    assert not covered(w, [])
    assert not covered(w, [(utc(2024, 1, 10), utc(2024, 1, 19))])
    assert not covered(w, [(utc(2024, 1, 11), utc(2024, 1, 25))])
    # A gap between done windows leaves the window to read.
    assert not covered(
        w, [(utc(2024, 1, 1), utc(2024, 1, 14)), (utc(2024, 1, 15), utc(2024, 1, 25))]
    )


def test_a_rerun_with_a_smaller_window_skips_what_a_larger_one_read() -> None:
    big = plan_windows(date(2024, 1, 1), date(2024, 3, 31), 30 * DAY)
    small = plan_windows(date(2024, 1, 1), date(2024, 3, 31), 7 * DAY)
    assert all(covered(w, big) for w in small)
    assert not any(covered(w, big[:1]) for w in small[5:])
