"""The ``syncer`` command: argument parsing, exit codes, and what the user reads.

Exit codes: 0 success; 1 the run failed or finished with failures; 2 usage or configuration.
Errors are one line naming the cause and the fix, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson

from syncer import __version__, shutdown
from syncer import commands as commands_grammar
from syncer.commands import execute, runtime
from syncer.config import Settings, load_settings, settings_without_file
from syncer.errors import EXIT_FAILED, EXIT_OK, EXIT_USAGE, ConfigError, SyncerError
from syncer.results import StreamsReport, SyncResult
from syncer.sources.moco.settings import MOCO_STREAMS
from syncer.store import database
from syncer.store.types import Connection

if TYPE_CHECKING:
    from syncer.http.client import RequestStats
    from syncer.loading import LoadResult
    from syncer.scheduler import Daemon
    from syncer.sources.moco.backfill import BackfillResult
    from syncer.sources.moco.sweep import SweepResult
    from syncer.store.status import Freshness, StreamStatus

log = logging.getLogger("syncer")


# --- commands ----------------------------------------------------------------------------------


async def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    return await _source_run(args, settings, sync_json, print_sync_result)


async def cmd_sweep(args: argparse.Namespace, settings: Settings) -> int:
    return await _source_run(args, settings, sweep_json, print_sweep_result)


async def _source_run(
    args: argparse.Namespace,
    settings: Settings,
    to_json: Callable[[Any, str, int], dict[str, Any]],
    show: Callable[[Any], None],
) -> int:
    """A sync or a sweep: its progress while it runs, then its summary or JSON document."""
    command = commands_grammar.from_args(args)
    commands_grammar.check(settings, command)
    source = settings.source(args.source)
    rate = source.rate_limit.requests / source.rate_limit.per_seconds
    async with (
        runtime(settings, pool_size=commands_grammar.pool_size(settings, command)) as rt,
        _progress(args, args.command, source.name, rate),
    ):
        result = await execute(rt, command, command_line=args.command_line)
    assert isinstance(result, StreamsReport)
    outcome = result.outcome
    code = _exit_code(outcome)
    if args.json:
        _print_json(to_json(result, outcome, code))
    else:
        show(result)
    return _report(code, result.errors)


async def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    command = commands_grammar.from_args(args)
    assert isinstance(command, commands_grammar.Load)
    commands_grammar.check(settings, command)
    destination = settings.destination(command.destination)
    async with (
        runtime(settings, pool_size=commands_grammar.pool_size(settings, command)) as rt,
        _progress(args, "load", destination.name),
    ):
        if command.release_held and command.dry_run is None:  # a dry run changes nothing
            from syncer.store.loads import release_held

            async with rt.pool.acquire() as conn:
                released = await release_held(conn, destination.name)
            if not args.json:  # stdout carries the one JSON document alone
                _console().print(f"released {released} held events; this load sends them")
        result = await execute(rt, command, command_line=args.command_line)
    from syncer.loading import LoadResult

    assert isinstance(result, LoadResult), "every destination loads through syncer.loading"
    outcome = result.outcome if result.outcome in ("succeeded", "interrupted") else "failed"
    code = _exit_code(outcome)
    if args.json:
        _print_json(load_json(result, outcome, code))
    else:
        print_load_result(result, command.dry_run)
    return _report(code, result.errors)


def _progress(
    args: argparse.Namespace, kind: str, name: str, rate: float | None = None
) -> contextlib.AbstractAsyncContextManager[Any]:
    """Progress of the run on stderr (``syncer.progress``): live on a terminal unless ``-v``
    logs each page, plain lines every period otherwise, nothing with ``--json``."""
    from syncer.progress import showing

    live = sys.stderr.isatty() and not args.verbose
    return showing(kind, name, rate_per_s=rate, enabled=not getattr(args, "json", False), live=live)


async def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.sources.moco.backfill import BackfillResult, summary

    command = commands_grammar.from_args(args)
    assert isinstance(command, commands_grammar.Backfill)
    commands_grammar.check(settings, command)
    async with runtime(settings, pool_size=commands_grammar.pool_size(settings, command)) as rt:
        with _backfill_progress(command, show=not args.json) as progress:
            result = await execute(
                rt, command, command_line=args.command_line, on_progress=progress
            )
    assert isinstance(result, BackfillResult)
    outcome = result.outcome if result.outcome in ("succeeded", "interrupted") else "failed"
    code = _exit_code(outcome)
    if args.json:
        _print_json(backfill_json(result, outcome, code))
    else:
        print(summary(result))
    return _report(code, result.errors)


@contextlib.contextmanager
def _backfill_progress(
    command: commands_grammar.Backfill, *, show: bool
) -> Iterator[Callable[[Any], None] | None]:
    """A backfill's progress: a bar on a terminal, else a line per window, none unless
    ``show``."""
    from syncer.sources.moco.backfill import BackfillProgress, progress_lines

    if not show:
        yield None
        return
    if not sys.stdout.isatty():
        yield progress_lines(command.source, command.stream)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[records]} records, {task.fields[rate]}/s"),
    )
    bar.start()
    task = bar.add_task(
        f"backfill {command.source}.{command.stream}", total=None, records=0, rate=0
    )

    def progress(p: BackfillProgress) -> None:
        bar.update(
            task,
            total=p.windows_total,
            completed=p.windows_done + p.windows_skipped,
            records=p.records,
            rate=f"{p.records_per_s:.0f}",
        )

    try:
        yield progress
    finally:
        bar.stop()


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.scheduler import Daemon, run_daemon

    commands_grammar.check_jobs(settings)
    if args.json and not args.once:
        raise ConfigError("--json needs --once: the daemon logs each job instead of a summary")
    # Jobs of different streams run side by side, each holding two lock connections (the
    # job's and its run's) while it waits for connections to work with.
    async with runtime(settings, pool_size=12 + 2 * len(settings.jobs)) as rt:
        daemon = Daemon(settings, rt.pool, rt.session)
        if args.json:
            started = time.monotonic()
            with contextlib.redirect_stdout(sys.stderr):  # a backfill job's lines
                code = await run_daemon(daemon, once=True)
            if shutdown.requested():
                code = _exit_code("interrupted")
            _print_json(run_json(daemon, code, time.monotonic() - started))
            return _report(code, [])
        if args.once or args.metrics_port is None:
            code = await run_daemon(daemon, once=args.once)
            if args.once and shutdown.requested():
                return _report(_exit_code("interrupted"), [])
            return code
        from syncer.observability import HealthMonitor, serving_health

        monitor = HealthMonitor(rt.url, heartbeat=lambda: daemon.heartbeat)
        async with (
            monitor.watching(),
            serving_health(host=args.metrics_host, port=args.metrics_port, problem=monitor.problem),
        ):
            return await run_daemon(daemon, once=False)


async def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.sources.moco.webhooks import serve_webhooks, webhook_config
    from syncer.warehouse import ensure_schema

    # Before migrating: a missing key is exit 2.
    config = webhook_config(settings, os.environ, source=args.source)
    async with runtime(settings, pool_size=10) as rt:
        async with rt.pool.acquire() as conn:  # the tables deliveries are written to
            await ensure_schema(conn, settings.source(config.source))
        return await serve_webhooks(
            rt.pool,
            config,
            host=args.host,
            port=args.port,
            metrics_port=args.metrics_port,
            metrics_host=args.metrics_host,
        )


async def cmd_check(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.check import run_checks

    report = await run_checks(settings)
    code = EXIT_OK if report.ok else EXIT_FAILED
    failed = [r for r in report.rows if r.status == "failed"]
    if args.json:
        _print_json(
            {
                "command": "check",
                "outcome": "succeeded" if report.ok else "failed",
                "exit_code": code,
                "checks": [r.to_json() for r in report.rows],
                "errors": [f"{r.check}: {r.detail}" for r in failed],
                "warnings": [],
                "elapsed_s": round(report.elapsed_s, 3),
            }
        )
    else:
        from rich.table import Table

        table = Table(title="syncer check")
        for column in ("", "check", "found", "fix"):
            table.add_column(column)
        marks = {"ok": "[green]✓[/]", "failed": "[bold red]✗[/]", "not_checked": "–"}
        for r in report.rows:
            table.add_row(marks[r.status], r.check, r.detail, r.fix or "")
        _console().print(table)
    if failed:
        names = ", ".join(r.check for r in failed)
        print(
            f"error: {len(failed)} of {len(report.rows)} checks failed ({names}); "
            "see the fix of each",
            file=sys.stderr,
        )
    return code


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    url = await database.resolve_url(settings)
    await database.migrate(url)
    print(f"database {database.redact(url)} is at the newest migration")
    return EXIT_OK


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from syncer import registry
    from syncer.store.status import no_rows, stream_statuses
    from syncer.warehouse import schema_ready

    async with runtime(settings, pool_size=2) as rt, rt.pool.acquire() as conn:
        statuses = []
        for src in settings.sources.values():
            kind = registry.source_type(src.type)
            ready = await schema_ready(conn, src)  # a source never synced shows empty tables
            statuses += await stream_statuses(
                conn,
                src.name,
                src.schema,
                kind.streams,
                count_rows=kind.count_rows if ready else no_rows,
                stale_after_s=src.stale_after_s,
                configured=src.streams,
            )
        if not settings.sources:  # show the MOCO tables (what the demo fills)
            moco = registry.source_type("moco")
            statuses = await stream_statuses(conn, "moco", "moco", moco.streams)
        destinations = {
            name: await registry.destination_type(dest.type).status(conn, dest)
            for name, dest in settings.destinations.items()
        }
        jobs = await job_statuses(conn, settings)
    if args.json:
        document = {
            "streams": [s.to_json() for s in statuses],
            "destinations": {n: [m.to_json() for m in d] for n, d in destinations.items()},
            "jobs": jobs,
        }
        sys.stdout.write(orjson.dumps(document).decode())
        sys.stdout.write("\n")
        return _stale_exit(args, statuses)
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
    )
    for column in columns:
        table.add_column(column, justify="right" if column in ("rows", "rejected") else "left")
    for s in statuses:
        outcome = s.last_run_outcome or "never run"
        if s.in_progress:
            outcome += " (a walk in progress resumes)"
        table.add_row(
            f"{s.source}.{s.stream}",
            str(s.rows),
            _when(s.watermark),
            _age_text(s.freshness.newest_record_age_s, "-"),
            _when(s.last_run_at),
            outcome,
            _age_text(s.freshness.since_success_s, "never"),
            _fresh_text(s.freshness),
            str(s.rejected),
        )
    _console().print(table)
    for s in statuses:
        if s.last_error and s.last_run_outcome != "succeeded":
            print(f"{s.source}.{s.stream}: {s.last_error}")
    stale = [f"{s.source}.{s.stream}" for s in statuses if s.freshness.stale]
    if stale:
        print(f"STALE (no successful sync within stale_after): {', '.join(stale)}")
    if jobs:
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
        _console().print(table)
        for j in jobs:  # why the last tick ran nothing, or failed
            if j["last_tick_outcome"] in ("busy", "failed") and j["last_tick_error"]:
                print(f"job {j['id']}: last tick {j['last_tick_outcome']}: {j['last_tick_error']}")
    for name, model_statuses in destinations.items():
        table = Table(title=f"destination {name}")
        for column in ("model", "pending", "sent", "dead letters", "by reason"):
            table.add_column(
                column, justify="left" if column in ("model", "by reason") else "right"
            )
        for m in model_statuses:
            reasons = ", ".join(f"{rule}: {n}" for rule, n in m.dead_letters.items()) or "-"
            table.add_row(
                m.model, str(m.pending), str(m.sent), str(sum(m.dead_letters.values())), reasons
            )
        _console().print(table)
        for m in model_statuses:
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
    return _stale_exit(args, statuses)


def _stale_exit(args: argparse.Namespace, statuses: Sequence[StreamStatus]) -> int:
    """Exit 0 after printing the status; 1 with ``--fail-if-stale`` when a stream is stale."""
    stale = [f"{s.source}.{s.stream}" for s in statuses if s.freshness.stale]
    if not (args.fail_if_stale and stale):
        return EXIT_OK
    print(
        f"error: {len(stale)} stream(s) without a successful sync within stale_after: "
        f"{', '.join(stale)}; run `syncer sync SOURCE` or check the daemon's jobs",
        file=sys.stderr,
    )
    return EXIT_FAILED


async def job_statuses(conn: Connection, settings: Settings) -> list[dict[str, Any]]:
    """Per job: its schedule, its last run and outcome, when it runs next, and its last tick
    (``syncer.job_fires``: also the ticks that ran nothing, busy or timed out) with how many
    ticks in a row found its work busy."""
    from syncer.durations import format_duration
    from syncer.scheduler import next_run

    now = datetime.now(UTC)
    out = []
    for job in settings.jobs:
        last = await conn.fetchrow(
            "select started_at, outcome from syncer.runs where command like $1"
            " order by started_at desc limit 1",
            f"job {job.id}: %",
        )
        ticks = await conn.fetch(
            "select fire_time, outcome, error from syncer.job_fires where job_id = $1"
            " order by fire_time desc limit 100",
            job.id,
        )
        busy = next((i for i, t in enumerate(ticks) if t["outcome"] != "busy"), len(ticks))
        tick = ticks[0] if ticks else None
        when = next_run(job, last["started_at"] if last else None, now)
        schedule = (
            f"cron {job.cron} ({job.timezone})"
            if job.cron
            else f"every {format_duration(job.every_s or 0)}"
        )
        out.append(
            {
                "id": job.id,
                "run": job.run,
                "schedule": schedule,
                "last_run_at": last["started_at"].isoformat() if last else None,
                "last_outcome": last["outcome"] if last else None,
                "next_run_at": when.isoformat() if when else None,
                "last_tick_at": tick["fire_time"].isoformat() if tick else None,
                "last_tick_outcome": tick["outcome"] if tick else None,
                "last_tick_error": tick["error"] if tick else None,
                "busy_in_a_row": busy,
            }
        )
    return out


async def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.sandbox.server import serve_forever

    if args.moca_geolocations not in ("buckets", "aggregate"):
        raise ConfigError(
            f"SYNCER_SANDBOX_MOCA_GEOLOCATIONS is {args.moca_geolocations!r}; "
            "set it to buckets or aggregate"
        )
    ignored = set(args.ignore_sort_by or ())
    streams = frozenset(MOCO_STREAMS) if "all" in ignored else frozenset(ignored)
    await _until_signalled(
        serve_forever(
            port=args.port,
            seed=args.seed,
            moca_geolocations=args.moca_geolocations,
            ignore_sort_by=streams,
        )
    )
    return EXIT_OK


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.demo import run_demo

    code: int = await run_demo(settings)
    return code


async def _until_signalled(work: Awaitable[Any]) -> None:
    """Run ``work`` until it ends or SIGINT/SIGTERM arrives."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task


