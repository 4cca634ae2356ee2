"""The daemon: the jobs of ``schedules.toml`` at fire times every replica agrees on.

- A job is a syncer command line (``sync moco``, ``load moengage``, ``backfill …``,
  ``sweep moco``) run in this process on the daemon's one pool and one HTTP session.
- Fire times are the same in every replica: ``every`` fires at whole multiples of the interval
  since 1970-01-01 00:00 UTC (``every = "15m"``: :00, :15, :30, :45), ``cron`` at its times
  (APScheduler 3.11's triggers compute both). At start the daemon runs each ``every`` job for
  the latest fire time already passed.
- One run per tick across replicas: the replica that inserts the row (job, fire time) into
  ``syncer.job_fires`` runs that tick; the others see the row and skip it. The row records
  the replica, when the run finished, its outcome and error.
- A job never overlaps itself, here or in another replica: it runs only while holding a
  PostgreSQL advisory lock on its own connection; a replica that dies drops the connection and
  with it the lock, and another replica runs the job at its next tick.
- Busy is not failed: a job whose work another run holds (:class:`BusyError`) is recorded as
  ``busy`` and logged as ``skipped (busy)``. After ``BUSY_SKIPS_BEFORE_WAIT`` busy ticks in a
  row, the next tick does not give up: it tries again every ``BUSY_RETRY_S`` until the work is
  free (within the job's timeout), so every job runs within a bounded number of its ticks.
- A run still going after the job's ``timeout`` (default 1h) is cancelled: pages already
  committed stay, the tick is recorded ``failed`` ("timed out after …"), its locks are released.
- Missed ticks collapse into one; a tick late by more than ``MISFIRE_GRACE_S`` is not run.
- A failing job is logged with its cause and runs again at its next tick.
- The loop ticks at least every ``HEARTBEAT_S`` and stamps :attr:`Daemon.heartbeat`, which
  ``/healthz`` watches.
- SIGTERM/SIGINT: no new job starts; pages and batches in flight finish and commit; the daemon
  exits 0 within ``SHUTDOWN_GRACE_S``. A second signal exits at once (every page is its own
  transaction, so nothing half-written is left).
- ``--once``: every job once, in order; exit 1 if any failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import aiohttp
import asyncpg

from syncer import commands, dispatch, observability, shutdown
from syncer.config import JobSettings, Settings
from syncer.durations import format_duration
from syncer.errors import EXIT_FAILED, EXIT_OK, BusyError, ConfigError, SyncerError
from syncer.results import Outcome, Report
from syncer.store import jobs, locks
from syncer.store.types import Connection, Pool

if TYPE_CHECKING:
    from syncer.results import SyncResult, VerifyResult

log = logging.getLogger(__name__)

JOB_LOCK_CLASS = locks.JOB
SHUTDOWN_GRACE_S = 8.0
MISFIRE_GRACE_S = 300  # a tick late by up to this much still runs
BUSY_SKIPS_BEFORE_WAIT = 2  # busy ticks in a row after which the next tick waits for the work
BUSY_RETRY_S = 0.5  # how often a waiting tick tries again
HEARTBEAT_S = 1.0  # the loop ticks at least this often
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass
class JobOutcome:
    job: str
    # succeeded, failed, interrupted; skipped (the job runs elsewhere, or stopping);
    # busy (its work was held by another run: a skip, not a failure)
    outcome: str
    error: str | None = None
    duration_s: float = 0.0
    attempts: int = 0


def replica_name() -> str:
    """This daemon in ``syncer.job_fires``: host and process id."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _no_progress(command: commands.Command) -> None:
    return None


def _nothing_to_show(command: commands.Command, result: Report) -> None:
    return None


