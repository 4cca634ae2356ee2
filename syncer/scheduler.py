"""The daemon: the jobs of ``schedules.toml`` on APScheduler 3.11's asyncio scheduler.

- A job is a syncer command line (``sync moco``, ``load moengage``, ``backfill …``,
  ``sweep moco``) run in this process on the daemon's one pool and one HTTP session.
- A job never overlaps itself, here or in another replica: it runs only while holding a
  PostgreSQL advisory lock on its own connection; a replica that dies drops the connection and
  with it the lock, and another replica runs the job at its next tick.
- Missed ticks collapse into one (``coalesce``); a late tick still runs within the grace time.
- A failing job is logged with its cause and runs again at its next tick.
- SIGTERM/SIGINT: no new job starts; pages and batches in flight finish and commit; the daemon
  exits 0 within ``SHUTDOWN_GRACE_S``. A second signal exits at once (every page is its own
  transaction, so nothing half-written is left).
- ``--once``: every job once, in order; exit 1 if any failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import signal
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp

from syncer import observability, shutdown
from syncer.config import JobSettings, Settings
from syncer.errors import EXIT_FAILED, EXIT_OK, ConfigError, SyncerError
from syncer.store import locks

log = logging.getLogger(__name__)

JOB_LOCK_CLASS = locks.JOB
SHUTDOWN_GRACE_S = 8.0
MISFIRE_GRACE_S = 300  # a tick late by up to this much still runs


@dataclass
class JobOutcome:
    job: str
    outcome: str  # succeeded, failed, skipped (another replica holds it), interrupted
    error: str | None = None
    duration_s: float = 0.0


@dataclass
class Daemon:
    settings: Settings
    pool: Any
    session: aiohttp.ClientSession
    running: set[asyncio.Task[Any]] = field(default_factory=set)
    outcomes: list[JobOutcome] = field(default_factory=list)

    async def run_job(self, job: JobSettings) -> JobOutcome:
        """Run ``job`` if no replica is running it; its outcome."""
        started = time.monotonic()
        if shutdown.requested():
            return JobOutcome(job.id, "skipped", "stopping")
        async with self.pool.acquire() as lock:
            held = await lock.fetchval(
                "select pg_try_advisory_lock($1, hashtext($2))", JOB_LOCK_CLASS, job.id
            )
            if not held:
                log.info("job %s: running elsewhere; skipped this tick", job.id)
                return self._record(JobOutcome(job.id, "skipped", "running in another replica"))
            try:
                log.info("job %s: started (%s)", job.id, job.run)
                outcome = await self._execute(job)
            except shutdown.Interrupted:
                outcome = JobOutcome(job.id, "interrupted", "stopped by a signal")
            except SyncerError as exc:
                outcome = JobOutcome(job.id, "failed", exc.message)
            except Exception as exc:  # a job's bug must not stop the daemon
                log.exception("job %s: unexpected error", job.id)
                outcome = JobOutcome(job.id, "failed", f"{type(exc).__name__}: {exc}")
            finally:
                await lock.execute(
                    "select pg_advisory_unlock($1, hashtext($2))", JOB_LOCK_CLASS, job.id
                )
        outcome.duration_s = time.monotonic() - started
        if outcome.outcome == "failed":
            log.error("job %s: failed: %s (runs again at its next tick)", job.id, outcome.error)
        else:
            log.info("job %s: %s in %.1fs", job.id, outcome.outcome, outcome.duration_s)
        return self._record(outcome)

    def _record(self, outcome: JobOutcome) -> JobOutcome:
        self.outcomes.append(outcome)
        _metrics_run(outcome)
        return outcome

    async def _execute(self, job: JobSettings) -> JobOutcome:
        args = parse_job(job)
        command = f"job {job.id}: {job.run}"
        if args.command == "sync":
            from syncer.pipeline import shared_limiter_for, sync_source

            source = self.settings.source(args.source)
            result = await sync_source(
                self.pool,
                self.session,
                source,
                streams=args.stream,
                full_refresh=args.full_refresh,
                command=command,
                limiter=shared_limiter_for(self.pool, source),
            )
            _metrics_sync(result, job.id)
            if result.outcome_interrupted:
                raise shutdown.Interrupted()
            return JobOutcome(job.id, "succeeded" if result.ok else "failed",
                              "; ".join(result.errors) or None)  # fmt: skip
        if args.command == "load":
            from syncer.destinations.moengage import load_destination

            loaded = await load_destination(
                self.pool,
                self.session,
                self.settings.destination(args.destination),
                only=args.only,
                command=command,
            )
            _metrics_load(loaded, job.id)
            if loaded.outcome == "interrupted":
                raise shutdown.Interrupted()
            return JobOutcome(job.id, loaded.outcome, loaded.error)
        if args.command == "sweep":
            return await self._sweep(job, args, command)
        return await self._backfill(job, args, command)

    async def _sweep(self, job: JobSettings, args: argparse.Namespace, command: str) -> JobOutcome:
        from syncer.pipeline import shared_limiter_for
        from syncer.sweep import sweep_source, sweepable

        source = sweepable(self.settings, args.source, args.stream)
        result = await sweep_source(
            self.pool, self.session, source, streams=args.stream, command=command,
            limiter=shared_limiter_for(self.pool, source),
        )  # fmt: skip
        _metrics_sync(result, job.id)  # a stream's deletions count as its rows changed
        if result.outcome_interrupted:
            raise shutdown.Interrupted()
        return JobOutcome(job.id, "succeeded" if result.ok else "failed",
                          "; ".join(result.errors) or None)  # fmt: skip

    async def _backfill(
        self, job: JobSettings, args: argparse.Namespace, command: str
    ) -> JobOutcome:
        from syncer.cli import run_backfill_command

        code = await run_backfill_command(self.pool, self.session, self.settings, args, command)
        return JobOutcome(job.id, "succeeded" if code == EXIT_OK else "failed")


def parse_job(job: JobSettings) -> argparse.Namespace:
    """The job's command line, parsed as the CLI parses it; ConfigError naming the job."""
    from syncer.cli import build_parser

    words = shlex.split(job.run)
    parser = build_parser()
    try:
        with contextlib.redirect_stderr(_Discard()):
            args = parser.parse_args(words)
    except SystemExit:
        raise ConfigError(
            f'jobs ({job.id}).run: "{job.run}" is not a valid syncer command line; '
            "try it by hand as `syncer " + job.run + "`"
        ) from None
    if args.command not in ("sync", "load", "backfill", "sweep"):
        raise ConfigError(
            f'jobs ({job.id}).run: "{job.run}" must be a sync, load, backfill or sweep'
        )
    return args


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def check_jobs(settings: Settings) -> None:
    """Every job's command line and its source or destination, checked before anything runs."""
    problems: list[str] = []
    for job in settings.jobs:
        try:
            args = parse_job(job)
            if args.command == "sweep":
                from syncer.sweep import sweepable

                sweepable(settings, args.source, args.stream)
            elif args.command in ("sync", "backfill"):
                settings.source(args.source)
            else:
                settings.destination(args.destination)
        except ConfigError as exc:
            problems += [f"jobs ({job.id}): {p}" if not p.startswith("jobs (") else p
                         for p in exc.problems]  # fmt: skip
    if problems:
        raise ConfigError(problems)


