"""What a source type implements, and what it is given: the contract of the generic runners.

``syncer/destinations/base.py`` is its counterpart on the destination side. A source type is one
:class:`SourceType`, made by its package's ``plugin`` module as the module's ``TYPE`` (the
registry, ``syncer.registry``, registers it when the module is imported). It says what differs
between vendors, and nothing else:

- its settings: the keys of ``[sources.NAME]`` (``keys``, ``syncer.tomlspec.Key``) and how they
  are built (``build``), the credential they carry (``credential``);
- its streams: by name (``streams``), and, for a catalog type, as data (``catalog``,
  ``syncer.catalog.Catalog``) with its paging (``lister``, ``syncer.extract.base.Lister``) and
  strategy options (``options``), and how many records a query holds (``count``; with
  ``rescan``, how a verify compares a list in full where a count differs);
- its tables and typed views (``tables``, ``views``; ``syncer.sources.catalogs`` derives both
  from a catalog), and how ``syncer status`` counts a table (``count_rows``);
- how one stream is read (``sync_stream``; a catalog type hands it to ``syncer.extract``);
- its webhook receiver, if any (``webhooks``), and why a command it has no use for is refused
  (``refusals``).

The runners (``syncer.runners``: sync, sweep, backfill, verify) do the rest: locks, leases, runs,
pacing, provisioning, and reading any catalog type's lists with its lister. Nothing here imports
them: a source package depends on this module, never on the runners, which depend on it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from syncer.tomlspec import Key

if TYPE_CHECKING:
    from datetime import datetime

    from sqlalchemy import MetaData, Table

    from syncer.catalog import Catalog
    from syncer.config import SourceSettings
    from syncer.extract.base import Lister, Options
    from syncer.http.client import Credential
    from syncer.results import StreamResult, SyncContext
    from syncer.store.types import Connection

__all__ = ["SourceType", "Webhooks"]


def _one_level(names: Sequence[str]) -> Sequence[Sequence[str]]:
    return (names,)


def _no_parent(_stream: str) -> str | None:
    return None


@dataclass(frozen=True)
class SourceType:
    """What syncer needs to know of one kind of source.

    ``sync_stream(context, result)`` reads one stream into the warehouse: inside
    ``syncer.extract.running.stream_run(context, result)`` (the stream run's row, begun and
    ended), it stores pages as it goes and counts into ``result``; the generic sync run holds
    the locks, runs the streams side by side and records the run. ``tables(schema)`` are the
    tables a source of this type writes, made in its schema when the source is first used.
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
    # Why a command the type has no use for is refused (``sweep``, ``backfill``, ``verify``):
    # without a refusal, a type with a catalog and a lister has each of them (the generic
    # runners read its lists), and ``supports`` says which.
    refusals: Mapping[str, str] = field(default_factory=dict)
    # Its streams as data (``syncer.catalog``), loaded when asked for: `syncer streams` lists
    # them, sweeps and verifies read each one's strategy; None: streams declared by name only.
    catalog: Callable[[], Catalog] | None = None
    # A catalog type's paging (``syncer.extract.base.Lister``) and strategy options, from one
    # source's settings: what the generic runners (verify) read its lists with.
    lister: Callable[[Any], Lister] | None = None
    options: Callable[[Any], Options] | None = None
    # `syncer verify`: how many records a query of a list holds (MOCO: X-Total of a page of
    # one), as (client, lister, stream, query, stats) -> count, None if the answer does not
    # say; a type without it cannot be verified.
    count: Callable[..., Awaitable[int | None]] | None = None
    # `syncer verify` of a type that reads its lists its own way (MOCA): where a stream's
    # count (each parent's, summed) differs from its live rows, or the list gives none, the
    # stream listed again in full and compared both ways, storing what is missing and marking
    # what is gone (behind the deletion guard), or, not repairing, only counting; as
    # (context, stream, result: StreamVerify, repair) -> None, counting into the result.
    # None: the generic methods read the lists with ``lister`` (counts, whole, parents).
    rescan: Callable[..., Awaitable[None]] | None = None
    # `syncer webhooks serve`: the receiver of the vendor's signed webhooks; None: it has none.
    webhooks: Webhooks | None = None


@dataclass(frozen=True)
class Webhooks:
    """A source type's webhook receiver: ``config(settings, environ, source)`` picks the source
    the hooks are for (``source``: ``--source``, or None for the only one) with its signature
    key, a ConfigError naming the fix otherwise; ``serve(pool, config, host=, port=,
    metrics_port=, metrics_host=)`` applies deliveries until SIGTERM (its exit code);
    ``secret_env(source)`` is the variable holding a source's key (its value is redacted from
    the logs), if set."""

    config: Callable[..., Any]
    source_of: Callable[[Any], str]  # a config's source name
    serve: Callable[..., Awaitable[int]]
    secret_env: Callable[[Any], str | None]