@dataclass
class Daemon:
    settings: Settings
    pool: Pool
    session: aiohttp.ClientSession
    running: set[asyncio.Task[Any]] = field(default_factory=set)
    outcomes: list[JobOutcome] = field(default_factory=list)
    replica: str = field(default_factory=replica_name)
    heartbeat: float = field(default_factory=time.monotonic)
    # What a job shows beside the log, by default nothing (the CLI passes syncer.show.run's:
    # a backfill's progress lines and summary): the callback its command's progress is told,
    # if any (dispatch.execute's on_progress), and what to show once it ended.
    job_progress: Callable[[commands.Command], Callable[[Any], None] | None] = _no_progress
    job_finished: Callable[[commands.Command, Report], None] = _nothing_to_show

    def beat(self) -> None:
        """The loop is alive (``/healthz`` watches this)."""
        self.heartbeat = time.monotonic()

    async def tick(self, job: JobSettings, fire: datetime) -> JobOutcome | None:
        """Run ``job`` for ``fire`` if this replica claims it first; None if another did."""
        try:
            async with self.pool.acquire() as conn:
                claimed = await jobs.claim_tick(conn, job.id, fire, self.replica)
        except Exception as exc:  # the database is down: the next tick tries again
            log.error(
                "job %s: cannot claim its tick of %s (%s); tries again at its next tick",
                job.id,
                fire.isoformat(),
                _cause(exc),
            )
            return None
        if not claimed:
            log.debug("job %s: tick of %s claimed by another replica", job.id, fire.isoformat())
            return None
        try:
            outcome = await self.run_job(job, fire)
        except asyncio.CancelledError:  # still running when the shutdown grace ran out
            stopped = JobOutcome(job.id, "interrupted", "cancelled when the daemon stopped")
            await asyncio.shield(self._finish(job, fire, stopped))
            raise
        except Exception as exc:  # e.g. the database went away: the next tick tries again
            log.error("job %s: failed: %s (runs again at its next tick)", job.id, _cause(exc))
            outcome = self._record(JobOutcome(job.id, "failed", _cause(exc)))
        await self._finish(job, fire, outcome)
        return outcome

    async def _finish(self, job: JobSettings, fire: datetime, outcome: JobOutcome) -> None:
        """Record the outcome of the tick this replica claimed."""
        try:
            async with self.pool.acquire() as conn:
                await jobs.finish_tick(
                    conn,
                    job.id,
                    fire,
                    outcome=outcome.outcome,
                    error=outcome.error,
                    attempts=outcome.attempts,
                )
        except Exception as exc:
            log.error(
                "job %s: cannot record the outcome of its tick of %s (%s)",
                job.id,
                fire.isoformat(),
                _cause(exc),
            )

    async def run_job(self, job: JobSettings, fire: datetime | None = None) -> JobOutcome:
        """Run ``job`` if no replica is running it; its outcome.

        ``fire``: the tick being run; after ``BUSY_SKIPS_BEFORE_WAIT`` busy ticks in a row the
        run waits for its work instead of skipping again (``--once`` never waits).
        """
        started = time.monotonic()
        if shutdown.requested():
            return JobOutcome(job.id, "skipped", "stopping")
        async with self.pool.acquire() as lock:
            if not await locks.try_lock(lock, JOB_LOCK_CLASS, job.id):
                log.info("job %s: running elsewhere; skipped this tick", job.id)
                return self._record(JobOutcome(job.id, "skipped", "running in another replica"))
            attempts = [0]
            deadline = asyncio.timeout(job.timeout_s)
            try:
                wait = fire is not None and await self._busy_streak(lock, job, fire)
                log.info("job %s: started (%s)", job.id, job.run)
                async with deadline:
                    outcome = await self._attempt(job, wait=wait, attempts=attempts)
            except TimeoutError:
                if not deadline.expired():
                    raise
                outcome = JobOutcome(
                    job.id,
                    "failed",
                    f"timed out after {format_duration(job.timeout_s)}; "
                    "raise the job's timeout if its runs need longer",
                )
                observability.record_timeout(job.id)
            except BusyError as exc:
                outcome = JobOutcome(job.id, "busy", exc.message)
            except shutdown.Interrupted:
                outcome = JobOutcome(job.id, "interrupted", "stopped by a signal")
            except SyncerError as exc:
                outcome = JobOutcome(job.id, "failed", exc.message)
            except (ConnectionError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                outcome = JobOutcome(
                    job.id, "failed", f"the database failed ({_cause(exc)}); check that it is up"
                )
            except Exception as exc:  # a job's bug must not stop the daemon
                log.exception("job %s: unexpected error", job.id)
                outcome = JobOutcome(job.id, "failed", f"{type(exc).__name__}: {exc}")
            finally:
                # A lost connection took the lock with it.
                with contextlib.suppress(OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                    await locks.unlock(lock, JOB_LOCK_CLASS, job.id)
        outcome.attempts = attempts[0]
        outcome.duration_s = time.monotonic() - started
        if outcome.outcome == "failed":
            log.error("job %s: failed: %s (runs again at its next tick)", job.id, outcome.error)
        elif outcome.outcome == "busy":
            log.info("job %s: skipped (busy): %s", job.id, outcome.error)
        else:
            log.info("job %s: %s in %.1fs", job.id, outcome.outcome, outcome.duration_s)
        return self._record(outcome)

    async def _busy_streak(self, conn: Connection, job: JobSettings, fire: datetime) -> bool:
        """Whether the job's last ``BUSY_SKIPS_BEFORE_WAIT`` finished ticks were all busy.

        Ticks skipped because the job itself ran elsewhere neither count nor break the streak.
        """
        outcomes = await jobs.finished_outcomes(
            conn, job.id, before=fire, limit=BUSY_SKIPS_BEFORE_WAIT
        )
        return len(outcomes) == BUSY_SKIPS_BEFORE_WAIT and all(o == "busy" for o in outcomes)

    async def _attempt(self, job: JobSettings, *, wait: bool, attempts: list[int]) -> JobOutcome:
        """Run the job; when ``wait``, try again while its work is busy (until the timeout)."""
        while True:
            attempts[0] += 1
            try:
                return await self._execute(job)
            except BusyError:
                if not wait or shutdown.requested():
                    raise
                if attempts[0] == 1:
                    log.info(
                        "job %s: busy %d ticks in a row; waiting for its work to be free "
                        "(at most its timeout, %s)",
                        job.id,
                        BUSY_SKIPS_BEFORE_WAIT,
                        format_duration(job.timeout_s),
                    )
                await asyncio.sleep(BUSY_RETRY_S)

    def _record(self, outcome: JobOutcome) -> JobOutcome:
        self.outcomes.append(outcome)
        _metrics_run(outcome)
        return outcome

    async def _execute(self, job: JobSettings) -> JobOutcome:
        command = commands.parse_job(job)
        rt = dispatch.Runtime(self.settings, self.pool, self.session, "")
        result = await dispatch.execute(
            rt,
            command,
            command_line=jobs.command_line(job.id, job.run),
            on_progress=self.job_progress(command),
        )
        if isinstance(command, commands.Load):
            from syncer.results import LoadResult

            assert isinstance(result, LoadResult), "every destination loads via syncer.runners.load"
            observability.record_load(result, job.id)
        elif isinstance(command, commands.Sync | commands.Sweep):
            # A sweep's deletions count as its streams' rows changed.
            observability.record_sync(cast("SyncResult", result), job.id)
        elif isinstance(command, commands.Verify):
            observability.record_verify(cast("VerifyResult", result))
        self.job_finished(command, result)
        if result.outcome == Outcome.INTERRUPTED:
            raise shutdown.Interrupted()
        outcome = Outcome.SUCCEEDED if result.outcome == Outcome.SUCCEEDED else Outcome.FAILED
        return JobOutcome(job.id, outcome, "; ".join(result.errors) or None)


def trigger_for(job: JobSettings) -> Any:
    """The APScheduler trigger of a job: every N seconds since the epoch, or cron in its zone."""
    from apscheduler.triggers.cron import CronTrigger
    from apscheduler.triggers.interval import IntervalTrigger

    if job.cron is not None:
        return CronTrigger.from_crontab(job.cron, timezone=job.timezone)
    assert job.every_s is not None
    return IntervalTrigger(seconds=job.every_s, start_date=EPOCH, timezone=UTC)


def _interval_us(job: JobSettings) -> int:
    assert job.every_s is not None
    return max(1, round(job.every_s * 1_000_000))


def latest_fire(job: JobSettings, now: datetime) -> datetime | None:
    """The job's last fire time not after ``now`` (interval jobs; None for cron jobs)."""
    if job.every_s is None:
        return None
    step = _interval_us(job)
    since = (now - EPOCH) // timedelta(microseconds=1)
    return EPOCH + timedelta(microseconds=since // step * step)


def next_fire(job: JobSettings, after: datetime) -> datetime | None:
    """The job's first fire time strictly after ``after`` (None: a cron that never fires)."""
    if job.every_s is not None:
        latest = latest_fire(job, after)
        assert latest is not None
        return latest + timedelta(microseconds=_interval_us(job))
    fire: datetime | None = trigger_for(job).get_next_fire_time(
        None, after + timedelta(microseconds=1)
    )
    return fire


def next_run(job: JobSettings, last_start: datetime | None, now: datetime) -> datetime | None:
    """When the job runs next: its next fire time; interval jobs at daemon start if never run."""
    if job.cron is None and last_start is None:
        return now  # a daemon runs interval jobs at start
    if job.cron is None and last_start is not None:
        following = next_fire(job, last_start)
        assert following is not None
        return max(now, following)
    return next_fire(job, now)


def _due(job: JobSettings, fire: datetime, now: datetime) -> tuple[datetime, datetime | None]:
    """Missed ticks collapse: the latest fire time not after ``now``, and the one after it."""
    latest = latest_fire(job, now)
    if latest is not None:
        return latest, next_fire(job, latest)
    following = next_fire(job, fire)
    for _ in range(100_000):
        if following is None or following > now:
            break
        fire, following = following, next_fire(job, following)
    return fire, following


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _cause(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _loop(daemon: Daemon, jobs: tuple[JobSettings, ...], stop: asyncio.Event) -> None:
    """Start each job's ticks at their fire times until ``stop``; one tick of a job at a time."""
    now = _utcnow()
    due: dict[str, datetime | None] = {
        job.id: latest_fire(job, now) if job.every_s is not None else next_fire(job, now)
        for job in jobs
    }
    starting = {job.id for job in jobs if job.every_s is not None}  # runs now, however late
    ticking: dict[str, asyncio.Task[Any]] = {}
    while not stop.is_set():
        daemon.beat()
        now = _utcnow()
        for job in jobs:
            fire = due[job.id]
            if fire is None or fire > now:
                continue
            fire, due[job.id] = _due(job, fire, now)
            late = (now - fire).total_seconds()
            if late > MISFIRE_GRACE_S and job.id not in starting:
                log.warning(
                    "job %s: its tick of %s is %.0fs late; skipped (next: %s)",
                    job.id,
                    fire.isoformat(),
                    late,
                    due[job.id],
                )
                continue
            starting.discard(job.id)
            previous = ticking.get(job.id)
            if previous is not None and not previous.done():
                log.info(
                    "job %s: still running its previous tick; left the tick of %s to "
                    "other replicas",
                    job.id,
                    fire.isoformat(),
                )
                continue
            task = asyncio.create_task(daemon.tick(job, fire), name=f"job {job.id}")
            ticking[job.id] = task
            daemon.running.add(task)
            task.add_done_callback(daemon.running.discard)
        upcoming = [d for d in due.values() if d is not None]
        wake = min([*upcoming, now + timedelta(seconds=HEARTBEAT_S)])
        pause = max(0.0, min(HEARTBEAT_S, (wake - _utcnow()).total_seconds()))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), pause)


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

    log.info("daemon started with %d jobs (replica %s)", len(jobs), daemon.replica)
    try:
        await _loop(daemon, jobs, stop)
    finally:
        # The page or batch in flight is to finish and commit: jobs stop themselves at the
        # next check; only those still going after the grace time are cancelled.
        if daemon.running:
            _, pending = await asyncio.wait(set(daemon.running), timeout=SHUTDOWN_GRACE_S)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    log.info("daemon stopped")
    return EXIT_OK


def _metrics_run(outcome: JobOutcome) -> None:
    observability.record_run(outcome.job, outcome.outcome, outcome.duration_s)
