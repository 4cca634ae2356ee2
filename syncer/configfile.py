"""``schedules.toml`` plus the environment, validated once into frozen settings.

Secrets never go in the file: each one is named by the environment variable that holds it
(``*_env`` keys). A credential's variable is needed only by the commands that use it: an unset
one is recorded on its :class:`Secret` and reported by :meth:`Settings.require_secrets`. Every
other problem found is reported together in one :class:`ConfigError`, each naming its key by
dotted path (``sources.moco.rate_limit.requests``) and saying how to fix it.

Where the file is: ``--config PATH``, else ``$SYNCER_CONFIG``, else ``schedules.toml`` in the
working directory. Without that default file, syncer runs with no sources and no jobs.

The format: ``[database]``, ``[sources.NAME]`` (``type`` names a registered source type,
which decides the other keys of the table), ``[destinations.NAME]`` likewise, and
``[[jobs]]``. Every key, its default and its meaning is in ``docs/configuration.md``, written
from the :class:`~syncer.tomlspec.Key` declarations (``_DATABASE_KEYS`` and ``_JOB_KEYS``
here, each type's ``keys``) by ``tools/config_docs.py``.

Source and destination types are registered by their packages (``syncer.registry``); which
keys a table takes depends on its ``type``.
"""

from __future__ import annotations

import difflib
import re
import shlex
import tomllib
import zoneinfo
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from syncer import registry
from syncer.config import (
    DEFAULT_CONFIG_NAME,
    DEFAULT_DATABASE_URL_ENV,
    DEFAULT_HOME,
    FALLBACK_DATABASE_URL_ENV,
    JOB_COMMANDS,
    RESERVED_SCHEMAS,
    SOURCE_NAME,
    DatabaseSettings,
    DestinationSettings,
    JobSettings,
    Secret,
    Settings,
    SourceSettings,
)
from syncer.errors import ConfigError
from syncer.store.database import POSTGRES_URL_SCHEME
from syncer.tomlspec import (
    Ctx,
    Invalid,
    Key,
    comma_list,
    describe,
    duration,
    env_name,
    read_table,
    report_unknown,
    secret_from_env,
    string,
)

__all__ = ["load_settings", "settings_without_file"]


def load_settings(path: Path | None, environ: Mapping[str, str]) -> Settings:
    """Read the configuration file and the environment into validated, frozen :class:`Settings`.

    ``path`` None means ``$SYNCER_CONFIG``, else ``schedules.toml`` in the working directory;
    a missing default file yields settings with no sources and no jobs. Raises one
    :class:`ConfigError` listing every problem found.
    """
    explicit = path is not None or bool(environ.get("SYNCER_CONFIG"))
    if path is None:
        path = Path(environ.get("SYNCER_CONFIG") or DEFAULT_CONFIG_NAME)
    document: dict[str, Any]
    if not explicit and not path.exists():
        file_path: Path | None = None
        document = {}
    else:
        file_path = path
        document = _read_toml(path)

    problems: list[str] = []
    home = _expand_user(environ.get("SYNCER_HOME") or DEFAULT_HOME, environ)
    ctx = Ctx(problems=problems, environ=environ, path="", name="")

    report_unknown(ctx, "", document, _TOP_LEVEL_KEYS, secret_hints={})
    database = _read_database(ctx, document.get("database", {}))
    sources = _read_sources(ctx, document.get("sources", {}))
    destinations = _read_destinations(ctx, document.get("destinations", {}))
    declared = document.get("sources")
    jobs = _read_jobs(ctx, document.get("jobs", []), declared if isinstance(declared, dict) else {})

    if problems:
        raise ConfigError(problems)
    assert database is not None
    return Settings(
        path=file_path,
        home=home,
        database=database,
        sources=MappingProxyType(sources),
        jobs=tuple(jobs),
        destinations=MappingProxyType(destinations),
    )


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: configuration file not found; check --config or SYNCER_CONFIG"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib's message carries "(at line L, column C)".
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8; save the file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the file: {exc.strerror or exc}") from None


def _expand_user(text: str, environ: Mapping[str, str]) -> Path:
    home = environ.get("HOME")
    if home and (text == "~" or text.startswith("~/")):
        return Path(home + text[1:])
    return Path(text).expanduser()


# --- the format --------------------------------------------------------------------------------

