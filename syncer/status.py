"""What ``syncer status`` reports, gathered: each source's streams, each destination's models,
and each job's last run, last tick and next run. (How it reads is ``syncer.show.status``'s.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from syncer import registry
from syncer.config import DEFAULT_STALE_AFTER_S, JobSettings, Settings
from syncer.runners.load_status import destination_status
from syncer.scheduler import next_run
from syncer.store import jobs, verify
from syncer.store.status import no_rows, stream_statuses
from syncer.store.types import Connection
from syncer.warehouse import schema_ready

if TYPE_CHECKING:
    from syncer.store.status import ModelStatus, StreamStatus


@dataclass(frozen=True)
class JobStatus:
    """A job: its last run, its last tick (``syncer.job_fires``: also the ticks that ran
    nothing, busy or timed out), and when it runs next."""

    job: JobSettings
    last_run: jobs.JobRun | None
    last_tick: jobs.Tick | None
    busy_in_a_row: int  # the ticks, newest first, that found its work busy
    next_run_at: datetime | None


@dataclass(frozen=True)
class Status:
    streams: list[StreamStatus]
    destinations: dict[str, Sequence[ModelStatus]]  # by destination, per model
    jobs: list[JobStatus]


async def gather(conn: Connection, settings: Settings) -> Status:
    """The status of everything ``settings`` configures; with no source, the built-in types'
    tables in the schemas the migrations made."""
    streams = []
    for src in settings.sources.values():
        kind = registry.source_type(src.type)
        ready = await schema_ready(conn, src)  # a source never synced shows empty tables
        found = await stream_statuses(
            conn,
            src.name,
            src.schema,
            kind.streams,
            count_rows=kind.count_rows if ready else no_rows,
            stale_after_s=src.stale_after_s,
            configured=src.streams,
        )
        catalog = kind.catalog() if kind.catalog is not None and kind.count else None
        checks = await verify.latest(conn, src.name)
        streams += [
            replace(
                s,
                verifiable=catalog is not None
                and s.stream in catalog
                and catalog[s.stream].verifiable,
                verification=checks.get(s.stream),
            )
            for s in found
        ]
    if not settings.sources:  # the built-in schemas, as the migrations made them
        for kind in registry.source_types().values():
            if kind.migrated_schema is not None:
                streams += await stream_statuses(
                    conn,
                    kind.name,
                    kind.migrated_schema,
                    kind.streams,
                    count_rows=kind.count_rows,
                    stale_after_s=DEFAULT_STALE_AFTER_S,
                )
    destinations = {
        name: await destination_status(conn, dest) for name, dest in settings.destinations.items()
    }
    return Status(streams, destinations, await job_statuses(conn, settings))


async def job_statuses(conn: Connection, settings: Settings) -> list[JobStatus]:
    """The status of each job of ``settings``, in their order."""
    now = datetime.now(UTC)
    out = []
    for job in settings.jobs:
        last = await jobs.last_run(conn, job.id)
        ticks = await jobs.last_ticks(conn, job.id)
        busy = next((i for i, t in enumerate(ticks) if t.outcome != "busy"), len(ticks))
        when = next_run(job, last.started_at if last else None, now)
        out.append(JobStatus(job, last, ticks[0] if ticks else None, busy, when))
    return out
