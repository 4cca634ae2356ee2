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
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import asyncpg
import orjson

from syncer import __version__
from syncer.config import Settings, load_settings, settings_without_file
from syncer.errors import EXIT_FAILED, EXIT_OK, ConfigError, SyncerError
from syncer.pipeline import SyncResult, shared_limiter_for, sync_source
from syncer.store import database
from syncer.sweep import SweepResult, sweep_source, sweepable

if TYPE_CHECKING:
    from syncer.store.status import Freshness, StreamStatus

log = logging.getLogger("syncer")


@dataclass
class Runtime:
    """What a command that touches the database and the network gets: opened once, at the top."""

    settings: Settings
    pool: Any
    session: aiohttp.ClientSession


@contextlib.asynccontextmanager
async def runtime(settings: Settings, *, pool_size: int = 10) -> AsyncIterator[Runtime]:
    from syncer.observability import http_trace_config

    url = await database.resolve_url(settings)
    await database.migrate(url)
    apis = {
        s.base_url: s.name for s in (*settings.sources.values(), *settings.destinations.values())
    }
    async with (
        database.open_pool(url, max_size=pool_size) as pool,
        aiohttp.ClientSession(trace_configs=[http_trace_config(apis)]) as session,
    ):
        yield Runtime(settings, pool, session)


# --- commands ----------------------------------------------------------------------------------


async def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    source = settings.source(args.source)
    unknown = [s for s in args.stream if s not in source.streams]
    if unknown:
        raise ConfigError(
            f"--stream {unknown[0]}: not a stream of source {source.name!r}; "
            f"choose from {', '.join(source.streams)}"
        )
    async with runtime(settings, pool_size=source.concurrency + 2) as rt:
        result = await sync_source(
            rt.pool,
            rt.session,
            source,
            streams=args.stream,
            full_refresh=args.full_refresh,
            command=args.command_line,
            limiter=shared_limiter_for(rt.pool, source),
        )
    print_sync_result(result)
    if not result.ok:
        for error in result.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def cmd_sweep(args: argparse.Namespace, settings: Settings) -> int:
    source = sweepable(settings, args.source, args.stream)
    async with runtime(settings, pool_size=source.concurrency + 2) as rt:
        result = await sweep_source(
            rt.pool, rt.session, source, streams=args.stream, command=args.command_line,
            limiter=shared_limiter_for(rt.pool, source),
        )  # fmt: skip
    print_sweep_result(result)
    if not result.ok:
        for error in result.errors:
            print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.destinations.moengage import load_destination

    destination = settings.destination(args.destination)
    # The lock, the rows' cursor, the lease held while a body is in flight, and one to write.
    async with runtime(settings, pool_size=5) as rt:
        result = await load_destination(
            rt.pool,
            rt.session,
            destination,
            only=args.only,
            dry_run_dir=args.dry_run,
            command=args.command_line,
        )
    print_load_result(result, args.dry_run)
    if not result.ok:
        print(f"error: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    source = settings.source(args.source)
    async with runtime(settings, pool_size=source.concurrency + 2) as rt:
        return await run_backfill_command(rt.pool, rt.session, settings, args, args.command_line)


async def run_backfill_command(
    pool: Any, session: aiohttp.ClientSession, settings: Settings, args: argparse.Namespace,
    command: str,
) -> int:  # fmt: skip
    """A backfill as the CLI and the daemon run it: progress on the terminal, an exit code."""
    from syncer.backfill import BackfillProgress, run_backfill
    from syncer.config import MocoSourceSettings

    source = settings.source(args.source)
    if not isinstance(source, MocoSourceSettings):
        raise ConfigError(
            f"backfill: {args.source!r} is a {source.type} source; MOCA streams are scanned in "
            "full on every sync, so they need no backfill"
        )
    interactive = sys.stdout.isatty()
    bar: Any = None
    if interactive:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[records]} records, {task.fields[rate]}/s"),
        )  # fmt: skip
        bar.start()
        task = bar.add_task(f"backfill {source.name}.{args.stream}", total=None, records=0, rate=0)
    last_line = [0]

    def progress(p: BackfillProgress) -> None:
        done = p.windows_done + p.windows_skipped
        if bar is not None:
            bar.update(task, total=p.windows_total, completed=done, records=p.records,
                       rate=f"{p.records_per_s:.0f}")  # fmt: skip
        elif done != last_line[0] or p.window is None:
            last_line[0] = done
            print(f"backfill {source.name}.{args.stream}: window {done}/{p.windows_total}, "
                  f"{p.records} records, {p.records_per_s:.0f}/s", flush=True)  # fmt: skip

    try:
        result = await run_backfill(
            pool, session, source, args.stream, since=args.since, until=args.until,
            window_s=args.window, command=command, progress=progress,
            limiter=shared_limiter_for(pool, source),
        )  # fmt: skip
    finally:
        if bar is not None:
            bar.stop()
    print(
        f"backfill {source.name}.{args.stream}: {result.outcome}; windows {result.windows_done} "
        f"done, {result.windows_skipped} already done before, of {result.windows_total}; "
        f"{result.records} records, {result.upserted} changed, {result.elapsed_s:.1f}s"
    )
    if result.outcome != "succeeded":
        print(f"error: {result.error}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.scheduler import Daemon, check_jobs, run_daemon

    check_jobs(settings)
    # Jobs of different streams run side by side, each holding two lock connections (the
    # job's and its run's) while it waits for connections to work with.
    async with runtime(settings, pool_size=12 + 2 * len(settings.jobs)) as rt:
        daemon = Daemon(settings, rt.pool, rt.session)
        if args.once or args.metrics_port is None:
            return await run_daemon(daemon, once=args.once)
        from syncer.observability import serving_health

        async with serving_health(port=args.metrics_port, ready=lambda: True):
            return await run_daemon(daemon, once=False)


async def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.webhooks import serve_webhooks, webhook_config

    config = webhook_config(settings, os.environ)  # before migrating: a missing key is exit 2
    async with runtime(settings, pool_size=10) as rt:
        return await serve_webhooks(
            rt.pool, config, host=args.host, port=args.port, metrics_port=args.metrics_port
        )


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    url = await database.resolve_url(settings)
    await database.migrate(url)
    print(f"database {database.redact(url)} is at the newest migration")
    return EXIT_OK


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.store.status import destination_status, stream_statuses

    async with runtime(settings, pool_size=2) as rt, rt.pool.acquire() as conn:
        statuses = []
        for src in settings.sources.values():
            statuses += await stream_statuses(
                conn, src.name, src.type, stale_after_s=src.stale_after_s, configured=src.streams
            )
        if not settings.sources:  # show the MOCO tables (what the demo fills)
            statuses = await stream_statuses(conn)
        destinations = {
            name: await destination_status(conn, dest)
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
    columns = ("stream", "rows", "watermark", "newest record", "last run", "outcome",
               "last success", "fresh", "rejected")  # fmt: skip
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
        for column in ("job", "run", "schedule", "last run", "outcome", "next run"):
            table.add_column(column)
        for j in jobs:
            table.add_row(
                j["id"], j["run"], j["schedule"], j["last_run_at"] or "-",
                j["last_outcome"] or "never run", j["next_run_at"] or "-",
            )  # fmt: skip
        _console().print(table)
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


async def job_statuses(conn: Any, settings: Settings) -> list[dict[str, Any]]:
    """Per job: its schedule, its last run and outcome, and when it runs next."""
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
            }
        )
    return out


