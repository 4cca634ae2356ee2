"""The daemon's jobs in Postgres: their ticks (``syncer.job_fires``) and their runs.

A tick is one fire time of a job. The replica whose insert of the row (job, fire time) lands
runs it and records how it ended; the others find the row and leave the tick alone. A job's
runs are the rows of ``syncer.runs`` whose command is the job's (:func:`command_line`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from syncer.store.types import Connection


@dataclass(frozen=True)
class JobRun:
    """A run of a job, as ``syncer.runs`` holds it."""

    started_at: datetime
    outcome: str  # running, succeeded, failed, interrupted


@dataclass(frozen=True)
class Tick:
    """A tick of a job, as ``syncer.job_fires`` holds it."""

    fire_time: datetime
    outcome: str  # running, succeeded, failed, interrupted, skipped, busy
    error: str | None


def command_line(job_id: str, run: str) -> str:
    """What ``syncer.runs`` records as the command of a run of the job ``job_id``."""
    return f"job {job_id}: {run}"


async def claim_tick(conn: Connection, job_id: str, fire: datetime, replica: str) -> bool:
    """Claim the job's tick of ``fire`` for ``replica``; False if another replica has it."""
    claimed = await conn.fetchval(
        "insert into syncer.job_fires (job_id, fire_time, replica)"
        " values ($1, $2, $3) on conflict do nothing returning true",
        job_id,
        fire,
        replica,
    )
    return bool(claimed)


async def finish_tick(
    conn: Connection,
    job_id: str,
    fire: datetime,
    *,
    outcome: str,
    error: str | None,
    attempts: int,
) -> None:
    """Record how the tick this replica claimed ended."""
    await conn.execute(
        "update syncer.job_fires set finished_at = now(), outcome = $3, error = $4,"
        " attempts = $5 where job_id = $1 and fire_time = $2",
        job_id,
        fire,
        outcome,
        error,
        attempts,
    )


async def finished_outcomes(
    conn: Connection, job_id: str, *, before: datetime, limit: int
) -> list[str]:
    """The outcomes of the job's last ``limit`` finished ticks before ``before``, newest first.

    Ticks skipped (the job ran elsewhere) are left out: they say nothing of its work.
    """
    rows = await conn.fetch(
        "select outcome from syncer.job_fires where job_id = $1 and fire_time < $2"
        " and finished_at is not null and outcome <> 'skipped'"
        " order by fire_time desc limit $3",
        job_id,
        before,
        limit,
    )
    return [row["outcome"] for row in rows]


async def last_run(conn: Connection, job_id: str) -> JobRun | None:
    """The job's latest run (``syncer.runs``), None if it never ran."""
    row = await conn.fetchrow(
        "select started_at, outcome from syncer.runs where command like $1"
        " order by started_at desc limit 1",
        command_line(job_id, "%"),
    )
    return JobRun(row["started_at"], row["outcome"]) if row else None


async def last_ticks(conn: Connection, job_id: str, limit: int = 100) -> list[Tick]:
    """The job's last ``limit`` ticks, newest first: also those that ran nothing (skipped,
    busy) and the one still running."""
    rows = await conn.fetch(
        "select fire_time, outcome, error from syncer.job_fires where job_id = $1"
        " order by fire_time desc limit $2",
        job_id,
        limit,
    )
    return [Tick(row["fire_time"], row["outcome"], row["error"]) for row in rows]