# --- the format ---------------------------------------------------------------------------------

_TOP_LEVEL_KEYS = ("database", "sources", "destinations", "jobs")


_DATABASE_KEYS = (
    Key(
        "url_env",
        env_name,
        default=None,  # None: the default variable, which may be unset
        secret_hint=(DEFAULT_DATABASE_URL_ENV, "URL"),
        default_text=f'`"{DEFAULT_DATABASE_URL_ENV}"`',
        help="the environment variable holding the database's URL (`postgresql://`, "
        "`postgres://` or `postgresql+asyncpg://`); when set here, that variable must be set. "
        f"Left out: `{DEFAULT_DATABASE_URL_ENV}`, else `{FALLBACK_DATABASE_URL_ENV}`, else the "
        "embedded PostgreSQL under `$SYNCER_HOME`",
    ),
)


_JOB_ID = re.compile(r"[A-Za-z0-9_.-]+")
_CRON_FIELDS = "minute hour day-of-month month day-of-week"


def _timezone(value: object, ctx: Ctx) -> str:
    name = string()(value, ctx)
    assert isinstance(name, str)
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        close = difflib.get_close_matches(name, sorted(zoneinfo.available_timezones()), n=1)
        hint = f'did you mean "{close[0]}"?' if close else 'use an IANA name like "Europe/Berlin"'
        raise Invalid(f'unknown time zone "{name}"; {hint}') from None
    return name


def _cron(value: object, ctx: Ctx) -> str:
    text = string()(value, ctx)
    assert isinstance(text, str)
    count = len(text.split())
    if count != 5:
        raise Invalid(
            f'"{text}" has {count} fields; cron needs 5 ({_CRON_FIELDS}), e.g. "*/15 * * * *"'
        )
    from apscheduler.triggers.cron import CronTrigger  # the parser the daemon uses

    try:
        CronTrigger.from_crontab(text)
    except ValueError as exc:
        raise Invalid(f'"{text}" is not a valid cron expression ({exc})') from None
    return text


def _run(value: object, ctx: Ctx) -> str:
    text = string()(value, ctx)
    assert isinstance(text, str)
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise Invalid(f"cannot split {text!r} into words: {exc}") from None
    if words and words[0] == "syncer":
        raise Invalid(f'leave out the program name: run = "{shlex.join(words[1:])}"')
    if not words or words[0] not in JOB_COMMANDS:
        raise Invalid(f'"{text}" must start with one of: {comma_list(JOB_COMMANDS)}')
    return text


_JOB_KEYS = (
    Key(
        "id",
        string(_JOB_ID, "may only contain letters, digits, '_', '.' and '-'"),
        example='id = "moco-every-15-min"',
        help="unique, letters, digits, `_`, `.` and `-`: the job's identity in the database "
        "(its ticks in `syncer.job_fires`, its lock)",
    ),
    Key(
        "run",
        _run,
        example='run = "sync moco"',
        help="a syncer command line without the program name, starting with "
        + ", ".join(f"`{c}`" for c in JOB_COMMANDS)
        + ' (`"sync moco --stream activities"`)',
    ),
    Key(
        "every",
        duration(positive=True),
        default=None,
        attr="every_s",
        help="fires at whole multiples of this duration since 1970-01-01 00:00 UTC "
        '(`"15m"`: at :00, :15, :30, :45); set `every` or `cron`, not both',
    ),
    Key(
        "cron",
        _cron,
        default=None,
        help='a 5-field cron expression (`"*/15 * * * *"`), in `timezone`; set `every` or '
        "`cron`, not both",
    ),
    Key("timezone", _timezone, default="UTC", help="the IANA time zone of `cron`"),
    Key(
        "timeout",
        duration(positive=True),
        default=3600.0,
        attr="timeout_s",
        help="a run still going after this is cancelled and its tick recorded failed",
    ),
)


# --- the sections ------------------------------------------------------------------------------