def trigger_for(job: JobSettings) -> Any:
    """The APScheduler trigger of a job: every N seconds, or cron in its time zone."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if job.cron is not None:
        return CronTrigger.from_crontab(job.cron, timezone=job.timezone)
    assert job.every_s is not None
    return IntervalTrigger(seconds=job.every_s, timezone=job.timezone)


def next_run(job: JobSettings, last_start: datetime | None, now: datetime) -> datetime | None:
    """When the job runs next: the cron's next time, or the last start plus the interval."""
    if job.cron is not None:
        fire: datetime | None = trigger_for(job).get_next_fire_time(None, now)
        return fire
    assert job.every_s is not None
    if last_start is None:
        return now  # a daemon runs interval jobs at start
    return max(now, last_start + timedelta(seconds=job.every_s))


async def run_daemon(daemon: Daemon, *, once: bool) -> int:
    """Run the jobs until a signal (or once each); the exit code."""
    shutdown.reset()
    jobs = daemon.settings.jobs
    if not jobs:
        raise ConfigError(
            "no [[jobs]] in the configuration; add one, e.g. "
            '[[jobs]] id = "moco" run = "sync moco" every = "15m"'
        )
    if once:
        for job in jobs:
            await daemon.run_job(job)
        failed = [o for o in daemon.outcomes if o.outcome == "failed"]
        for o in failed:
            log.error("job %s failed: %s", o.job, o.error)
        return EXIT_FAILED if failed else EXIT_OK

    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: exiting at once")
            os._exit(130)
        log.info("signal received: finishing the work in flight, starting nothing new")
        shutdown.request()
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)

    scheduler = AsyncIOScheduler(
        timezone=UTC,
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_S},
    )
    for job in jobs:
        first = datetime.now(UTC) if job.every_s is not None else None

        async def tick(job: JobSettings = job) -> None:
            task = asyncio.current_task()
            assert task is not None
            daemon.running.add(task)
            try:
                await daemon.run_job(job)
            finally:
                daemon.running.discard(task)

        options: dict[str, Any] = {"id": job.id, "name": job.id}
        if first is not None:
            options["next_run_time"] = first
        scheduler.add_job(tick, trigger_for(job), **options)
    scheduler.start()
    log.info("daemon started with %d jobs", len(jobs))
    try:
        await stop.wait()
    finally:
        # Pause, not shutdown: APScheduler's shutdown cancels running jobs, and the page or
        # batch in flight is to finish and commit. Jobs stop themselves at the next check.
        scheduler.pause()
        if daemon.running:
            _, pending = await asyncio.wait(set(daemon.running), timeout=SHUTDOWN_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        scheduler.shutdown(wait=False)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("daemon stopped")
    return EXIT_OK


def _metrics_run(outcome: JobOutcome) -> None:
    observability.record_run(outcome.job, outcome.outcome, outcome.duration_s)


def _metrics_sync(result: Any, job: str) -> None:
    observability.record_sync(result, job)


def _metrics_load(result: Any, job: str) -> None:
    observability.record_load(result, job)
