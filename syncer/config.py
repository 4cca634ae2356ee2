"""The settings every command reads: frozen dataclasses, the credential type, and the keys
that every source and destination type takes alike.

This module is a base layer: vendor packages build their settings from it (``Secret``,
``RateLimit``, :data:`SCHEMA_KEY`, :func:`request_keys`, ...), and nothing here knows which
types are registered. Reading ``schedules.toml`` into :class:`Settings` is
:mod:`syncer.configfile`, which sits above the registry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Protocol

from syncer.errors import ConfigError
from syncer.tomlspec import (
    Ctx,
    Invalid,
    Key,
    comma_list,
    duration,
    env_name,
    integer,
    number,
    secret_from_env,
    string,
)

__all__ = [
    "DatabaseSettings",
    "DestinationSettings",
    "JobSettings",
    "RateLimit",
    "SchemaByName",
    "Secret",
    "Settings",
    "SourceSettings",
    "env_secret",
]

DEFAULT_CONFIG_NAME = "schedules.toml"
DEFAULT_HOME = "~/.local/share/syncer"
DEFAULT_DATABASE_URL_ENV = "SYNCER_DATABASE_URL"
# The platforms' conventional variable (Heroku, Render, Railway, ...): used when the default
# variable above is unset and [database] url_env is not configured.
FALLBACK_DATABASE_URL_ENV = "DATABASE_URL"
# `syncer status` flags a stream STALE after this long without a successful sync: a day, so
# that a once-a-day schedule is not flagged; set it to a few of your job intervals.
DEFAULT_STALE_AFTER_S = 86400.0

JOB_COMMANDS: tuple[str, ...] = ("sync", "backfill", "load", "sweep", "verify")


# --- settings ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    """A secret read from the environment; prints as the variable's name, never its value.

    A variable that is unset or blank when the settings load is not an error yet: the secret is
    kept with ``problem`` saying what is wrong and how to fix it (``missing`` is then true and
    ``value`` empty). Each command requires only the secrets of what it touches
    (:meth:`Settings.require_secrets`), so ``syncer sync moco`` runs without MoEngage's key.
    """

    env: str
    value: str = field(repr=False)
    problem: str | None = field(default=None, repr=False)

    @property
    def missing(self) -> bool:
        return self.problem is not None

    def __str__(self) -> str:
        return f"${self.env}"

    def __repr__(self) -> str:
        return f"Secret(env={self.env!r})"


@dataclass(frozen=True)
class RateLimit:
    requests: int
    per_seconds: float


@dataclass(frozen=True)
class DatabaseSettings:
    url: Secret | None
    url_env: str = DEFAULT_DATABASE_URL_ENV


class SourceSettings(Protocol):
    """What every source's settings have, whatever its type (each type adds its own keys)."""

    @property
    def name(self) -> str: ...  # [sources.NAME]

    @property
    def type(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def streams(self) -> tuple[str, ...]: ...

    @property
    def rate_limit(self) -> RateLimit: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def max_attempts(self) -> int: ...

    @property
    def concurrency(self) -> int: ...

    @property
    def stale_after_s(self) -> float: ...

    @property
    def secret(self) -> Secret: ...  # its credential

    @property
    def schema(self) -> str: ...  # the Postgres schema its tables are in


class DestinationSettings(Protocol):
    """What every destination's settings have, whatever its type."""

    @property
    def name(self) -> str: ...

    @property
    def type(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def timeout_s(self) -> float: ...

    @property
    def secrets(self) -> tuple[Secret, ...]: ...  # its credentials


@dataclass(frozen=True)
class JobSettings:
    id: str
    run: str
    every_s: float | None
    cron: str | None
    timezone: str = "UTC"
    timeout_s: float = 3600.0  # a run still going after this is cancelled and counted failed


@dataclass(frozen=True)
class Settings:
    path: Path | None
    home: Path
    database: DatabaseSettings
    sources: Mapping[str, SourceSettings]
    jobs: tuple[JobSettings, ...]
    destinations: Mapping[str, DestinationSettings] = field(
        default_factory=lambda: MappingProxyType({})
    )

    @property
    def database_url(self) -> str | None:
        """The configured database URL; None: the embedded server (``store.database``)."""
        return self.database.url.value if self.database.url is not None else None

    def secrets_of(
        self, *, sources: Iterable[str] = (), destinations: Iterable[str] = ()
    ) -> list[Secret]:
        """The credentials of the named sources and destinations (names not configured are
        skipped: :meth:`source` and :meth:`destination` report those)."""
        found: list[Secret] = []
        for name in sources:
            source = self.sources.get(name)
            if source is not None:
                found.append(source.secret)
        for name in destinations:
            destination = self.destinations.get(name)
            if destination is not None:
                found += destination.secrets
        return found

    def require_secrets(
        self, *, sources: Iterable[str] = (), destinations: Iterable[str] = ()
    ) -> None:
        """ConfigError listing every unset or blank variable of the named sources and
        destinations: a command calls it, before anything runs, for exactly what it touches."""
        problems = [
            s.problem
            for s in self.secrets_of(sources=sources, destinations=destinations)
            if s.problem is not None
        ]
        if problems:
            raise ConfigError(list(dict.fromkeys(problems)))

    def destination(self, name: str) -> DestinationSettings:
        """The destination configured as ``[destinations.<name>]``; ConfigError when none."""
        try:
            return self.destinations[name]
        except KeyError:
            pass
        where = str(self.path) if self.path else f"{DEFAULT_CONFIG_NAME} (no file was found)"
        configured = comma_list(sorted(self.destinations)) or "none"
        raise ConfigError(
            f'destination "{name}" is not configured in {where}; add a [destinations.{name}] '
            f"table (see docs/configuration.md); configured destinations: {configured}"
        ) from None

    def source(self, name: str) -> SourceSettings:
        """Return the source configured as ``[sources.<name>]``; ConfigError when there is none."""
        try:
            return self.sources[name]
        except KeyError:
            pass
        where = str(self.path) if self.path else f"{DEFAULT_CONFIG_NAME} (no file was found)"
        configured = (
            f"configured sources: {', '.join(sorted(self.sources))}"
            if self.sources
            else "no sources are configured"
        )
        raise ConfigError(
            f'source "{name}" is not configured in {where}; '
            f"add a [sources.{name}] table (see docs/configuration.md); {configured}"
        ) from None


# --- loading -----------------------------------------------------------------------------------


# --- keys every type takes alike ---------------------------------------------------------------

# A source's name becomes a Postgres schema: a lowercase identifier, not one of these.
SOURCE_NAME = re.compile(r"[a-z_][a-z0-9_]*")
RESERVED_SCHEMAS = ("syncer", "public", "information_schema")


def env_secret(what: str) -> Callable[[object, Ctx], Secret]:
    """An `*_env` key of a credential: the variable's name is checked now; an unset or blank
    variable becomes a :class:`Secret` with its ``problem``, an error only for the commands
    that use it. ``what`` names the content for the user ({NAME}: the table's name)."""

    def convert(value: object, ctx: Ctx) -> Secret:
        env = env_name(value, ctx)
        try:
            return secret_from_env(env, what.format(NAME=ctx.name.upper()), ctx.environ, Secret)
        except Invalid as exc:
            return Secret(env, "", problem=f"{ctx.path}: {exc.message}")

    return convert


RATE_LIMIT_KEYS = (
    Key(
        "requests",
        integer(1),
        example="requests = 120",
        help="requests allowed per window, at least 1",
    ),
    Key(
        "per_seconds",
        number(above=0),
        example="per_seconds = 120",
        help="the window, in seconds (> 0)",
    ),
)


def _schema_name(value: object, ctx: Ctx) -> str:
    name = string()(value, ctx)
    assert isinstance(name, str)
    if not SOURCE_NAME.fullmatch(name) or len(name) > 63:
        raise Invalid(
            f'"{name}" is not a schema name; use a lowercase identifier ([a-z_][a-z0-9_]*)'
        )
    if name in RESERVED_SCHEMAS or name.startswith("pg_"):
        raise Invalid(f'"{name}" is reserved (syncer, public, information_schema, pg_*)')
    return name


class SchemaByName:
    """The ``schema`` of a source's settings, for a settings class with the fields ``name`` and
    ``schema_name`` (the :data:`SCHEMA_KEY`): its tables' schema is named after the source
    unless ``schema`` says otherwise."""

    name: str
    schema_name: str | None

    @property
    def schema(self) -> str:
        return self.schema_name or self.name


# Every source type's optional `schema` key: where its tables are (default: the source's name).
SCHEMA_KEY = Key(
    "schema",
    _schema_name,
    default=None,
    attr="schema_name",
    default_text="the source's name",
    help="the Postgres schema of the source's tables (its typed views are in "
    "`<schema>_views`); a lowercase identifier, not `syncer`, `public`, "
    "`information_schema` or `pg_*`",
)

# Keys that sources (and destinations) of every type take alike; their settings have the
# attributes the keys fill (``timeout_s``, ``max_attempts``, ``concurrency``, ``stale_after_s``).
STALE_AFTER_KEY = Key(
    "stale_after",
    duration(positive=True),
    default=DEFAULT_STALE_AFTER_S,
    attr="stale_after_s",
    help="`syncer status` flags a stream STALE when its last successful sync is older than "
    "this, or it never had one; set it to a few of your job intervals",
)


def request_keys(
    *,
    timeout_s: float = 30.0,
    max_attempts: int = 8,
    attempts_help: str = "per request, for 429, 5xx, timeouts and connection resets (at least 1)",
) -> tuple[Key, Key]:
    """``timeout`` (per request, > 0) and ``max_attempts`` (>= 1), with defaults."""
    return (
        Key(
            "timeout",
            duration(positive=True),
            default=timeout_s,
            attr="timeout_s",
            help="per request (> 0)",
        ),
        Key(
            "max_attempts",
            integer(1),
            default=max_attempts,
            help=attempts_help,
        ),
    )


def concurrency_key(default: int = 4) -> Key:
    """``concurrency``: a source's streams in flight at once, 1..16."""
    return Key(
        "concurrency",
        integer(1, 16),
        default=default,
        help="streams in flight at once, sharing one rate limit (1 to 16)",
    )
