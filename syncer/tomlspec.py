"""Declarative validation of TOML tables, reporting every problem at once.

A table is read by a sequence of :class:`Key` (name, converter, default, settings attribute,
and what the key means) with :func:`read_table`. A converter takes the raw TOML value and a
:class:`Ctx` (where problems go, the environment, the value's dotted path) and returns the
settings value or raises :class:`Invalid`. Problems are collected in ``Ctx.problems``, each
naming its key by dotted path and saying how to fix it; unknown keys get a "did you mean" and
literal secrets a pointer to their ``*_env`` key. ``syncer.configfile`` holds the format itself.

A key is declared once, in its table's sequence of keys: ``tools/config_docs.py`` writes the
key tables of ``docs/configuration.md`` from each key's default and ``help`` (the converters
:class:`Duration` and :class:`Nested` say how a default is written and which keys a sub-table
has), and ``tests/unit/test_config_docs.py`` keeps that page current.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from syncer.durations import parse_duration

_S = TypeVar("_S")


# --- the declarative validator -----------------------------------------------------------------


@dataclass
class Ctx:
    """What a converter needs: where problems go, the environment, and where it is."""

    problems: list[str]
    environ: Mapping[str, str]
    path: str  # dotted path of the value being read
    name: str  # name of the enclosing [sources.NAME] table, for messages and suggestions

    def at(self, key: str) -> Ctx:
        return Ctx(self.problems, self.environ, join(self.path, key), self.name)


class Invalid(Exception):
    """A value is wrong; ``message`` (without the path) says how, or None if already reported."""

    def __init__(self, message: str | None = None) -> None:
        super().__init__(message)
        self.message = message


Convert = Callable[[object, Ctx], object]
REQUIRED: Any = object()


@dataclass(frozen=True)
class Key:
    """One key of a table: how to convert it, its default, the settings attribute it fills,
    and what it means (``help``, for the reference in ``docs/configuration.md``)."""

    name: str
    convert: Convert
    default: object = REQUIRED
    attr: str | None = None
    # For a `*_env` key: (suggested variable, what it holds) for a literal secret in the file.
    secret_hint: tuple[str, str] | None = None
    example: str = ""  # TOML for a required key, shown when it is missing; may use {NAME}
    help: str = ""  # what the key means, one sentence or two (Markdown)
    # The default in words, where the value alone does not say it (None standing for
    # "the source's name", a default computed from a catalog); else it is written from `default`.
    default_text: str | None = None


def read_table(ctx: Ctx, value: object, keys: Sequence[Key]) -> dict[str, Any] | None:
    """Convert a table by ``keys``; return attribute -> value, or None if anything was wrong."""
    if not isinstance(value, dict):
        ctx.problems.append(f"{ctx.path}: expected a table, got {describe(value)}")
        return None
    before = len(ctx.problems)
    hints = {k.name: k.secret_hint for k in keys if k.secret_hint}
    # A misspelt required key is reported once, as the misspelling.
    suggested = report_unknown(ctx, ctx.path, value, [k.name for k in keys], hints)
    result: dict[str, Any] = {}
    for key in keys:
        sub = ctx.at(key.name)
        if key.name not in value:
            if key.default is REQUIRED and key.name not in suggested:
                fix = f"; add {key.example.format(NAME=ctx.name.upper())}" if key.example else ""
                ctx.problems.append(f"{sub.path}: required key is missing{fix}")
            else:
                result[key.attr or key.name] = key.default
            continue
        try:
            result[key.attr or key.name] = key.convert(value[key.name], sub)
        except Invalid as exc:
            if exc.message is not None:
                ctx.problems.append(f"{sub.path}: {exc.message}")
    return None if len(ctx.problems) > before else result


# Keys that hold a secret by their name alone; found in a table with a `*_env` key, they are
# taken for a literal secret rather than a typo.
SECRET_WORDS = frozenset(
    {
        "api_key",
        "apikey",
        "key",
        "token",
        "api_token",
        "access_token",
        "auth_token",
        "password",
        "passwd",
        "secret",
        "url",
        "dsn",
    }
)


def report_unknown(
    ctx: Ctx,
    path: str,
    table: Mapping[str, object],
    known: Iterable[str],
    secret_hints: Mapping[str, tuple[str, str]],
) -> set[str]:
    """Report keys not in ``known``; return the known keys suggested for misspellings."""
    known = list(known)
    suggested: set[str] = set()
    for key in table:
        if key in known:
            continue
        env_key = f"{key}_env" if f"{key}_env" in secret_hints else None
        if env_key is None and key.lower() in SECRET_WORDS and secret_hints:
            env_key = next(iter(secret_hints))
        if env_key is not None:
            suggestion, noun = secret_hints[env_key]
            ctx.problems.append(
                f"{join(path, key)}: secrets never go in the file; "
                f'set {env_key} = "{suggestion.format(NAME=ctx.name.upper())}" '
                f"and export the {noun} in that variable"
            )
            suggested.add(env_key)
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f'; did you mean "{close[0]}"?' if close else f"; known keys: {', '.join(known)}"
        ctx.problems.append(f"{join(path, key)}: unknown key{hint}")
        suggested.update(close)
    return suggested


_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def join(path: str, key: str) -> str:
    part = key if _BARE_KEY.fullmatch(key) else '"' + key.replace('"', '\\"') + '"'
    return f"{path}.{part}" if path else part


def describe(value: object) -> str:
    """The TOML type of ``value``, for 'expected X, got Y'."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return "a date/time"


