"""Where a table and its source differ, found from counts alone: the pure part of verify.

A list that takes ``updated_after`` and reports ``X-Total`` tells, for one request with
``per_page=1``, how many records it holds changed after any time T. The warehouse tells the
same of its live rows. So the difference of the two counts above T, as T goes back in time,
changes exactly where records are missing from the warehouse or extra in it (a record whose
``updated_at`` is behind the watermark was never read; a record deleted at the source was
never marked). Comparing them along a ladder of times (a day back, two, four, ... until both
counts are whole) finds the *windows* of ``updated_at`` where the difference moves; bisecting
a window (one request a cut) narrows it until it holds few records, and only those windows are
read again.

Counts see only the net difference of a window: a record missing and another extra in the same
window cancel out, and neither is found (a sweep finds the extra one). Everything after the
stream's watermark (at most a minute before the verify began) is left to the incremental sync:
counts are taken up to that time, and a window that differs is counted once more before it is
repaired, so a record created or changed since the last sync, or while the verify runs, is not
a difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["Window", "differing", "ladder", "split"]

FIRST_STEP = timedelta(days=1)
MAX_STEPS = 16  # 2**15 days back: older than any MOCO account
FEW = 200  # a window holding at most this many source records is read again as it is
FINEST = timedelta(seconds=2)  # windows are never cut finer (updated_after is whole seconds)


def ladder(until: datetime, steps: int = MAX_STEPS) -> list[datetime]:
    """Times back from ``until``: a day, two, four, ... (``steps`` of them), newest first."""
    return [until - FIRST_STEP * (2**i) for i in range(steps)]


@dataclass(frozen=True)
class Window:
    """Records with ``updated_at`` in ``(lower, upper]`` (``lower`` None: from the first).

    ``source`` and ``stored`` are how many the source and the warehouse hold there; their
    difference is what is missing (positive) or extra (negative), net. ``source_top`` and
    ``stored_top`` count what each holds above ``upper``, to cut the window without asking
    again about its top."""

    lower: datetime | None
    upper: datetime
    source: int
    stored: int
    source_top: int = 0
    stored_top: int = 0

    @property
    def difference(self) -> int:
        return self.source - self.stored

    @property
    def few(self) -> bool:
        """Small enough to read again as it is (or too narrow to cut)."""
        narrow = self.lower is not None and self.upper - self.lower <= FINEST
        return max(self.source, self.stored) <= FEW or narrow

    def middle(self) -> datetime:
        assert self.lower is not None
        return (self.lower + (self.upper - self.lower) / 2).replace(microsecond=0)


def differing(
    points: Sequence[datetime | None],
    source_above: Sequence[int],
    stored_above: Sequence[int],
) -> list[Window]:
    """The windows between consecutive ``points`` (newest first; the last may be None: the
    beginning) where the counts differ. ``source_above[i]`` and ``stored_above[i]`` count the
    records changed after ``points[i]`` (for None: all of them); the first point is the top,
    what lies above it is not compared."""
    windows = []
    for i in range(1, len(points)):
        upper, lower = points[i - 1], points[i]
        assert upper is not None
        source = source_above[i] - source_above[i - 1]
        stored = stored_above[i] - stored_above[i - 1]
        if source != stored:
            windows.append(
                Window(lower, upper, source, stored, source_above[i - 1], stored_above[i - 1])
            )
    return windows


def split(
    window: Window,
    source_above_middle: int,
    stored_above_middle: int,
    *,
    middle: datetime | None = None,
) -> list[Window]:
    """``window`` cut at ``middle`` (default: halfway in time), given how many records each
    side holds above it (everything after it, as counted): the parts that still differ."""
    middle = middle or window.middle()
    upper = Window(
        middle,
        window.upper,
        source_above_middle - window.source_top,
        stored_above_middle - window.stored_top,
        window.source_top,
        window.stored_top,
    )
    lower = Window(
        window.lower,
        middle,
        window.source - upper.source,
        window.stored - upper.stored,
        source_above_middle,
        stored_above_middle,
    )
    return [w for w in (lower, upper) if w.difference != 0]
