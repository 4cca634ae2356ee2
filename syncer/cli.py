"""The ``syncer`` command: argument parsing, dispatch to the commands, signals and exit codes.

What the user reads (tables, lines, JSON documents) is ``syncer.show``'s: each handler runs its
command and hands the result there.

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
import sys
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

import asyncpg

from syncer import __version__, registry, shutdown
from syncer import commands as commands_grammar
from syncer.config import Settings
from syncer.configfile import load_settings, settings_without_file
from syncer.dispatch import execute, pool_size, runtime
from syncer.errors import EXIT_FAILED, EXIT_OK, ConfigError, SyncerError
from syncer.results import StreamsReport
from syncer.sandbox import command as sandbox_command
from syncer.show import backfill as show_backfill
from syncer.show import check as show_check
from syncer.show import exits as show_exits
from syncer.show import load as show_load
from syncer.show import run as show_run
from syncer.show import status as show_status
from syncer.show import sync as show_sync
from syncer.show.console import print_json
from syncer.store import database

if TYPE_CHECKING:
    pass

log = logging.getLogger("syncer")


# --- commands ----------------------------------------------------------------------------------


async def cmd_sync(args: argparse.Namespace, settings: Settings) -> int:
    return await _source_run(args, settings, show_sync.sync_json, show_sync.print_sync_result)


async def cmd_sweep(args: argparse.Namespace, settings: Settings) -> int:
    return await _source_run(args, settings, show_sync.sweep_json, show_sync.print_sweep_result)


async def cmd_verify(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.show import verify as show_verify

    return await _source_run(
        args, settings, show_verify.verify_json, show_verify.print_verify_result
    )


async def _source_run(
    args: argparse.Namespace,
    settings: Settings,
    to_json: Callable[[Any, str, int], dict[str, Any]],
    show: Callable[[Any], None],
) -> int:
    """A sync, a sweep or a verify: its progress while it runs, then its summary or JSON
    document."""
    command = commands_grammar.from_args(args)
    commands_grammar.check(settings, command)
    source = settings.source(args.source)
    rate = source.rate_limit.requests / source.rate_limit.per_seconds
    async with (
        runtime(settings, pool_size=pool_size(settings, command)) as rt,
        _progress(args, args.command, source.name, rate),
    ):
        result = await execute(rt, command, command_line=args.command_line)
    assert isinstance(result, StreamsReport)
    outcome = result.outcome
    code = shutdown.exit_code(outcome)
    if args.json:
        print_json(to_json(result, outcome, code))
    else:
        show(result)
    return show_exits.report(code, result.errors)


async def cmd_load(args: argparse.Namespace, settings: Settings) -> int:
    command = commands_grammar.from_args(args)
    assert isinstance(command, commands_grammar.Load)
    commands_grammar.check(settings, command)
    destination = settings.destination(command.destination)
    async with (
        runtime(settings, pool_size=pool_size(settings, command)) as rt,
        _progress(args, "load", destination.name),
    ):
        if command.release_held and command.dry_run is None:  # a dry run changes nothing
            from syncer.store.loads import release_held

            async with rt.pool.acquire() as conn:
                released = await release_held(conn, destination.name)
            if not args.json:  # stdout carries the one JSON document alone
                show_load.print_released(released)
        result = await execute(rt, command, command_line=args.command_line)
    from syncer.results import LoadResult

    assert isinstance(result, LoadResult), "every destination loads through syncer.runners.load"
    outcome = result.outcome if result.outcome in ("succeeded", "interrupted") else "failed"
    code = shutdown.exit_code(outcome)
    if args.json:
        print_json(show_load.load_json(result, outcome, code))
    else:
        show_load.print_load_result(result, command.dry_run)
    return show_exits.report(code, result.errors)


def _progress(
    args: argparse.Namespace, kind: str, name: str, rate: float | None = None
) -> contextlib.AbstractAsyncContextManager[Any]:
    """Progress of the run on stderr (``syncer.progress``): live on a terminal unless ``-v``
    logs each page, plain lines every period otherwise, nothing with ``--json``."""
    from syncer.progress import showing

    live = sys.stderr.isatty() and not args.verbose
    return showing(kind, name, rate_per_s=rate, enabled=not getattr(args, "json", False), live=live)


async def cmd_backfill(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.results import BackfillResult

    command = commands_grammar.from_args(args)
    assert isinstance(command, commands_grammar.Backfill)
    commands_grammar.check(settings, command)
    async with runtime(settings, pool_size=pool_size(settings, command)) as rt:
        with show_backfill.progress(command.source, command.stream, show=not args.json) as seen:
            result = await execute(rt, command, command_line=args.command_line, on_progress=seen)
    assert isinstance(result, BackfillResult)
    outcome = result.outcome if result.outcome in ("succeeded", "interrupted") else "failed"
    code = shutdown.exit_code(outcome)
    if args.json:
        print_json(show_backfill.backfill_json(result, outcome, code))
    else:
        show_backfill.print_summary(result)
    return show_exits.report(code, result.errors)


async def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.scheduler import Daemon, run_daemon

    commands_grammar.check_jobs(settings)
    if args.json and not args.once:
        raise ConfigError("--json needs --once: the daemon logs each job instead of a summary")
    # Jobs of different streams run side by side, each holding two lock connections (the
    # job's and its run's) while it waits for connections to work with.
    async with runtime(settings, pool_size=12 + 2 * len(settings.jobs)) as rt:
        daemon = Daemon(
            settings,
            rt.pool,
            rt.session,
            job_progress=show_run.job_progress,
            job_finished=show_run.job_finished,
        )
        if args.json:
            started = time.monotonic()
            with contextlib.redirect_stdout(sys.stderr):  # a backfill job's lines
                code = await run_daemon(daemon, once=True)
            if shutdown.requested():
                code = shutdown.exit_code("interrupted")
            interrupted = code in (shutdown.EXIT_SIGINT, shutdown.EXIT_SIGTERM)
            elapsed_s = time.monotonic() - started
            print_json(show_run.run_json(daemon.outcomes, code, elapsed_s, interrupted=interrupted))
            return show_exits.report(code, [])
        if args.once or args.metrics_port is None:
            code = await run_daemon(daemon, once=args.once)
            if args.once and shutdown.requested():
                return show_exits.report(shutdown.exit_code("interrupted"), [])
            return code
        from syncer.observability import HealthMonitor, serving_health

        monitor = HealthMonitor(rt.url, heartbeat=lambda: daemon.heartbeat)
        async with (
            monitor.watching(),
            serving_health(host=args.metrics_host, port=args.metrics_port, problem=monitor.problem),
        ):
            return await run_daemon(daemon, once=False)


async def cmd_webhooks(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.warehouse import ensure_schema

    kinds = {s.name: registry.source_type(s.type) for s in settings.sources.values()}
    chosen = kinds.get(args.source) if args.source is not None else None
    hooks = registry.webhook_receiver(list(kinds.values()), chosen)
    # Before migrating: a missing key is exit 2.
    config = hooks.config(settings, os.environ, source=args.source)
    async with runtime(settings, pool_size=10) as rt:
        async with rt.pool.acquire() as conn:  # the tables deliveries are written to
            await ensure_schema(conn, settings.source(hooks.source_of(config)))
        return await hooks.serve(
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
    if args.json:
        print_json(show_check.check_json(report, code))
    else:
        show_check.print_check(report)
    failed = [r.check for r in report.rows if r.status == "failed"]
    if failed:
        print(
            f"error: {len(failed)} of {len(report.rows)} checks failed ({', '.join(failed)}); "
            "see the fix of each",
            file=sys.stderr,
        )
    return code


async def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    url = await database.resolve_url(settings)
    await database.migrate(url)
    show_check.print_migrated(url)
    return EXIT_OK


async def cmd_streams(args: argparse.Namespace, settings: Settings) -> int:
    """A source's catalog; for a source type not configured (``syncer streams moco`` before
    any configuration), the type's streams with their defaults."""
    from syncer.show.streams import print_streams, streams_json
    from syncer.warehouse import stream_catalog

    if args.source in settings.sources:
        source = settings.source(args.source)
        kind = registry.source_type(source.type)
        rows = stream_catalog(source.type, source.schema, source.streams)
    elif not settings.sources and args.source in registry.source_types():
        kind = registry.source_type(args.source)
        defaults = [s.name for s in kind.catalog() if s.enabled] if kind.catalog else kind.streams
        rows = stream_catalog(args.source, args.source, defaults)
    else:
        settings.source(args.source)  # the one-line error naming the configured sources
        raise AssertionError("unreachable")
    if args.json:
        streams_json(rows)
    else:
        print_streams(args.source, kind.vendor, rows)
    return EXIT_OK


