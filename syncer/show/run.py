"""The daemon: what its jobs show beside the log, and the JSON document of ``run --once``."""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, cast

from syncer.commands import Backfill, Command
from syncer.results import Outcome, Report
from syncer.show import backfill

if TYPE_CHECKING:
    from syncer.results import BackfillResult
    from syncer.scheduler import JobOutcome


def job_progress(command: Command) -> Callable[[Any], None] | None:
    """A job's progress: a line per window of a backfill, nothing for the others (the daemon
    logs each job)."""
    if isinstance(command, Backfill):
        return backfill.progress_lines(command.source, command.stream)
    return None


def job_finished(command: Command, result: Report) -> None:
    """A backfill job's summary line, and its errors on stderr unless it succeeded."""
    if isinstance(command, Backfill):
        backfill.print_summary(cast("BackfillResult", result))
        if result.outcome != Outcome.SUCCEEDED:
            print(f"error: {'; '.join(result.errors)}", file=sys.stderr)


def run_json(
    outcomes: Sequence[JobOutcome], code: int, elapsed_s: float, *, interrupted: bool
) -> dict[str, Any]:
    """``run --once --json``: each job's outcome; ``interrupted`` when a signal stopped it."""
    failed = [o for o in outcomes if o.outcome == "failed"]
    return {
        "command": "run",
        "outcome": "interrupted" if interrupted else "failed" if failed else "succeeded",
        "exit_code": code,
        "jobs": [
            {
                "job": o.job,
                "outcome": o.outcome,
                "error": o.error,
                "elapsed_s": round(o.duration_s, 3),
            }
            for o in outcomes
        ],
        "errors": [f"job {o.job}: {o.error}" for o in failed],
        "warnings": [],
        "elapsed_s": round(elapsed_s, 3),
    }