# --- stopping on a signal ---------------------------------------------------------------------

# Exit codes of a one-off command stopped by a signal: 128 + the signal's number, as shells do.
EXIT_SIGINT = 128 + signal.SIGINT  # 130
EXIT_SIGTERM = 128 + signal.SIGTERM  # 143

_stopped_by: list[signal.Signals] = []  # the signal that asked this process to stop


def _stops_on_signal(args: argparse.Namespace) -> bool:
    """The one-off commands that stop cleanly on SIGTERM/SIGINT (the daemon has its own)."""
    return args.command in ("sync", "load", "sweep", "backfill") or (
        args.command == "run" and args.once
    )


async def _quiet_dead_connections(work: Coroutine[Any, Any, int]) -> int:
    """Run ``work`` with the loop's handler for unawaited errors set to
    :func:`database.on_unawaited_error` (no traceback for a dead connection the pool dropped)."""
    asyncio.get_running_loop().set_exception_handler(database.on_unawaited_error)
    return await work


async def _stopping_on_signal(work: Coroutine[Any, Any, int]) -> int:
    """Run a one-off command; SIGTERM or SIGINT asks it to stop as the daemon's jobs stop: the
    page or body in flight finishes and commits, nothing new starts, and the run is recorded
    as interrupted. A second signal exits at once (every page is its own transaction)."""
    shutdown.reset()
    loop = asyncio.get_running_loop()

    def on_signal(sig: signal.Signals) -> None:
        if _stopped_by:
            print(f"error: second {sig.name}: exiting at once", file=sys.stderr, flush=True)
            os._exit(128 + sig)
        _stopped_by.append(sig)
        log.info("%s received: finishing the page in flight, starting nothing new", sig.name)
        shutdown.request()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)
    try:
        return await work
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


