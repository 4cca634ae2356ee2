"""Deletions no API announces: whether a disappearance may be marked, decided in one place.

Neither MOCO nor MOCA sends tombstones: a deleted record simply stops being listed. The MOCA
scans (``sources/moca/scan.py``) and the sweep (``runners/sweep.py``) therefore
infer deletions from absence.
A mass disappearance is far more often a fault (a key that lost access to part of the data, a
filter a server stopped honouring, an outage answering empty lists) than a real clean-up, and
marking a whole stream deleted would send every downstream consumer the wrong picture. So
when more than ``deletion_guard`` of a stream's live rows are missing at once, nothing is
marked and the run says why; the user confirms at the source and raises the guard for a run.
"""

from __future__ import annotations


def guard_warning(
    stream: str, missing: int, live: int, guard: float, *, missing_from: str, advice: str
) -> str | None:
    """The warning that withholds ``missing`` deletions out of ``live`` rows, or None to mark them.

    ``guard`` is the share (0 < guard <= 1) of the live rows that may go missing at once;
    exactly that share still passes. ``missing_from`` says where they are missing ("the scan"),
    ``advice`` what to do if the deletions are real.
    """
    if missing <= 0 or missing <= guard * live:
        return None
    return (
        f"{missing} of {live} {stream} ({missing / live:.0%}) are missing from {missing_from}, "
        f"more than deletion_guard = {guard:g}; none were marked deleted. {advice}"
    )
