"""The commands that do work (``sync``, ``load``, ``sweep``, ``backfill``), as typed objects.

The CLI builds a command from its arguments, the daemon from a job's ``run`` line (the same
grammar, :func:`add_subcommands`); both check it (:func:`check`), then run it on a
:class:`Runtime` with :func:`execute`, which returns the run's result. What the user reads is
the caller's business: the CLI prints a summary or JSON, the daemon logs and records the job.

``sweep`` and ``backfill`` exist for the source types that register them
(``SourceType.commands``); for another type the command is refused with the type's reason.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeAlias

import aiohttp

from syncer import registry
from syncer.config import JobSettings, Settings, SourceSettings
from syncer.errors import ConfigError
from syncer.pipeline import shared_limiter_for, sync_source
from syncer.results import Report
from syncer.store import database
from syncer.store.types import Pool
from syncer.warehouse import ensure_schema

__all__ = [
    "JOB_COMMANDS",
    "Backfill",
    "Command",
    "Load",
    "Runtime",
    "Sweep",
    "Sync",
    "add_subcommands",
    "check",
    "common_options",
    "execute",
    "from_args",
    "parse_job",
    "runtime",
]

JOB_COMMANDS = ("sync", "load", "backfill", "sweep")


@dataclass(frozen=True)
class Sync:
    """One incremental extraction run of a source (``syncer sync SOURCE``)."""

    source: str
    streams: tuple[str, ...] = ()
    full_refresh: bool = False


@dataclass(frozen=True)
class Load:
    """One load run into a destination (``syncer load DESTINATION``)."""

    destination: str
    only: tuple[str, ...] = ()
    dry_run: Path | None = None  # send nothing; write the bodies here
    release_held: bool = False


@dataclass(frozen=True)
class Sweep:
    """Mark what a source deleted (``syncer sweep SOURCE``), where its type has a sweep."""

    source: str
    streams: tuple[str, ...] = ()


@dataclass(frozen=True)
class Backfill:
    """Re-extract a stream's history in windows (``syncer backfill SOURCE --stream NAME``)."""

    source: str
    stream: str
    since: date
    until: date | None = None
    window_s: float = 30 * 86400.0


Command: TypeAlias = Sync | Load | Sweep | Backfill


# --- the grammar -------------------------------------------------------------------------------


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


def common_options(*, defaults: bool) -> argparse.ArgumentParser:
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


def json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON document with the outcome and figures, nothing else, on stdout",
    )