def _exit_code(outcome: str) -> int:
    """0 succeeded; 143 (SIGTERM) or 130 (SIGINT) interrupted by a signal; else 1."""
    if outcome == "succeeded":
        return EXIT_OK
    if outcome == "interrupted" and shutdown.requested():
        return 128 + (_stopped_by[0] if _stopped_by else signal.SIGINT)
    return EXIT_FAILED


def _report(code: int, errors: Sequence[str]) -> int:
    """Say on stderr why the run did not succeed: one line for a signal, else its errors."""
    if code in (EXIT_SIGINT, EXIT_SIGTERM):
        name = _stopped_by[0].name if _stopped_by else "a signal"
        print(
            f"error: stopped by {name}; the run is recorded as interrupted, what it committed "
            "is kept, and the next run resumes from there",
            file=sys.stderr,
        )
    elif code != EXIT_OK:
        for error in errors:
            print(f"error: {error}", file=sys.stderr)
    return code


# --- JSON output (see README, "JSON output") ---------------------------------------------------


def _print_json(document: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(document).decode())
    sys.stdout.write("\n")
    sys.stdout.flush()


def _requests_json(http: RequestStats) -> dict[str, Any]:
    return {
        "requests": http.requests,
        "retries": http.retries,
        "rate_limited": http.rate_limited,
        "waited_s": round(http.waited_s, 3),
    }