def _read_database(ctx: Ctx, value: object) -> DatabaseSettings | None:
    sub = ctx.at("database")
    fields = read_table(sub, value, _DATABASE_KEYS)
    if fields is None:
        return None
    env = fields["url_env"]
    if env is None:
        # Defaulted: SYNCER_DATABASE_URL, else DATABASE_URL; both unset means the embedded
        # Postgres.
        env = next(
            (
                name
                for name in (DEFAULT_DATABASE_URL_ENV, FALLBACK_DATABASE_URL_ENV)
                if ctx.environ.get(name)
            ),
            None,
        )
        if env is None:
            return DatabaseSettings(url=None)
        path = env  # the problem is in the environment, not the file
    else:
        path = sub.at("url_env").path
    try:
        url = secret_from_env(
            env, "Postgres URL (postgresql://user:password@host/db)", ctx.environ, Secret
        )
    except Invalid as exc:
        ctx.problems.append(f"{path}: {exc.message}")
        return None
    if not POSTGRES_URL_SCHEME.match(url.value):
        # Never echo it: it holds the password.
        instead = (
            f" (or export {DEFAULT_DATABASE_URL_ENV}, which takes precedence)"
            if env == FALLBACK_DATABASE_URL_ENV
            else ""
        )
        ctx.problems.append(
            f"{path}: environment variable {env} does not hold a Postgres URL; "
            f"export it as postgresql://user:password@host:port/dbname{instead}"
        )
        return None
    return DatabaseSettings(url=url, url_env=env)


def _read_sources(ctx: Ctx, value: object) -> dict[str, SourceSettings]:
    sources: dict[str, SourceSettings] = {}
    table = ctx.at("sources")
    if not isinstance(value, dict):
        ctx.problems.append(f"sources: expected a table of [sources.NAME], got {describe(value)}")
        return sources
    kinds = registry.source_types()
    for name, body in value.items():
        sub = Ctx(ctx.problems, ctx.environ, table.at(name).path, name)
        _check_source_name(sub, name)
        if not isinstance(body, dict):
            ctx.problems.append(f"{sub.path}: expected a table, got {describe(body)}")
            continue
        source_type = body.get("type")
        if source_type is None:
            ctx.problems.append(
                f'{sub.path}.type: required key is missing; set type = "moco" '
                f"(supported: {comma_list(kinds)})"
            )
            continue
        kind = kinds.get(source_type) if isinstance(source_type, str) else None
        if kind is None:
            if isinstance(source_type, str):
                reason = f'unknown source type "{source_type}"; supported: {comma_list(kinds)}'
            else:
                reason = f"expected a string, got {describe(source_type)}"
            ctx.problems.append(f"{sub.path}.type: {reason}")
            continue
        rest = {k: v for k, v in body.items() if k != "type"}
        fields = read_table(sub, rest, kind.keys)
        if fields is not None and SOURCE_NAME.fullmatch(name):
            source = kind.build(name=name, **fields)
            owner = next((k for k in kinds.values() if k.migrated_schema == source.schema), None)
            twin = next((s.name for s in sources.values() if source.schema in _schemas(s)), None)
            if twin is None:
                twin = next(
                    (s.name for s in sources.values() if s.schema in _schemas(source)), None
                )
            builtin_views = [
                f"{k.migrated_schema}_views" for k in kinds.values() if k.migrated_schema
            ]
            if source.schema in builtin_views or 57 < len(source.schema) <= 63:
                ctx.problems.append(
                    f'{sub.path}: schema "{source.schema}" cannot hold a source: '
                    + (
                        "it is the built-in views' schema"
                        if source.schema in builtin_views
                        else "its views' schema name would pass Postgres's 63 characters"
                    )
                    + "; choose a shorter name or set schema"
                )
            elif owner is not None and owner.name != source_type:
                ctx.problems.append(
                    f'{sub.path}: schema "{source.schema}" holds the tables of the built-in '
                    f'"{owner.name}" sources; name this {source_type} source otherwise, or set '
                    "schema to another name"
                )
            elif twin is not None:
                ctx.problems.append(
                    f'{sub.path}: [sources.{twin}] writes schema "{source.schema}" (or its '
                    "views' schema) already; give each source its own schema"
                )
            else:
                sources[name] = source
    return sources


def _schemas(source: SourceSettings) -> tuple[str, str]:
    """The schemas a source writes: its tables' and its views'."""
    return source.schema, f"{source.schema}_views"