async def cmd_sandbox(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.sandbox.server import serve_forever

    await _until_signalled(serve_forever(port=args.port, seed=args.seed))
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


def print_load_result(result: Any, dry_run: Path | None) -> None:
    from rich.table import Table

    console = _console()
    verb = "would send" if dry_run else "sent"
    table = Table(title=f"load {result.destination}" + (" (dry run)" if dry_run else ""))
    for column in ("model", verb):
        table.add_column(column, justify="left" if column == "model" else "right")
    for model in ("users", "devices", "events"):
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
    if result.possibly_duplicated:
        console.print(
            f"{result.possibly_duplicated} events may have arrived twice: their request got no "
            f"answer and was sent again (MoEngage does not deduplicate events)"
        )
    if dry_run:
        console.print(f"bodies written to {dry_run}/")


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
            f"{rejected} records could not be stored; their reasons are in "
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
            f"{result.source}.{s.stream}", s.outcome, str(s.checked), str(s.http.requests),
            str(s.deleted), str(s.restored), str(s.withheld),
        )  # fmt: skip
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


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31") from None


def _duration(text: str) -> float:
    from syncer.durations import parse_duration

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


def _common_options(*, defaults: bool) -> argparse.ArgumentParser:
    """The options every command takes, before or after its name. Only the top level sets
    defaults: a command's own copy must not overwrite what was given before its name."""

    def default(value: Any) -> Any:
        return value if defaults else argparse.SUPPRESS

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=default(None),
        help="configuration file (env: SYNCER_CONFIG; default: ./schedules.toml)",
    )
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=default(False),
        help="log progress to stderr",
    )
    common.add_argument(
        "--log-format",
        choices=["text", "json"],
        default=default(os.environ.get("SYNCER_LOG_FORMAT") or "text"),
        help="log lines as text or as JSON objects (env: SYNCER_LOG_FORMAT)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(defaults=False)
    parser = argparse.ArgumentParser(
        prog="syncer",
        description="Incremental MOCO extraction into Postgres, reverse ETL into MoEngage. "
        "Database: $SYNCER_DATABASE_URL, else an embedded PostgreSQL under $SYNCER_HOME "
        "(default ~/.local/share/syncer).",
        parents=[_common_options(defaults=True)],
    )
    parser.add_argument("--version", action="version", version=f"syncer {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sync = commands.add_parser(
        "sync", parents=[common], help="one incremental extraction run of a source"
    )
    sync.add_argument("source", help="a source configured under [sources], e.g. moco")
    sync.add_argument(
        "--stream",
        action="append",
        default=[],
        metavar="NAME",
        help="only this stream (repeatable)",
    )
    sync.add_argument(
        "--full-refresh",
        action="store_true",
        help="re-read every record, not only those changed since the watermark",
    )
    sync.set_defaults(handler=cmd_sync)

    load = commands.add_parser(
        "load", parents=[common], help="one reverse-ETL run into a destination (MoEngage)"
    )
    load.add_argument("destination", help="a destination configured under [destinations]")
    load.add_argument(
        "--dry-run",
        nargs="?",
        type=Path,
        const=Path("moengage-dry-run"),
        default=None,
        metavar="DIR",
        help="send nothing; write the exact bodies to DIR (default ./moengage-dry-run)",
    )
    load.add_argument(
        "--only",
        action="append",
        choices=["users", "devices", "events"],
        default=[],
        help="only this model (repeatable)",
    )
    load.set_defaults(handler=cmd_load)

    backfill = commands.add_parser(
        "backfill",
        parents=[common],
        help="re-extract a stream's history in resumable windows (the watermark stays put)",
    )
    backfill.add_argument("source", help="a MOCO source configured under [sources]")
    backfill.add_argument("--stream", required=True, metavar="NAME", help="the stream")
    backfill.add_argument(
        "--since", required=True, type=_date, metavar="DATE", help="first day, YYYY-MM-DD"
    )
    backfill.add_argument(
        "--until", type=_date, default=None, metavar="DATE", help="last day (default: today)"
    )
    backfill.add_argument(
        "--window", type=_duration, default=30 * 86400.0, metavar="DURATION",
        help="window length, e.g. 7d or 30d (default 30d)",
    )  # fmt: skip
    backfill.set_defaults(handler=cmd_backfill)

    sweep = commands.add_parser(
        "sweep",
        parents=[common],
        help="mark records deleted at a MOCO source (MOCO lists no deletions)",
    )
    sweep.add_argument("source", help="a MOCO source configured under [sources]")
    sweep.add_argument(
        "--stream",
        action="append",
        default=[],
        metavar="NAME",
        help="only this stream (repeatable)",
    )
    sweep.set_defaults(handler=cmd_sweep)

    run = commands.add_parser(
        "run", parents=[common], help="the daemon: run the jobs of schedules.toml on schedule"
    )
    run.add_argument("--once", action="store_true", help="run every job once; exit 1 if any failed")
    run.add_argument(
        "--metrics-port",
        type=int,
        default=_env_int("SYNCER_METRICS_PORT"),
        metavar="N",
        help="serve /healthz and /metrics on 127.0.0.1:N (env: SYNCER_METRICS_PORT)",
    )
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
        help="serve /healthz and /metrics on 127.0.0.1:N (env: SYNCER_METRICS_PORT)",
    )
    serve.set_defaults(handler=cmd_webhooks)

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
    sandbox.set_defaults(handler=cmd_sandbox, needs_config=False)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="zero set-up: sandbox + embedded Postgres + a full sync, with a summary",
    )
    demo.set_defaults(handler=cmd_demo, needs_config=False)
    return parser


def _secrets(settings: Settings) -> list[str]:
    """Every secret value the settings hold, for the log filter to redact."""
    values = [settings.database.url.value] if settings.database.url else []
    for source in settings.sources.values():
        values.append(source.token.value if source.type == "moca" else source.api_key.value)
        if source.type == "moco" and source.webhook_secret_env:  # read only when serving hooks
            values.append(os.environ.get(source.webhook_secret_env, ""))
    for destination in settings.destinations.values():
        values += [destination.api_key.value, destination.workspace_id.value]
    return values


Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["syncer", *argv])
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
        configure_logging(args.log_format, verbose, secrets=_secrets(settings))
        return asyncio.run(handler(args, settings))
    except SyncerError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except (asyncpg.PostgresError, asyncpg.InterfaceError, ConnectionError) as exc:
        # The one place database failures become a message: nothing after the last committed
        # page or batch was written, and the next run resumes from there.
        print(
            f"error: the database failed ({type(exc).__name__}: {exc}); nothing after the last "
            "committed page was written; check the database and run again",
            file=sys.stderr,
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