def add_subcommands(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    parents: Sequence[argparse.ArgumentParser],
) -> dict[str, argparse.ArgumentParser]:
    """Add ``sync``, ``load``, ``backfill`` and ``sweep`` to ``commands`` (the subparsers of a
    parser); their parsers, by name. The CLI and the daemon's job lines share this grammar."""
    common = list(parents)
    sync = commands.add_parser(
        "sync", parents=common, help="one incremental extraction run of a source"
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
    json_option(sync)

    load = commands.add_parser(
        "load", parents=common, help="one reverse-ETL run into a destination (e.g. MoEngage)"
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
        default=[],
        metavar="MODEL",
        help="only this model of the destination (repeatable), e.g. users, devices, events",
    )
    load.add_argument(
        "--release-held",
        action="store_true",
        help='first release the events held after unanswered requests (on_lost_answer = "hold")',
    )
    json_option(load)

    backfill = commands.add_parser(
        "backfill",
        parents=common,
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
        "--window",
        type=_duration,
        default=30 * 86400.0,
        metavar="DURATION",
        help="window length, e.g. 7d or 30d (default 30d)",
    )
    json_option(backfill)

    sweep = commands.add_parser(
        "sweep",
        parents=common,
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
    json_option(sweep)
    return {"sync": sync, "load": load, "backfill": backfill, "sweep": sweep}


def from_args(args: argparse.Namespace) -> Command:
    """The command that parsed arguments (of :func:`add_subcommands`) name."""
    if args.command == "sync":
        return Sync(args.source, tuple(args.stream), args.full_refresh)
    if args.command == "load":
        return Load(args.destination, tuple(args.only), args.dry_run, args.release_held)
    if args.command == "sweep":
        return Sweep(args.source, tuple(args.stream))
    if args.command == "backfill":
        return Backfill(args.source, args.stream, args.since, args.until, args.window)
    raise ValueError(f"{args.command} is not a command that runs work")


class _Discard:
    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


def parse_job(job: JobSettings) -> Command:
    """The job's command line, parsed as the CLI parses it; ConfigError naming the job."""
    parser = argparse.ArgumentParser(prog="syncer", add_help=False)
    add_subcommands(
        parser.add_subparsers(dest="command", required=True), [common_options(defaults=False)]
    )
    try:
        with contextlib.redirect_stderr(_Discard()):
            args = parser.parse_args(shlex.split(job.run))
    except SystemExit:
        raise ConfigError(
            f'jobs ({job.id}).run: "{job.run}" is not a valid syncer command line; '
            "try it by hand as `syncer " + job.run + "`"
        ) from None
    return from_args(args)


# --- checks ------------------------------------------------------------------------------------


def _streams_of(source: SourceSettings, streams: Sequence[str]) -> None:
    unknown = [s for s in streams if s not in source.streams]
    if unknown:
        raise ConfigError(
            f"--stream {unknown[0]}: not a stream of source {source.name!r}; "
            f"choose from {', '.join(source.streams)}"
        )


def _supporting(settings: Settings, verb: str, name: str) -> SourceSettings:
    """The source ``name``, if its type has the command ``verb``; ConfigError saying why not."""
    source = settings.source(name)
    kind = registry.source_type(source.type)
    if verb not in kind.commands:
        reason = kind.refusals.get(verb) or f"{kind.vendor} sources have no {verb}"
        raise ConfigError(f"{verb}: {name!r} is a {source.type} source; {reason}")
    return source


def check(settings: Settings, command: Command) -> None:
    """ConfigError if ``command`` names what is not configured, or what its type cannot do."""
    if isinstance(command, Sync):
        _streams_of(settings.source(command.source), command.streams)
    elif isinstance(command, Sweep):
        _streams_of(_supporting(settings, "sweep", command.source), command.streams)
    elif isinstance(command, Backfill):
        _supporting(settings, "backfill", command.source)
    else:
        destination = settings.destination(command.destination)
        models = registry.destination_type(destination.type).models
        unknown = [m for m in command.only if m not in models]
        if unknown:
            raise ConfigError(
                f"--only {unknown[0]}: not a model of destination {destination.name!r}; "
                f"choose from {', '.join(models)}"
            )


def require_secrets(settings: Settings, commands: Sequence[Command]) -> None:
    """ConfigError naming every unset credential variable of what ``commands`` touch."""
    sources = [c.source for c in commands if not isinstance(c, Load)]
    destinations = [c.destination for c in commands if isinstance(c, Load)]
    settings.require_secrets(sources=sources, destinations=destinations)


def check_jobs(settings: Settings) -> list[Command]:
    """Every job's command, checked before anything runs; all problems in one ConfigError."""
    problems: list[str] = []
    found: list[Command] = []
    for job in settings.jobs:
        try:
            command = parse_job(job)
            check(settings, command)
            found.append(command)
        except ConfigError as exc:
            problems += [
                f"jobs ({job.id}): {p}" if not p.startswith("jobs (") else p for p in exc.problems
            ]
    if problems:
        raise ConfigError(problems)
    return found


# --- running -----------------------------------------------------------------------------------


@dataclass
class Runtime:
    """What a command that touches the database and the network gets: opened once, at the top."""

    settings: Settings
    pool: Pool
    session: aiohttp.ClientSession
    url: str  # the database's, resolved once (the embedded server is found or started once)


@contextlib.asynccontextmanager
async def runtime(settings: Settings, *, pool_size: int = 10) -> AsyncIterator[Runtime]:
    """The database (migrated to head) and one HTTP session, for the commands of a process."""
    from syncer.observability import http_trace_config

    url = await database.resolve_url(settings)
    await database.migrate(url)
    apis = {s.base_url: s.name for s in settings.sources.values()}
    apis.update({d.base_url: d.name for d in settings.destinations.values()})
    async with (
        database.open_pool(url, max_size=pool_size) as pool,
        aiohttp.ClientSession(trace_configs=[http_trace_config(apis)]) as session,
    ):
        yield Runtime(settings, pool, session, url)


def pool_size(settings: Settings, command: Command) -> int:
    """Connections a command needs: a sync's streams in flight, its lock and a spare; a load's
    lock, its rows' cursor, the lease held while a body is in flight, and one to write."""
    if isinstance(command, Load):
        return 5
    return settings.source(command.source).concurrency + 2


async def execute(
    rt: Runtime,
    command: Command,
    *,
    command_line: str,
    on_progress: Callable[[Any], None] | None = None,
) -> Report:
    """Run ``command``; its result. ``command_line`` is what ``syncer.runs`` records;
    ``on_progress`` is told a backfill's progress."""
    check(rt.settings, command)
    if isinstance(command, Load):
        destination = rt.settings.destination(command.destination)
        kind = registry.destination_type(destination.type)
        result: Report = await kind.load(
            rt.pool,
            rt.session,
            destination,
            only=command.only,
            dry_run_dir=command.dry_run,
            command=command_line,
        )
        return result
    source = rt.settings.source(command.source)
    async with rt.pool.acquire() as conn:
        await ensure_schema(conn, source)
    limiter = shared_limiter_for(rt.pool, source)
    if isinstance(command, Sync):
        return await sync_source(
            rt.pool,
            rt.session,
            source,
            streams=command.streams,
            full_refresh=command.full_refresh,
            command=command_line,
            limiter=limiter,
        )
    run = registry.source_type(source.type).commands
    if isinstance(command, Sweep):
        swept: Report = await run["sweep"](
            rt.pool,
            rt.session,
            source,
            streams=command.streams,
            command=command_line,
            limiter=limiter,
        )
        return swept
    backfilled: Report = await run["backfill"](
        rt.pool,
        rt.session,
        source,
        command.stream,
        since=command.since,
        until=command.until,
        window_s=command.window_s,
        command=command_line,
        progress=on_progress,
        limiter=limiter,
    )
    return backfilled