def _check_source_name(ctx: Ctx, name: str) -> None:
    rule = "source names become Postgres schema names"
    if not SOURCE_NAME.fullmatch(name) or len(name) > 63:
        suggestion = re.sub(r"[^a-z0-9_]", "_", name.lower())[:63] or "moco"
        if suggestion[0].isdigit():
            suggestion = "_" + suggestion
        ctx.problems.append(
            f"{ctx.path}: {rule}; use a lowercase identifier of at most 63 characters "
            f"([a-z_][a-z0-9_]*), e.g. [sources.{suggestion}]"
        )
    elif name in RESERVED_SCHEMAS or name.startswith("pg_"):
        ctx.problems.append(
            f'{ctx.path}: {rule} and "{name}" is reserved (syncer, public, information_schema, '
            "pg_*); choose another name"
        )


def _read_destinations(ctx: Ctx, value: object) -> dict[str, DestinationSettings]:
    destinations: dict[str, DestinationSettings] = {}
    if not isinstance(value, dict):
        ctx.problems.append(f"destinations: expected a table, got {describe(value)}")
        return destinations
    kinds = registry.destination_types()
    for name, body in value.items():
        sub = Ctx(ctx.problems, ctx.environ, ctx.at("destinations").at(name).path, name)
        if not isinstance(body, dict):
            ctx.problems.append(f"{sub.path}: expected a table, got {describe(body)}")
            continue
        given = body.get("type")
        kind = kinds.get(given) if isinstance(given, str) else None
        if kind is None:
            got = f'"{given}"' if isinstance(given, str) else "nothing"
            first = next(iter(kinds), "moengage")
            which = (
                "the only destination type"
                if len(kinds) == 1
                else f"or one of: {comma_list(kinds)}"
            )
            ctx.problems.append(f'{sub.path}.type: set type = "{first}" ({which}), got {got}')
            continue
        rest = {k: v for k, v in body.items() if k != "type"}
        fields = read_table(sub, rest, kind.keys)
        if fields is not None:
            destinations[name] = kind.build(name=name, **fields)
    return destinations


def _read_jobs(ctx: Ctx, value: object, sources: Mapping[str, object]) -> list[JobSettings]:
    """Read [[jobs]]; ``sources`` holds every declared source, valid or not."""
    jobs: list[JobSettings] = []
    if not isinstance(value, list):
        ctx.problems.append(
            f"jobs: expected an array of tables (write each job as [[jobs]]), got {describe(value)}"
        )
        return jobs
    first_index: dict[str, int] = {}
    for index, body in enumerate(value):
        sub = Ctx(ctx.problems, ctx.environ, f"jobs[{index}]", "")
        fields = read_table(sub, body, _JOB_KEYS)
        if fields is None:
            continue
        job = JobSettings(**fields)
        ok = _check_job(sub, job, sources)
        if job.id in first_index:
            ctx.problems.append(
                f'{sub.path}.id: job id "{job.id}" is also used by jobs[{first_index[job.id]}]; '
                "job ids must be unique"
            )
            ok = False
        first_index.setdefault(job.id, index)
        if ok:
            jobs.append(job)
    return jobs


def _check_job(ctx: Ctx, job: JobSettings, sources: Mapping[str, object]) -> bool:
    before = len(ctx.problems)
    if job.every_s is None and job.cron is None:
        ctx.problems.append(f'{ctx.path}: no schedule; set every = "15m" or cron = "*/15 * * * *"')
    elif job.every_s is not None and job.cron is not None:
        ctx.problems.append(f"{ctx.path}: set either every or cron, not both")
    words = shlex.split(job.run)
    if words[0] in ("sync", "backfill"):
        source = next((w for w in words[1:] if not w.startswith("-")), None)
        if source is None:
            ctx.problems.append(
                f'{ctx.path}.run: "{job.run}" names no source; write e.g. "{words[0]} moco"'
            )
        elif source not in sources:
            configured = comma_list(sorted(sources)) or "none"
            ctx.problems.append(
                f'{ctx.path}.run: source "{source}" is not configured; add a [sources.{source}] '
                f"table (configured: {configured})"
            )
    return len(ctx.problems) == before


def settings_without_file(environ: Mapping[str, str]) -> Settings:
    """Settings for commands that need no configuration file (``demo``, ``sandbox``)."""
    return Settings(
        path=None,
        home=_expand_user(environ.get("SYNCER_HOME") or DEFAULT_HOME, environ),
        database=DatabaseSettings(url=None),
        sources=MappingProxyType({}),
        jobs=(),
    )
