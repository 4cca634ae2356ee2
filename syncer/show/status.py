"""``syncer status``: the streams, the jobs and each destination's models, as tables (with a
line for each error, stale stream, held or truncated row) or as one JSON document."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from syncer.errors import EXIT_FAILED, EXIT_OK
from syncer.show.console import age_text, console, print_json, when

if TYPE_CHECKING:
    from syncer.status import JobStatus, Status
    from syncer.store.status import Freshness, ModelStatus, StreamStatus


def job_json(status: JobStatus) -> dict[str, Any]:
    from syncer.durations import format_duration

    job, last, tick = status.job, status.last_run, status.last_tick
    schedule = (
        f"cron {job.cron} ({job.timezone})"
        if job.cron
        else f"every {format_duration(job.every_s or 0)}"
    )
    return {
        "id": job.id,
        "run": job.run,
        "schedule": schedule,
        "last_run_at": last.started_at.isoformat() if last else None,
        "last_outcome": last.outcome if last else None,
        "next_run_at": status.next_run_at.isoformat() if status.next_run_at else None,
        "last_tick_at": tick.fire_time.isoformat() if tick else None,
        "last_tick_outcome": tick.outcome if tick else None,
        "last_tick_error": tick.error if tick else None,
        "busy_in_a_row": status.busy_in_a_row,
    }


def print_status_json(status: Status) -> None:
    print_json(
        {
            "streams": [s.to_json() for s in status.streams],
            "destinations": {
                name: [m.to_json() for m in models] for name, models in status.destinations.items()
            },
            "jobs": [job_json(j) for j in status.jobs],
        }
    )


def print_status(status: Status) -> None:
    _print_streams(status.streams)
    if status.jobs:
        _print_jobs([job_json(j) for j in status.jobs])
    for name, models in status.destinations.items():
        _print_destination(name, models)


def _print_streams(statuses: Sequence[StreamStatus]) -> None:
    from rich.table import Table

    table = Table(title="streams")
    columns = (
        "stream",
        "rows",
        "watermark",
        "newest record",
        "last run",
        "outcome",
        "last success",
        "fresh",
        "rejected",
        "verified",
    )
    for column in columns:
        table.add_column(column, justify="right" if column in ("rows", "rejected") else "left")
    for s in (s for s in statuses if s.shown):
        outcome = s.last_run_outcome or "never run"
        if s.in_progress:
            outcome += " (a walk in progress resumes)"
        table.add_row(
            f"{s.source}.{s.stream}",
            str(s.rows),
            when(s.watermark),
            age_text(s.freshness.newest_record_age_s, "-"),
            when(s.last_run_at),
            outcome,
            age_text(s.freshness.since_success_s, "never"),
            _fresh_text(s.freshness),
            str(s.rejected),
            _verified_text(s),
        )
    console().print(table)
    hidden = Counter(s.source for s in statuses if not s.shown)
    for source, n in sorted(hidden.items()):
        print(f"{source}: {n} more streams, not configured (syncer streams {source} lists them)")
    for s in statuses:
        if s.last_error and s.last_run_outcome != "succeeded":
            print(f"{s.source}.{s.stream}: {s.last_error}")
    stale = [f"{s.source}.{s.stream}" for s in statuses if s.freshness.stale]
    if stale:
        print(f"STALE (no successful sync within stale_after): {', '.join(stale)}")


def _verified_text(s: StreamStatus) -> str:
    """When the stream was last verified and with what result: "2h ago ✓", "1d ago: 3 missing,
    1 extra, repaired", "never"; "-" for a stream verify cannot compare."""
    check = s.verification
    if not s.verifiable:
        return "-"
    if check is None or check.verified_at is None:
        return "never"
    from datetime import UTC, datetime

    from syncer.durations import format_age

    ago = f"{format_age((datetime.now(UTC) - check.verified_at).total_seconds())} ago"
    if check.outcome == "verified":
        return f"{ago} [green]✓[/]"
    if check.outcome == "failed":
        return f"{ago} [bold red]failed[/]"
    found = f"{check.missing} missing, {check.extra} extra"
    if check.outcome == "repaired":
        return f"{ago}: {found}, repaired"
    return f"{ago} [bold red]{found}, {check.unrepaired} not repaired[/]"