def _streams_json(
    command: str,
    result: SyncResult | SweepResult,
    outcome: str,
    code: int,
    streams: list[dict[str, Any]],
) -> dict[str, Any]:
    """The JSON document of a run over a source's streams (a sync, a sweep)."""
    return {
        "command": command,
        "source": result.source,
        "run_id": result.run_id,
        "outcome": outcome,
        "exit_code": code,
        "streams": streams,
        **_requests_json(result.http),
        "errors": result.errors,
        "warnings": result.warnings,
        "elapsed_s": round(result.elapsed_s, 3),
    }


def sync_json(result: SyncResult, outcome: str, code: int) -> dict[str, Any]:
    streams = [
        {
            "stream": s.stream,
            "outcome": s.outcome,
            "pages": s.pages,
            "requests": s.http.requests,
            "records": s.records,
            "changed": s.upserted,
            "deleted": s.deleted,
            "rejected": s.rejected,
            "resumed_after_pages": s.resumed_after_pages,
            "error": s.error,
        }
        for s in result.streams
    ]
    return _streams_json("sync", result, outcome, code, streams)


def sweep_json(result: SweepResult, outcome: str, code: int) -> dict[str, Any]:
    streams = [
        {
            "stream": s.stream,
            "outcome": s.outcome,
            "checked": s.checked,
            "requests": s.http.requests,
            "deleted": s.deleted,
            "restored": s.restored,
            "withheld": s.withheld,
            "error": s.error,
        }
        for s in result.streams
    ]
    return _streams_json("sweep", result, outcome, code, streams)


