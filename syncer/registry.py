"""Source and destination types: what a vendor package registers, and how plugins are found.

A source type (``type = "moco"`` in ``[sources.NAME]``) or a destination type is one
:class:`~syncer.sources.base.SourceType` or :class:`~syncer.destinations.base.DestinationType`
(the contracts, in ``sources/base.py`` and ``destinations/base.py``), made by its package's
``plugin`` module as the module's ``TYPE``: importing the module registers it. A plugin outside
syncer may instead call :func:`register_source` or :func:`register_destination` itself. The
generic parts of syncer (configuration, the runners, ``status``, ``check``, the daemon) ask this
registry, never a vendor package, for what differs between vendors.

Plugins are imported by :func:`load_plugins`: the built-in ones, then every module named by an
entry point of the group ``syncer.plugins`` (an installed package), then the modules listed in
``$SYNCER_PLUGINS`` (comma-separated, importable from ``sys.path``). Nothing in ``syncer/``
needs to change for a new source or destination.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
from collections.abc import Mapping
from typing import TypeVar

from syncer.destinations.base import DestinationType
from syncer.errors import ConfigError, SyncerError
from syncer.sources.base import SourceType, Webhooks

__all__ = [
    "PLUGINS_ENV",
    "DestinationType",
    "SourceType",
    "Webhooks",
    "destination_type",
    "destination_types",
    "load_plugins",
    "register_destination",
    "register_source",
    "source_type",
    "source_types",
    "supports",
    "webhook_receiver",
]

PLUGINS_ENV = "SYNCER_PLUGINS"
ENTRY_POINT_GROUP = "syncer.plugins"
BUILT_IN = (
    "syncer.sources.moco.plugin",
    "syncer.sources.moca.plugin",
    "syncer.destinations.moengage.plugin",
)


def webhook_receiver(kinds: list[SourceType], chosen: SourceType | None) -> Webhooks:
    """The webhook receiver of ``chosen`` (the type of ``--source``'s source) if it has one;
    otherwise of the one type among ``kinds`` (the configured sources' types) that has one.
    ConfigError when that is not one type."""
    if chosen is not None and chosen.webhooks is not None:
        return chosen.webhooks
    having = {k.name: k for k in kinds if k.webhooks is not None}
    having = having or {k.name: k for k in _SOURCES.values() if k.webhooks is not None}
    if len(having) != 1:
        names = ", ".join(sorted(having)) or "none"
        raise ConfigError(
            f"webhooks serve: choose the source the hooks are for with --source (source types "
            f"with webhooks: {names})"
        )
    (kind,) = having.values()
    assert kind.webhooks is not None
    return kind.webhooks


def supports(kind: SourceType, verb: str) -> str | None:
    """None if sources of ``kind`` have the command ``verb`` (``sweep``, ``backfill``,
    ``verify``, ``webhooks``); else why not, in words for the user."""
    if verb in kind.refusals:
        return kind.refusals[verb]
    missing = f"{kind.vendor} sources have no {verb}"
    if verb == "webhooks":
        return None if kind.webhooks is not None else missing
    if kind.catalog is None or kind.lister is None or kind.options is None:
        return missing
    if verb == "verify" and kind.count is None:
        return f"{kind.vendor} sources declare no way to count what a list holds"
    return None


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
            loaded = importlib.import_module(module)
        except SyncerError:
            raise  # a plugin's own clear message (a setting it reads at import, say)
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
        kind = getattr(loaded, "TYPE", None)  # a plugin module's type, registered on import
        if isinstance(kind, SourceType) and kind.name not in _SOURCES:
            register_source(kind)
        elif isinstance(kind, DestinationType) and kind.name not in _DESTINATIONS:
            register_destination(kind)