async def cmd_status(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.status import gather

    async with runtime(settings, pool_size=2) as rt, rt.pool.acquire() as conn:
        status = await gather(conn, settings)
    if args.json:
        show_status.print_status_json(status)
    else:
        show_status.print_status(status)
    code = show_status.stale_exit(status.streams, args.fail_if_stale)
    if code != EXIT_OK:
        return code
    return show_status.unverified_exit(status.streams, args.fail_if_unverified)


async def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    from syncer.demo import run_demo

    code: int = await run_demo(settings)
    return code


def _stops_on_signal(args: argparse.Namespace) -> bool:
    """The one-off commands that stop cleanly on SIGTERM/SIGINT (the daemon has its own)."""
    return args.command in ("sync", "load", "sweep", "backfill", "verify") or (
        args.command == "run" and args.once
    )


async def _quiet_dead_connections(work: Coroutine[Any, Any, int]) -> int:
    """Run ``work`` with the loop's handler for unawaited errors set to
    :func:`database.on_unawaited_error` (no traceback for a dead connection the pool dropped)."""
    asyncio.get_running_loop().set_exception_handler(database.on_unawaited_error)
    return await work


def _error_json(args: argparse.Namespace, code: int, message: str) -> None:
    """With --json, a command that stopped before its run still prints one document."""
    if getattr(args, "json", False):
        show_exits.error_document(args.command, code, message, getattr(args, "started", 0.0))


# --- parsing -----------------------------------------------------------------------------------


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
    work["verify"].set_defaults(handler=cmd_verify)

    run = commands.add_parser(
        "run", parents=[common], help="the daemon: run the jobs of schedules.toml on schedule"
    )
    run.add_argument("--once", action="store_true", help="run every job once; exit 1 if any failed")
    commands_grammar.metrics_options(run)
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
        default=commands_grammar.env_int("SYNCER_WEBHOOK_PORT") or 8088,
        metavar="N",
        help="port to listen on (env: SYNCER_WEBHOOK_PORT; default 8088)",
    )
    commands_grammar.metrics_options(serve)
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
    status.add_argument(
        "--fail-if-unverified",
        type=commands_grammar.duration_argument,
        default=None,
        metavar="AGE",
        help="exit 1 when a stream was not verified within AGE (e.g. 8d), or its last verify "
        "left differences unrepaired",
    )
    status.set_defaults(handler=cmd_status)

    streams = commands.add_parser(
        "streams",
        parents=[common],
        help="a source's streams: path, strategy, table, view, deletions, webhook, on or off",
    )
    streams.add_argument(
        "source", help="a source configured under [sources] (or, with none, a type: moco, moca)"
    )
    streams.add_argument("--json", action="store_true", help="a JSON list, one object a stream")
    streams.set_defaults(handler=cmd_streams)

    sandbox_command.add_parser(commands, common)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="zero set-up: sandbox + embedded Postgres + a full sync, with a summary",
    )
    demo.set_defaults(handler=cmd_demo, needs_config=False)
    return parser


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
        configure_logging(
            args.log_format, verbose, secrets=commands_grammar.secret_values(settings, os.environ)
        )
        work = handler(args, settings)
        if _stops_on_signal(args):
            work = shutdown.stopping_on_signal(work)
        return asyncio.run(_quiet_dead_connections(work))
    except SyncerError as exc:
        code = shutdown.exit_code("interrupted") if isinstance(exc, shutdown.Interrupted) else None
        if code in (shutdown.EXIT_SIGINT, shutdown.EXIT_SIGTERM):
            _error_json(args, code, exc.message)
            return show_exits.report(code, [])
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
