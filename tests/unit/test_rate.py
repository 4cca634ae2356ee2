from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from syncer.store.rate import Limit, wait_s

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def t(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_spending_that_fits_needs_no_wait() -> None:
    assert wait_s([(t(0), 40)], Limit(100, 60), 60, t(10)) == 0


def test_spending_waits_until_enough_of_the_window_has_expired() -> None:
    spent = [(t(0), 40), (t(5), 40), (t(20), 10)]
    # 90 used, 30 needed: 20 too many; the first entry (40) frees at 60 s.
    assert wait_s(spent, Limit(100, 60), 30, t(30)) == pytest.approx(30)
    # 60 needed: 50 too many; the first two entries (80) free at 65 s.
    assert wait_s(spent, Limit(100, 60), 60, t(30)) == pytest.approx(35)


def test_asking_for_more_than_the_limit_at_once_is_an_error() -> None:
    with pytest.raises(ValueError, match="can never fit"):
        wait_s([], Limit(10, 1), 11, t(0))