# --- converters: each returns the settings value or raises Invalid -----------------------------


def string(pattern: re.Pattern[str] | None = None, rule: str = "") -> Convert:
    def convert(value: object, ctx: Ctx) -> str:
        if not isinstance(value, str):
            raise Invalid(f"expected a string, got {describe(value)}")
        if not value.strip():
            raise Invalid("must not be empty")
        if pattern is not None and not pattern.fullmatch(value):
            raise Invalid(f'"{value}" {rule}')
        return value

    return convert


def integer(low: int, high: int | None = None) -> Convert:
    def convert(value: object, ctx: Ctx) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"expected an integer, got {describe(value)}")
        if value < low or (high is not None and value > high):
            bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
            raise Invalid(f"must be {bounds}, got {value}")
        return value

    return convert


def number(*, above: float) -> Convert:
    def convert(value: object, ctx: Ctx) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise Invalid(f"expected a number, got {describe(value)}")
        if not math.isfinite(value) or value <= above:
            raise Invalid(f"must be a number greater than {above:g}, got {value}")
        return float(value)

    return convert


@dataclass(frozen=True)
class Duration:
    """A duration converter: a string ("15m") or a number of seconds. Its default is written
    back as a duration in the reference (``tools/config_docs.py`` asks ``isinstance``)."""

    at_least: float
    positive: bool

    def __call__(self, value: object, ctx: Ctx) -> float:
        if isinstance(value, str):
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                raise Invalid(str(exc)) from None
        elif isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
            if not math.isfinite(seconds):
                raise Invalid(f"must be a finite duration, got {value}")
        else:
            raise Invalid(
                f'expected a duration such as "15m" or a number of seconds, got {describe(value)}'
            )
        if self.positive and seconds <= 0:
            raise Invalid(f'must be longer than zero, e.g. "15m", got {value!r}')
        if seconds < self.at_least:
            raise Invalid(f"must not be negative, got {value!r}")
        return seconds


def duration(*, at_least: float = 0.0, positive: bool) -> Duration:
    """A duration string ("15m") or a number of seconds."""
    return Duration(at_least, positive)


def http_url(value: object, ctx: Ctx) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected a string, got {describe(value)}")
    match = re.fullmatch(r"(?i)(https?)://([^/?#]*)([^?#]*)", value.strip())
    if match is None:
        raise Invalid(
            f'"{value}" is not an http(s) URL; write it like "https://acme.mocoapp.com/api/v1"'
        )
    if "@" in match.group(2):
        # Never echo it: the part before "@" is a credential.
        raise Invalid("must not contain credentials; put the API key in the *_env variable")
    if not match.group(2):
        raise Invalid(f'"{value}" has no host; write it like "https://acme.mocoapp.com/api/v1"')
    return value.strip().rstrip("/")