def _models_of(result: LoadResult) -> tuple[str, ...]:
    """The destination's models in its order; those that sent something if none are known."""
    return result.models or tuple(sorted(result.sent))


def load_json(result: LoadResult, outcome: str, code: int) -> dict[str, Any]:
    summary = result.to_json()
    return {
        "command": "load",
        "destination": result.destination,
        "run_id": result.run_id,
        "dry_run": result.dry_run,
        "outcome": outcome,
        "exit_code": code,
        "models": {m: {"sent": result.sent.get(m, 0)} for m in _models_of(result)},
        "requests": summary["batches"],
        **{k: v for k, v in summary.items() if k not in ("sent",)},
        "waited_s": round(result.waited_s, 3),
        "errors": [result.error] if result.error else [],
        "warnings": [],
        "elapsed_s": round(result.elapsed_s, 3),
    }


def backfill_json(result: BackfillResult, outcome: str, code: int) -> dict[str, Any]:
    return {
        "command": "backfill",
        "source": result.source,
        "stream": result.stream,
        "backfill_id": result.backfill_id,
        "outcome": outcome,
        "exit_code": code,
        "range_start": result.range_start.isoformat(),
        "range_end": result.range_end.isoformat(),
        "windows": {
            "total": result.windows_total,
            "done": result.windows_done,
            "skipped": result.windows_skipped,
        },
        "pages": result.pages,
        "records": result.records,
        "changed": result.upserted,
        "rejected": result.rejected,
        **_requests_json(result.http),
        "errors": [result.error] if result.error else [],
        "warnings": [],
        "elapsed_s": round(result.elapsed_s, 3),
    }


def run_json(daemon: Daemon, code: int, elapsed_s: float) -> dict[str, Any]:
    outcomes = daemon.outcomes
    failed = [o for o in outcomes if o.outcome == "failed"]
    interrupted = code in (EXIT_SIGINT, EXIT_SIGTERM)
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


