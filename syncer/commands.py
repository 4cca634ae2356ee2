"""The commands that do work (``sync``, ``load``, ``sweep``, ``backfill``), as typed objects.

The CLI builds a command from its arguments, the daemon from a job's ``run`` line (the same
grammar, :func:`add_subcommands`); both check it (:func:`check`), then run it on a
``dispatch.Runtime`` with ``dispatch.execute``, which returns the run's result. What the user
reads is the caller's business: the CLI prints a summary or JSON, the daemon logs and records
the job.

``sweep``, ``backfill`` and ``verify`` exist for the source types that have them
(``registry.supports``); for another type the command is refused with the type's reason.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeAlias

from syncer import registry
from syncer.config import JobSettings, Settings, SourceSettings
from syncer.errors import ConfigError

__all__ = [
    "JOB_COMMANDS",
    "Backfill",
    "Command",
    "Load",
    "Sweep",
    "Sync",
    "Verify",
    "add_subcommands",
    "check",
    "common_options",
    "from_args",
    "parse_job",
]

JOB_COMMANDS = ("sync", "load", "backfill", "sweep", "verify")


@dataclass(frozen=True)
class Sync:
    """One incremental extraction run of a source (``syncer sync SOURCE``)."""

    source: str
    streams: tuple[str, ...] = ()
    full_refresh: bool = False
    skip: tuple[str, ...] = ()  # streams left out of this run (`--skip-stream`)


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


@dataclass(frozen=True)
class Verify:
    """Prove a source's streams complete against its own counts (``syncer verify SOURCE``)."""

    source: str
    streams: tuple[str, ...] = ()
    repair: bool = True


Command: TypeAlias = Sync | Load | Sweep | Backfill | Verify


# --- the grammar -------------------------------------------------------------------------------


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date like 2026-01-31") from None


def duration_argument(text: str) -> float:
    """A duration argument ("8d", "90s") in seconds, for argparse."""
    return _duration(text)


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


def env_int(name: str) -> int | None:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else None


def metrics_options(parser: argparse.ArgumentParser) -> None:
    """Where a long-running command serves /healthz and /metrics."""
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=env_int("SYNCER_METRICS_PORT"),
        metavar="N",
        help="serve /healthz and /metrics on port N (env: SYNCER_METRICS_PORT)",
    )
    parser.add_argument(
        "--metrics-host",
        default=os.environ.get("SYNCER_METRICS_HOST") or "127.0.0.1",
        metavar="HOST",
        help="address /healthz and /metrics listen on, e.g. 0.0.0.0 for a Prometheus in "
        "another container (env: SYNCER_METRICS_HOST; default 127.0.0.1)",
    )


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
        "--skip-stream",
        action="append",
        default=[],
        metavar="NAME",
        help="leave this stream out of this run (repeatable), e.g. the per-project lists a "
        "less frequent job reads",
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

    verify = commands.add_parser(
        "verify",
        parents=common,
        help="prove a source's streams complete against its own counts, and repair",
    )
    verify.add_argument("source", help="a source configured under [sources], e.g. moco")
    verify.add_argument(
        "--stream",
        action="append",
        default=[],
        metavar="NAME",
        help="only this stream (repeatable)",
    )
    verify.add_argument(
        "--no-repair",
        action="store_true",
        help="find and report what differs; store and mark nothing",
    )
    json_option(verify)
    return {"sync": sync, "load": load, "backfill": backfill, "sweep": sweep, "verify": verify}


def from_args(args: argparse.Namespace) -> Command:
    """The command that parsed arguments (of :func:`add_subcommands`) name."""
    if args.command == "sync":
        return Sync(args.source, tuple(args.stream), args.full_refresh, tuple(args.skip_stream))
    if args.command == "load":
        return Load(args.destination, tuple(args.only), args.dry_run, args.release_held)
    if args.command == "sweep":
        return Sweep(args.source, tuple(args.stream))
    if args.command == "backfill":
        return Backfill(args.source, args.stream, args.since, args.until, args.window)
    if args.command == "verify":
        return Verify(args.source, tuple(args.stream), not args.no_repair)
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


def secret_values(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """Every secret value the settings hold (those set), for the log filter to redact."""
    values = [settings.database.url.value] if settings.database.url else []
    for source in settings.sources.values():
        values.append(source.secret.value)
        hooks = registry.source_type(source.type).webhooks
        webhook_env = hooks.secret_env(source) if hooks is not None else None
        if webhook_env:  # read only when serving webhooks
            values.append(environ.get(webhook_env, ""))
    for destination in settings.destinations.values():
        values += [secret.value for secret in destination.secrets]
    return [v for v in values if v]


# --- checks ------------------------------------------------------------------------------------


def _streams_of(
    source: SourceSettings, streams: Sequence[str], *, option: str = "--stream"
) -> None:
    unknown = [s for s in streams if s not in source.streams]
    if unknown:
        raise ConfigError(
            f"{option} {unknown[0]}: not a stream of source {source.name!r}; "
            f"choose from {', '.join(source.streams)}"
        )


def _supporting(settings: Settings, verb: str, name: str) -> SourceSettings:
    """The source ``name``, if its type has the command ``verb``; ConfigError saying why not."""
    source = settings.source(name)
    reason = registry.supports(registry.source_type(source.type), verb)
    if reason is not None:
        raise ConfigError(f"{verb}: {name!r} is a {source.type} source; {reason}")
    return source


def check(settings: Settings, command: Command) -> None:
    """ConfigError if ``command`` names what is not configured, or what its type cannot do."""
    if isinstance(command, Sync):
        source = settings.source(command.source)
        _streams_of(source, command.streams)
        _streams_of(source, command.skip, option="--skip-stream")
        if not [s for s in (command.streams or source.streams) if s not in command.skip]:
            raise ConfigError(
                f"--skip-stream: leaves no stream of source {source.name!r} to sync; "
                "skip fewer streams"
            )
    elif isinstance(command, Sweep):
        _streams_of(_supporting(settings, "sweep", command.source), command.streams)
    elif isinstance(command, Backfill):
        _supporting(settings, "backfill", command.source)
    elif isinstance(command, Verify):
        source = settings.source(command.source)
        kind = registry.source_type(source.type)
        if registry.supports(kind, "verify") is not None:
            raise ConfigError(
                f"verify: {command.source!r} is a {source.type} source; {kind.vendor} sources "
                "cannot be verified: their type declares no way to count a list (a plugin "
                "gives SourceType count, lister and catalog)"
            )
        _streams_of(source, command.streams)
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