def _fresh_text(freshness: Freshness) -> str:
    """A red STALE with the threshold, "ok", or "-" for a stream the source does not sync."""
    from syncer.durations import format_age

    if freshness.stale:
        return f"[bold red]STALE[/] (> {format_age(freshness.stale_after_s)})"
    return "ok" if freshness.expected else "-"


def _print_jobs(jobs: Sequence[dict[str, Any]]) -> None:
    """The jobs as their JSON has them: the same moments (ISO 8601) and words."""
    from rich.table import Table

    table = Table(title="jobs")
    for column in ("job", "run", "schedule", "last run", "outcome", "last tick", "next run"):
        table.add_column(column)
    for j in jobs:
        tick = j["last_tick_outcome"] or "-"
        if j["busy_in_a_row"] > 1:
            tick = f"busy ({j['busy_in_a_row']} in a row)"
        table.add_row(
            j["id"],
            j["run"],
            j["schedule"],
            j["last_run_at"] or "-",
            j["last_outcome"] or "never run",
            tick,
            j["next_run_at"] or "-",
        )
    console().print(table)
    for j in jobs:  # why the last tick ran nothing, or failed
        if j["last_tick_outcome"] in ("busy", "failed") and j["last_tick_error"]:
            print(f"job {j['id']}: last tick {j['last_tick_outcome']}: {j['last_tick_error']}")


def _print_destination(name: str, models: Sequence[ModelStatus]) -> None:
    from rich.table import Table

    table = Table(title=f"destination {name}")
    for column in ("model", "pending", "sent", "dead letters", "by reason"):
        table.add_column(column, justify="left" if column in ("model", "by reason") else "right")
    for m in models:
        reasons = ", ".join(f"{rule}: {n}" for rule, n in m.dead_letters.items()) or "-"
        table.add_row(
            m.model, str(m.pending), str(m.sent), str(sum(m.dead_letters.values())), reasons
        )
    console().print(table)
    for m in models:
        for example in m.examples:
            print(f"{name}.{m.model} dead letter: {example}")
        if m.unanswered:
            print(
                f"{name}.{m.model}: {m.unanswered} rows sent without an answer, not yet "
                f"acknowledged ({m.held} held: `syncer load {name} --release-held`)"
            )
        if m.possibly_duplicated:
            print(f"{name}.{m.model}: {m.possibly_duplicated} sends may have duplicated events")
        if m.truncated:
            cuts = ", ".join(f"{label}: {n}" for label, n in sorted(m.truncated.items()))
            print(f"{name}.{m.model} truncated in the last load: {cuts}")


# --- exit codes ---------------------------------------------------------------------------------


def unverified_exit(statuses: Sequence[StreamStatus], max_age_s: float | None) -> int:
    """Exit 1 with ``--fail-if-unverified AGE`` when a stream was not verified within AGE, or
    its last verify left differences."""
    from syncer.durations import format_duration

    if max_age_s is None:
        return EXIT_OK
    now = datetime.now(UTC)
    why = [
        f"{s.source}.{s.stream} ({reason})"
        for s in statuses
        if (reason := s.unverified(now, max_age_s)) is not None
    ]
    if not why:
        return EXIT_OK
    print(
        f"error: {len(why)} stream(s) not verified within "
        f"{format_duration(max_age_s)}: "
        f'{", ".join(why)}; run `syncer verify SOURCE` (a daemon job can: run = "verify moco")',
        file=sys.stderr,
    )
    return EXIT_FAILED


def stale_exit(statuses: Sequence[StreamStatus], fail: bool) -> int:
    """Exit 0 after printing the status; 1 with ``--fail-if-stale`` when a stream is stale."""
    stale = [f"{s.source}.{s.stream}" for s in statuses if s.freshness.stale]
    if not (fail and stale):
        return EXIT_OK
    print(
        f"error: {len(stale)} stream(s) without a successful sync within stale_after: "
        f"{', '.join(stale)}; run `syncer sync SOURCE` or check the daemon's jobs",
        file=sys.stderr,
    )
    return EXIT_FAILED