def _error_json(args: argparse.Namespace, code: int, message: str) -> None:
    """With --json, a command that stopped before its run still prints one document."""
    if getattr(args, "json", False):
        _print_json(
            {
                "command": args.command,
                "outcome": "usage_error" if code == EXIT_USAGE else "failed",
                "exit_code": code,
                "errors": [message],
                "warnings": [],
                "elapsed_s": round(time.monotonic() - getattr(args, "started", 0.0), 3),
            }
        )


# --- output ------------------------------------------------------------------------------------


def _console() -> Any:
    """A console that never cuts names when the output is piped (rich assumes 80 columns)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 200, soft_wrap=True)


def _when(value: datetime | None) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _age_text(seconds: float | None, missing: str) -> str:
    from syncer.store.status import format_age

    return missing if seconds is None else f"{format_age(seconds)} ago"


def _fresh_text(freshness: Freshness) -> str:
    """A red STALE with the threshold, "ok", or "-" for a stream the source does not sync."""
    from syncer.store.status import format_age

    if freshness.stale:
        return f"[bold red]STALE[/] (> {format_age(freshness.stale_after_s)})"
    return "ok" if freshness.expected else "-"


def print_load_result(result: LoadResult, dry_run: Path | None) -> None:
    from rich.table import Table

    console = _console()
    verb = "would send" if dry_run else "sent"
    table = Table(title=f"load {result.destination}" + (" (dry run)" if dry_run else ""))
    for column in ("model", verb):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in _models_of(result):
        table.add_row(model, str(result.sent.get(model, 0)))
    console.print(table)
    summary = result.to_json()
    console.print(
        f"{summary['batches']} requests, {summary['bytes']} bytes "
        f"(mean {summary['mean_body_bytes']}, max {summary['max_body_bytes']} per body), "
        f"{summary['rate_limited']} answered 429, {summary['server_errors']} answered 5xx, "
        f"{result.waited_s:.1f}s waiting for the rate limit, {result.elapsed_s:.1f}s in all"
    )
    if result.dead_letters:
        reasons = ", ".join(f"{rule}: {n}" for rule, n in sorted(result.dead_letters.items()))
        where = "" if dry_run else " (see `syncer status` and syncer.dead_letters)"
        console.print(f"dead letters: {reasons}{where}")
    vendor = result.vendor or result.destination
    rows = " and ".join(result.once) or "rows"  # what a second send may duplicate ("events")
    if result.possibly_duplicated:
        console.print(
            f"possible duplicates: {result.possibly_duplicated} {rows} sent again after a "
            f"request carrying them got no answer ({vendor} does not deduplicate {rows})"
        )
    if result.held:
        console.print(
            f"{result.held} {rows} held: their request got no answer and may have arrived; "
            f"send them with `syncer load {result.destination} --release-held`"
        )
    if result.truncated:
        cuts = ", ".join(f"{label}: {n}" for label, n in sorted(result.truncated.items()))
        console.print(f"cut to {vendor}'s limits on values and names: {cuts}")
    if result.lowered_limits:
        lowered = ", ".join(f"{unit} {n}" for unit, n in sorted(result.lowered_limits.items()))
        console.print(
            f"{vendor} throttled bodies within rate_limit: sent at most {lowered} per window; "
            f"lower [destinations.{result.destination}.rate_limit] to the account's limits"
        )
    if dry_run:
        console.print(f"bodies written to {dry_run}/")
        if result.truncations:
            console.print(f"each truncated value or name: {dry_run}/truncations.jsonl")


def print_sync_result(result: SyncResult) -> None:
    from rich.table import Table

    table = Table(title=f"sync {result.source} (run {result.run_id})")
    columns = (
        "stream",
        "outcome",
        "pages",
        "requests",
        "records",
        "changed",
        "deleted",
        "rejected",
    )
    for column in columns:
        table.add_column(column, justify="left" if column in ("stream", "outcome") else "right")
    for s in result.streams:
        resumed = s.resumed_after_pages
        outcome = s.outcome + (f" (resumed after {resumed} pages)" if resumed else "")
        table.add_row(
            f"{result.source}.{s.stream}",
            outcome,
            str(s.pages),
            str(s.http.requests),
            str(s.records),
            str(s.upserted),
            str(s.deleted),
            str(s.rejected),
        )
    console = _console()
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    rejected = sum(s.rejected for s in result.streams)
    if rejected:
        console.print(
            f"[yellow]warning:[/yellow] {rejected} records could not be stored; they and "
            f"their reasons are in "
            f"syncer.rejected_records (see `syncer status`)"
        )
    http = result.http
    console.print(
        f"{http.requests} requests ({http.retries} retried, {http.rate_limited} answered 429), "
        f"{http.waited_s:.1f}s waiting for the rate limit (summed over streams), "
        f"{result.elapsed_s:.1f}s in all"
    )


def print_sweep_result(result: SweepResult) -> None:
    from rich.table import Table

    table = Table(title=f"sweep {result.source} (run {result.run_id})")
    columns = ("stream", "outcome", "checked", "requests", "deleted", "restored", "withheld")
    for column in columns:
        table.add_column(column, justify="left" if column in ("stream", "outcome") else "right")
    for s in result.streams:
        table.add_row(
            f"{result.source}.{s.stream}",
            s.outcome,
            str(s.checked),
            str(s.http.requests),
            str(s.deleted),
            str(s.restored),
            str(s.withheld),
        )
    console = _console()
    console.print(table)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    http = result.http
    console.print(
        f"{http.requests} requests ({http.retries} retried, {http.rate_limited} answered 429), "
        f"{http.waited_s:.1f}s waiting for the rate limit, {result.elapsed_s:.1f}s in all"
    )


# --- parsing -----------------------------------------------------------------------------------


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


def build_parser() -> argparse.ArgumentParser:
    common = commands_grammar.common_options(defaults=False)
    parser = argparse.ArgumentParser(
        prog="syncer",
        description="Incremental MOCO extraction into Postgres, reverse ETL into MoEngage. "
        "Database: $SYNCER_DATABASE_URL (else $DATABASE_URL), else an embedded PostgreSQL under "
        "$SYNCER_HOME "
        "(default ~/.local/share/syncer).",
        parents=[commands_grammar.common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"syncer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    work = commands_grammar.add_subcommands(commands, [common])
    work["sync"].set_defaults(handler=cmd_sync)
    work["load"].set_defaults(handler=cmd_load)
    work["backfill"].set_defaults(handler=cmd_backfill)
    work["sweep"].set_defaults(handler=cmd_sweep)

    run = commands.add_parser(
        "run", parents=[common], help="the daemon: run the jobs of schedules.toml on schedule"
    )
    run.add_argument("--once", action="store_true", help="run every job once; exit 1 if any failed")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("SYNCER_METRICS_PORT"),
        metavar="N",
        help="serve /healthz and /metrics on port N (env: SYNCER_METRICS_PORT)",
    )
    run.add_argument(
        "--metrics-host",
        default=os.environ.get("SYNCER_METRICS_HOST") or "127.0.0.1",
        metavar="HOST",
        help="address /healthz and /metrics listen on, e.g. 0.0.0.0 for a Prometheus in "
        "another container (env: SYNCER_METRICS_HOST; default 127.0.0.1)",
    )
    commands_grammar.json_option(run)
    run.set_defaults(handler=cmd_run)

    webhooks = commands.add_parser(
        "webhooks", parents=[common], help="receive MOCO's signed webhooks (see `webhooks serve`)"
    )
    actions = webhooks.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = actions.add_parser(
        "serve",
        parents=[common],
        help="apply MOCO's signed webhooks to the warehouse as they arrive, until SIGTERM",
    )
    serve.add_argument(
        "--source",
        default=None,
        metavar="NAME",
        help="the MOCO source the hooks are for (needed when several are configured)",
    )
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)"
    )
    serve.add_argument(
        "--port",
        type=int,
        default=_env_int("SYNCER_WEBHOOK_PORT") or 8088,
        metavar="N",
        help="port to listen on (env: SYNCER_WEBHOOK_PORT; default 8088)",
    )
    serve.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("SYNCER_METRICS_PORT"),
        metavar="N",
        help="serve /healthz and /metrics on port N (env: SYNCER_METRICS_PORT)",
    )
    serve.add_argument(
        "--metrics-host",
        default=os.environ.get("SYNCER_METRICS_HOST") or "127.0.0.1",
        metavar="HOST",
        help="address /healthz and /metrics listen on, e.g. 0.0.0.0 for a Prometheus in "
        "another container (env: SYNCER_METRICS_HOST; default 127.0.0.1)",
    )
    serve.set_defaults(handler=cmd_webhooks)

    check = commands.add_parser(
        "check",
        parents=[common],
        help="is it ready? configuration, database, and one authenticated read per source",
    )
    commands_grammar.json_option(check)
    check.set_defaults(handler=cmd_check)

    migrate = commands.add_parser(
        "migrate", parents=[common], help="bring the database schema to the newest migration"
    )
    migrate.set_defaults(handler=cmd_migrate)

    status = commands.add_parser(
        "status", parents=[common], help="watermark, last run, rows and freshness per stream"
    )
    status.add_argument("--json", action="store_true", help="machine-readable output")
    status.add_argument(
        "--fail-if-stale",
        action="store_true",
        help="exit 1 when a stream had no successful sync within its source's stale_after",
    )
    status.set_defaults(handler=cmd_status)

    sandbox = commands.add_parser(
        "sandbox", parents=[common], help="serve the MOCO sandbox on loopback"
    )
    sandbox.add_argument("--port", type=int, default=8765, help="port (default 8765)")
    sandbox.add_argument("--seed", type=int, default=1, help="seed of the generated data")
    sandbox.add_argument(
        "--moca-geolocations",
        choices=("buckets", "aggregate"),
        default=os.environ.get("SYNCER_SANDBOX_MOCA_GEOLOCATIONS", "buckets"),
        help="MOCA geolocations per bucket (default) or aggregated over the requested range "
        "(env SYNCER_SANDBOX_MOCA_GEOLOCATIONS)",
    )
    sandbox.add_argument(
        "--ignore-sort-by",
        action="append",
        choices=[*MOCO_STREAMS, "all"],
        metavar="STREAM",
        help="MOCO lists this stream (or 'all') by id, ignoring sort_by, over data whose ids "
        "grow with updated_at (repeatable)",
    )
    sandbox.set_defaults(handler=cmd_sandbox, needs_config=False)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="zero set-up: sandbox + embedded Postgres + a full sync, with a summary",
    )
    demo.set_defaults(handler=cmd_demo, needs_config=False)
    return parser


def _secrets(settings: Settings) -> list[str]:
    """Every secret value the settings hold (those set), for the log filter to redact."""
    values = [settings.database.url.value] if settings.database.url else []
    for source in settings.sources.values():
        values.append(source.secret.value)
        webhook_env = getattr(source, "webhook_secret_env", None)
        if webhook_env:  # read only when serving webhooks
            values.append(os.environ.get(webhook_env, ""))
    for destination in settings.destinations.values():
        values += [secret.value for secret in destination.secrets]
    return [v for v in values if v]


def require_secrets(args: argparse.Namespace, settings: Settings) -> None:
    """ConfigError (exit 2) naming every unset credential variable of what this command touches,
    before anything runs: a source's for sync, sweep and backfill, a destination's for load, the
    jobs' for the daemon. ``status``, ``migrate``, ``check`` and ``webhooks`` need none."""
    if args.command in commands_grammar.JOB_COMMANDS:
        commands_grammar.require_secrets(settings, [commands_grammar.from_args(args)])
    elif args.command == "run":
        # A job that is wrong is reported as such, not as a missing key.
        commands_grammar.require_secrets(settings, commands_grammar.check_jobs(settings))


Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["syncer", *argv])
    args.started = time.monotonic()
    from syncer.logs import configure_logging

    # The daemon reports each job, the webhook server each delivery, at INFO; other commands
    # print their own summary.
    verbose = args.verbose or args.command in ("run", "webhooks")
    configure_logging(args.log_format, verbose, secrets=())
    handler: Handler = args.handler
    try:
        if getattr(args, "needs_config", True):
            settings = load_settings(args.config, os.environ)
        else:
            settings = settings_without_file(os.environ)
        require_secrets(args, settings)
        configure_logging(args.log_format, verbose, secrets=_secrets(settings))
        work = handler(args, settings)
        if _stops_on_signal(args):
            work = _stopping_on_signal(work)
        return asyncio.run(_quiet_dead_connections(work))
    except SyncerError as exc:
        code = _exit_code("interrupted") if isinstance(exc, shutdown.Interrupted) else None
        if code in (EXIT_SIGINT, EXIT_SIGTERM):
            _error_json(args, code, exc.message)
            return _report(code, [])
        _error_json(args, exc.exit_code, exc.message)
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError) as exc:
        # The one place database failures become a message: nothing after the last committed
        # page or batch was written, and the next run resumes from there.
        message = (
            f"the database failed ({type(exc).__name__}: {exc}); nothing after the last "
            "committed page was written; check the database and run again"
        )
        _error_json(args, EXIT_FAILED, message)
        print(f"error: {message}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
