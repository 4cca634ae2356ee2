"""Source and destination types: what a vendor package registers, and how plugins are found.

A source type (``type = "moco"`` in ``[sources.NAME]``) or a destination type is one
:class:`SourceType` or :class:`DestinationType`, registered by its package's ``plugin`` module
(``syncer/sources/moco/plugin.py``) calling :func:`register_source` or
:func:`register_destination` when imported. The generic parts of syncer (configuration, the
sync run, the load run, ``status``, ``check``, the daemon) ask this registry, never a vendor
package, for what differs between vendors.

Plugins are imported by :func:`load_plugins`: the built-in ones, then every module named by an
entry point of the group ``syncer.plugins`` (an installed package), then the modules listed in
``$SYNCER_PLUGINS`` (comma-separated, importable from ``sys.path``). Nothing in ``syncer/``
needs to change for a new source or destination.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from syncer.errors import ConfigError
from syncer.tomlspec import Key

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import MetaData, Table

    from syncer.config import DestinationSettings, SourceSettings
    from syncer.http.client import Credential
    from syncer.results import LoadOutcome, StreamResult, SyncContext
    from syncer.store.status import ModelStatus
    from syncer.store.types import Connection

__all__ = [
    "PLUGINS_ENV",
    "DestinationType",
    "SourceType",
    "destination_type",
    "destination_types",
    "load_plugins",
    "register_destination",
    "register_source",
    "source_type",
    "source_types",
]

PLUGINS_ENV = "SYNCER_PLUGINS"
ENTRY_POINT_GROUP = "syncer.plugins"
BUILT_IN = (
    "syncer.sources.moco.plugin",
    "syncer.sources.moca.plugin",
    "syncer.destinations.moengage.plugin",
)


def _one_level(names: Sequence[str]) -> Sequence[Sequence[str]]:
    return (names,)


def _no_parent(_stream: str) -> str | None:
    return None


@dataclass(frozen=True)
class SourceType:
    """What syncer needs to know of one kind of source.

    ``sync_stream(context, result)`` reads one stream into the warehouse: it starts and ends
    the stream's run (``pipeline.start_stream``/``pipeline.finish_stream``), stores pages as it
    goes and counts into ``result``; the generic sync run holds the locks, runs the streams
    side by side and records the run. ``tables(schema)`` are the tables a source of this type
    writes, created in its schema when the source is first used.
    """

    name: str  # the value of `type`
    vendor: str  # for messages: "MOCO"
    streams: tuple[str, ...]  # every stream a source of this type can have (`syncer status`)
    keys: tuple[Key, ...]  # the keys of [sources.NAME] besides `type`
    build: Callable[..., SourceSettings]  # settings from name=..., **keys
    credential: Callable[[Any], Credential]  # auth headers of one source's settings
    sync_stream: Callable[[SyncContext[Any], StreamResult], Awaitable[None]]
    tables: Callable[[str, MetaData], Sequence[Table]]  # one schema's tables, declared on
    probe: Callable[[Any], tuple[str, dict[str, str]]]  # `syncer check`: its cheapest read
    # The schema syncer's migrations create this type's tables in (the built-in types: their
    # name); None: created when a source of the type is first used.
    migrated_schema: str | None = None
    levels: Callable[[Sequence[str]], Sequence[Sequence[str]]] = _one_level  # parents first
    parent_of: Callable[[str], str | None] = _no_parent  # a child fails when its parent did
    # Typed views over one schema's tables: (schema, view schema) -> `create or replace view`
    # statements; None: no views. The built-in schemas' views are the migrations' business.
    views: Callable[[str, str], Sequence[str]] | None = None
    # `syncer status`: rows and the newest record's time of one stream's table(s)
    count_rows: Callable[[Connection, str, str], Awaitable[tuple[int, datetime | None]]] | None = (
        None
    )
    # Commands beyond `sync` (``sweep``, ``backfill``): the function that runs each; or, for a
    # command the type has no use for, why not (``refusals``).
    commands: Mapping[str, Callable[..., Awaitable[Any]]] = field(default_factory=dict)
    refusals: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DestinationType:
    """What syncer needs to know of one kind of destination.

    ``load(pool, session, settings, **options)`` runs one load and ``status(conn, settings)``
    says per model what is pending, sent and dead-lettered. Both are usually
    ``syncer.loading.loader(build)`` and ``syncer.loading.statuses(build)``, where ``build``
    makes the destination's ``syncer.loading.Destination`` from its settings: the generic load
    run does the frame, the pending rows, acknowledgements and dead letters; the destination
    turns rows into items, packs and delivers. ``models`` are the names of its SQL models.
    """

    name: str
    vendor: str
    keys: tuple[Key, ...]
    build: Callable[..., DestinationSettings]
    models: tuple[str, ...]  # the names of its SQL models (`syncer load --only`)
    load: Callable[..., Awaitable[LoadOutcome]]
    status: Callable[[Connection, Any], Awaitable[Sequence[ModelStatus]]]  # per model
    check_detail: Callable[[Any], str]  # `syncer check`: what can be said without a request


_T = TypeVar("_T")

_SOURCES: dict[str, SourceType] = {}
_DESTINATIONS: dict[str, DestinationType] = {}
_LOADED: set[str] = set()


def register_source(kind: SourceType) -> SourceType:
    """Make ``kind`` available as ``type = "<kind.name>"`` under ``[sources.NAME]``."""
    _SOURCES[kind.name] = kind
    return kind


def register_destination(kind: DestinationType) -> DestinationType:
    """Make ``kind`` available as ``type = "<kind.name>"`` under ``[destinations.NAME]``."""
    _DESTINATIONS[kind.name] = kind
    return kind


def source_types() -> Mapping[str, SourceType]:
    load_plugins()
    return _SOURCES


def destination_types() -> Mapping[str, DestinationType]:
    load_plugins()
    return _DESTINATIONS


def source_type(name: str) -> SourceType:
    """The registered source type ``name``; ConfigError naming the ones there are."""
    return _registered(source_types(), "source", name)


def destination_type(name: str) -> DestinationType:
    """The registered destination type ``name``; ConfigError naming the ones there are."""
    return _registered(destination_types(), "destination", name)


def _registered(kinds: Mapping[str, _T], what: str, name: str) -> _T:
    if name not in kinds:
        raise ConfigError(
            f'unknown {what} type "{name}"; registered: {", ".join(sorted(kinds))} '
            f"(a plugin's type needs its module in ${PLUGINS_ENV} or installed)"
        )
    return kinds[name]


def load_plugins(environ: Mapping[str, str] | None = None) -> None:
    """Import the built-in plugins, the installed ones and those ``$SYNCER_PLUGINS`` names.

    Each module is imported once per process; a module that cannot be imported is a
    ConfigError naming it and what went wrong."""
    environ = os.environ if environ is None else environ
    wanted = list(BUILT_IN)
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        wanted.append(entry.module)  # "package.plugin" (or "package.plugin:anything")
    wanted += [m.strip() for m in environ.get(PLUGINS_ENV, "").split(",") if m.strip()]
    for module in wanted:
        if module in _LOADED:
            continue
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ConfigError(
                f"{PLUGINS_ENV}: cannot import plugin module {module!r} ({exc}); install it or "
                "put its folder on PYTHONPATH"
            ) from None
        except Exception as exc:  # a plugin's own bug: named, not a traceback
            raise ConfigError(
                f"plugin module {module!r} failed while loading ({type(exc).__name__}: {exc}); "
                "fix the plugin or remove it from "
                f"{PLUGINS_ENV if module not in BUILT_IN else 'the installation'}"
            ) from None
        _LOADED.add(module)