_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def env_name(value: object, ctx: Ctx) -> str:
    if not isinstance(value, str):
        raise Invalid(f"expected the name of an environment variable, got {describe(value)}")
    if not _ENV_NAME.fullmatch(value):
        # Never echo it: this is where a pasted secret ends up.
        raise Invalid(
            "expected the NAME of an environment variable (letters, digits and underscores, "
            'e.g. "MOCO_API_KEY"); put the secret itself in that variable, not in the file'
        )
    return value


def secret(what: str, make: Callable[[str, str], object]) -> Convert:
    """An `*_env` key: the variable must be set; ``what`` names its content for the user.

    The value is ``make(variable name, secret)``, e.g. the settings' ``Secret``.
    """

    def convert(value: object, ctx: Ctx) -> object:
        env = env_name(value, ctx)
        return secret_from_env(env, what.format(NAME=ctx.name.upper()), ctx.environ, make)

    return convert


def secret_from_env(
    env: str, what: str, environ: Mapping[str, str], make: Callable[[str, str], _S]
) -> _S:
    """``make(env, value)`` for the set, non-blank variable ``env``; else :class:`Invalid`."""
    value = environ.get(env)
    if value is None:
        raise Invalid(f"environment variable {env} is not set; export it with your {what}")
    if not value.strip():
        raise Invalid(f"environment variable {env} is empty; export it with your {what}")
    return make(env, value)


def stream_names(known: tuple[str, ...]) -> Convert:
    """Stream names, each one known and listed once; an empty list is allowed."""
    return streams(known, allow_empty=True)


def streams(known: tuple[str, ...], *, allow_empty: bool = False) -> Convert:
    def convert(value: object, ctx: Ctx) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Invalid(f"expected an array of stream names, got {describe(value)}")
        if not value and not allow_empty:
            raise Invalid(
                f"name at least one stream, or leave the key out for all: {comma_list(known)}"
            )
        seen: set[str] = set()
        for name in value:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=1)
                hint = f'did you mean "{close[0]}"? ' if close else ""
                ctx.problems.append(
                    f'{ctx.path}: unknown stream "{name}"; {hint}known streams: {comma_list(known)}'
                )
            elif name in seen:
                ctx.problems.append(f'{ctx.path}: stream "{name}" is listed twice; list it once')
            seen.add(name)
        if not seen <= set(known) or len(seen) != len(value):
            raise Invalid()
        return tuple(value)

    return convert


def comma_list(names: Iterable[str]) -> str:
    return ", ".join(names)


@dataclass(frozen=True)
class Nested:
    """A sub-table such as ``rate_limit = { requests = 120, per_seconds = 120 }``: read by its
    ``keys`` into ``build(**fields)`` (the reference lists its keys as ``rate_limit.requests``)."""

    keys: Sequence[Key]
    build: Callable[..., object]

    def __call__(self, value: object, ctx: Ctx) -> object:
        fields = read_table(ctx, value, self.keys)
        if fields is None:
            raise Invalid()
        return self.build(**fields)


def nested(keys: Sequence[Key], build: Callable[..., object]) -> Nested:
    """A sub-table such as ``rate_limit = { requests = 120, per_seconds = 120 }``."""
    return Nested(tuple(keys), build)


def boolean(value: object, ctx: Ctx) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"expected true or false, got {describe(value)}")
    return value


def names(known: tuple[str, ...], what: str) -> Convert:
    def convert(value: object, ctx: Ctx) -> tuple[str, ...]:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise Invalid(f"expected an array of {what}, got {describe(value)}")
        unknown = [v for v in value if v not in known]
        if unknown or not value:
            raise Invalid(f"unknown {what} {unknown}; choose from {comma_list(known)}")
        return tuple(value)

    return convert


def choice(options: tuple[str, ...]) -> Convert:
    def convert(value: object, ctx: Ctx) -> str:
        if value not in options:
            raise Invalid(f"expected one of {comma_list(options)}, got {value!r}")
        return str(value)

    return convert


def share(value: object, ctx: Ctx) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 1:
        raise Invalid(f"expected a share between 0 and 1 (e.g. 0.2), got {value!r}")
    return float(value)
