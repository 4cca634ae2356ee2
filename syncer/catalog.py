"""A source's streams, as data: where each one is listed, how it is read, and what it holds.

A catalog is the one place a stream is declared. Everything per stream derives from its entry:
the warehouse table and its typed view, the strategy that reads it (``syncer.extract``), how
its deletions are found, the webhook targets that change it, what ``syncer streams`` shows,
and the sandbox that serves it. MOCO's catalog is generated from MOCO's own OpenAPI
description (``tools/moco_catalog.py`` writes ``syncer/sources/moco/catalog.json``); a plugin
may write its catalog by hand. Adding a stream is adding an entry.

The strategies (:data:`STRATEGIES`) follow from the parameters a list documents:

* ``sorted``: ``updated_after`` and ``sort_by`` (and records that carry ``updated_at``): a
  keyset walk by ``updated_at`` (``extract/walk.py``), verified page by page;
* ``unsorted``: ``updated_after`` without ``sort_by``, or records without ``updated_at``:
  offset pages from the watermark, watched for changes, the watermark from the server's clock;
* ``listing``: paged, without ``updated_after``: every page each run, deletions by absence;
* ``unpaged``: no ``page`` parameter: one request for the whole list, deletions by absence;
* ``report``: rows without an id over a period (``from``/``to`` or ``year``): a snapshot per
  period, re-pulled while the period is open;
* ``object``: one object (not a list): one request, one row;
* ``detail``: one request per record of another stream that changed since it was last read.

A stream with a ``parent`` is listed once per parent record (``/projects/{project_id}/tasks``),
parents taken from the warehouse. This module is pure: no I/O, no SQL.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "DELETIONS",
    "STRATEGIES",
    "Catalog",
    "Column",
    "Parent",
    "Period",
    "Stream",
]

STRATEGIES: Mapping[str, str] = {
    "sorted": "sorted keyset walk",
    "unsorted": "unsorted incremental",
    "listing": "full listing with diff",
    "unpaged": "unpaged list",
    "report": "report snapshot",
    "object": "single object",
    "detail": "per-record details",
}
# How records deleted at the source are found (``syncer streams``: the "deletions" column).
DELETIONS: Mapping[str, str] = {
    "ids": "sweep by ids",  # `syncer sweep`: the list's `ids` filter, 100 ids a request
    "listing": "sweep by listing",  # `syncer sweep`: every id listed again (per parent)
    "sync": "by the sync",  # the sync lists everything and finds them itself
    "parent": "with its parent",  # a detail row goes when its record goes
    "none": "none",  # reports (re-pulled per period) and objects
}
KEY_TYPES = ("bigint", "text")
RAW = "column"  # a column type: the raw table's own column, not a field of `data`


@dataclass(frozen=True)
class Column:
    """A typed column of a stream's view: its name, its type, and the path of keys to its value
    in the record (``customer.id``); a type of ``column`` is the raw table's own column."""

    name: str
    type: str
    path: tuple[str, ...] = ()

    def to_json(self) -> list[str]:
        return [self.name, self.type, ".".join(self.path)]

    @classmethod
    def from_json(cls, value: Sequence[str]) -> Column:
        name, kind, path = value
        return cls(name, kind, tuple(path.split(".")) if path else ())


@dataclass(frozen=True)
class Parent:
    """A per-parent list: the stream whose records it is listed for, and the path parameter
    the parent's id fills (``/projects/{project_id}/tasks``: projects, project_id)."""

    stream: str
    param: str
    column: str  # the view's column holding the parent's id ("project_id")
    # How the source counts the list over every parent, for `syncer verify`: a list of its own
    # holding the same records (``twin``: /projects/expenses for each project's expenses), or
    # the field of a parent's record naming its children (``embedded``: a project's tasks).
    twin: str | None = None
    embedded: str | None = None


@dataclass(frozen=True)
class Period:
    """How a report is asked for a period: by month (``from``/``to``) or by year (``year``)."""

    unit: str  # "month" or "year"
    params: tuple[str, ...]  # ("from", "to") or ("year",)


@dataclass(frozen=True)
class Stream:
    """One stream of a catalog; see the module's docstring for the strategies."""

    name: str  # the table's and the view's name
    path: str  # as the vendor documents it, e.g. "/projects/{project_id}/tasks"
    strategy: str
    title: str = ""  # what it is, in the vendor's words ("List tasks of a project")
    key_type: str = "bigint"  # of `id`: bigint or text
    replication_key: str | None = "updated_at"  # None: records carry no update time
    query: frozenset[str] = frozenset()  # the query parameters the vendor documents
    params: Mapping[str, str] = field(default_factory=dict)  # sent with every list request
    paged_headers: bool = True  # the vendor documents X-Total and Link for this list
    max_per_page: int | None = None  # the largest `per_page` documented (None: no limit given)
    volatile: tuple[str, ...] = ()  # fields that change on every read: not a change
    deletions: str = "none"  # a key of DELETIONS
    webhook_targets: tuple[str, ...] = ()  # X-Moco-Target values that change this stream
    enabled: bool = True  # synced unless the configuration leaves it out
    parent: Parent | None = None  # listed per record of another stream
    detail_of: str | None = None  # a detail stream: the stream whose records it reads one by one
    # A detail computed from other records (a project's report, from its activities): it
    # changes without its record, so every run reads it again (within the details budget).
    aggregate: bool = False
    period: Period | None = None  # a report: how its periods are asked for
    natural_key: tuple[str, ...] = ()  # a report row's key fields
    columns: tuple[Column, ...] = ()  # the typed view, in order

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(f"{self.name}: unknown strategy {self.strategy!r}")
        if self.deletions not in DELETIONS:
            raise ValueError(f"{self.name}: unknown deletions {self.deletions!r}")
        if self.key_type not in KEY_TYPES:
            raise ValueError(f"{self.name}: key_type is bigint or text, not {self.key_type!r}")
        if (self.strategy == "report") != (self.period is not None):
            raise ValueError(f"{self.name}: a report, and only a report, has a period")
        if (self.strategy == "detail") != (self.detail_of is not None):
            raise ValueError(f"{self.name}: a detail stream, and only one, has detail_of")

    def takes(self, parameter: str) -> bool:
        """Whether the vendor documents ``parameter`` for this list."""
        return parameter in self.query

    @property
    def verifiable(self) -> bool:
        """Whether ``syncer verify`` can compare it with the source (records, not reports,
        objects or details)."""
        return self.strategy not in ("report", "object", "detail")

    @property
    def sweepable(self) -> bool:
        """Whether ``syncer sweep`` checks it for deletions: by ``ids``, or by listing its ids
        in full (others find deletions in their sync, or have none to find)."""
        return self.deletions in ("ids", "listing")

    @property
    def backfillable(self) -> bool:
        """Whether ``syncer backfill`` can re-read it in windows of ``updated_at``: a list of
        its own with ``updated_after``, whose records carry ``updated_at``."""
        return (
            self.strategy in ("sorted", "unsorted")
            and self.parent is None
            and self.replication_key is not None
        )

    @property
    def snapshots(self) -> bool:
        """Rows are snapshots per period (a report), not records keyed by id."""
        return self.strategy == "report"

    @property
    def strategy_text(self) -> str:
        """The strategy as ``syncer streams`` says it ("unsorted incremental, per project")."""
        text = STRATEGIES[self.strategy]
        if self.parent is not None:
            text += f", per {self.parent.param.removesuffix('_id')}"
        return text

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "path": self.path,
            "title": self.title,
            "strategy": self.strategy,
            "key_type": self.key_type,
            "replication_key": self.replication_key,
            "query": sorted(self.query),
            "params": dict(self.params),
            "paged_headers": self.paged_headers,
            "max_per_page": self.max_per_page,
            "volatile": list(self.volatile),
            "deletions": self.deletions,
            "webhook_targets": list(self.webhook_targets),
            "enabled": self.enabled,
            "parent": (
                None
                if self.parent is None
                else {
                    "stream": self.parent.stream,
                    "param": self.parent.param,
                    "column": self.parent.column,
                    "twin": self.parent.twin,
                    "embedded": self.parent.embedded,
                }
            ),
            "detail_of": self.detail_of,
            "aggregate": self.aggregate,
            "period": (
                None
                if self.period is None
                else {"unit": self.period.unit, "params": list(self.period.params)}
            ),
            "natural_key": list(self.natural_key),
            "columns": [c.to_json() for c in self.columns],
        }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Stream:
        parent = data.get("parent")
        period = data.get("period")
        return cls(
            name=data["name"],
            path=data["path"],
            title=data.get("title", ""),
            strategy=data["strategy"],
            key_type=data.get("key_type", "bigint"),
            replication_key=data.get("replication_key", "updated_at"),
            query=frozenset(data.get("query", ())),
            params=dict(data.get("params", {})),
            paged_headers=bool(data.get("paged_headers", True)),
            max_per_page=data.get("max_per_page"),
            volatile=tuple(data.get("volatile", ())),
            deletions=data.get("deletions", "none"),
            webhook_targets=tuple(data.get("webhook_targets", ())),
            enabled=bool(data.get("enabled", True)),
            parent=(
                None
                if parent is None
                else Parent(
                    parent["stream"],
                    parent["param"],
                    parent["column"],
                    parent.get("twin"),
                    parent.get("embedded"),
                )
            ),
            detail_of=data.get("detail_of"),
            aggregate=bool(data.get("aggregate", False)),
            period=None if period is None else Period(period["unit"], tuple(period["params"])),
            natural_key=tuple(data.get("natural_key", ())),
            columns=tuple(Column.from_json(c) for c in data.get("columns", ())),
        )


@dataclass(frozen=True)
class Catalog:
    """Every stream of one source type, in the order they are listed and synced."""

    vendor: str
    streams: tuple[Stream, ...]
    # Where the catalog came from (for MOCO: the OpenAPI description's title, version, digest).
    origin: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [s.name for s in self.streams]
        duplicates = {n for n in names if names.count(n) > 1}
        if duplicates:
            raise ValueError(f"streams listed twice: {', '.join(sorted(duplicates))}")
        known = set(names)
        for stream in self.streams:
            twin = stream.parent.twin if stream.parent else None
            for ref in (stream.parent.stream if stream.parent else None, stream.detail_of, twin):
                if ref is not None and ref not in known:
                    raise ValueError(f"{stream.name}: refers to unknown stream {ref!r}")

    def __getitem__(self, name: str) -> Stream:
        for stream in self.streams:
            if stream.name == name:
                return stream
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return any(s.name == name for s in self.streams)

    def __iter__(self) -> Iterator[Stream]:
        return iter(self.streams)

    def __len__(self) -> int:
        return len(self.streams)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.streams)

    @property
    def defaults(self) -> tuple[str, ...]:
        """The streams synced unless the configuration says otherwise."""
        return tuple(s.name for s in self.streams if s.enabled)

    def upstream(self, name: str) -> str | None:
        """The stream whose records ``name`` is read for (a parent, or a detail's records)."""
        stream = self[name]
        return stream.parent.stream if stream.parent is not None else stream.detail_of

    def children(self, name: str) -> tuple[Stream, ...]:
        """The streams read per record of ``name`` (per-parent lists and details)."""
        return tuple(s for s in self.streams if self.upstream(s.name) == name)

    def levels(self, names: Sequence[str]) -> tuple[tuple[str, ...], ...]:
        """``names`` in levels, each stream after the stream it is read for (if named)."""
        wanted = [n for n in self.names if n in set(names)]
        depth: dict[str, int] = {}

        def level(name: str) -> int:
            if name not in depth:
                up = self.upstream(name)
                depth[name] = 0 if up is None or up not in wanted else level(up) + 1
            return depth[name]

        top = max((level(n) for n in wanted), default=-1)
        return tuple(tuple(n for n in wanted if level(n) == d) for d in range(top + 1))

    def by_target(self, target: str) -> tuple[Stream, ...]:
        """The streams a webhook of ``target`` (``X-Moco-Target``) changes."""
        return tuple(s for s in self.streams if target in s.webhook_targets)

    @property
    def targets(self) -> frozenset[str]:
        return frozenset(t for s in self.streams for t in s.webhook_targets)

    def to_json(self) -> dict[str, Any]:
        return {
            "vendor": self.vendor,
            "origin": dict(self.origin),
            "streams": [s.to_json() for s in self.streams],
        }

    def dumps(self) -> bytes:
        """The catalog as the JSON text it is kept in: stable, one field a line, for review."""
        return orjson.dumps(self.to_json(), option=orjson.OPT_INDENT_2) + b"\n"

    @property
    def fingerprint(self) -> str:
        """A digest of what the warehouse follows (tables, views): changes when they must."""
        shape = [
            [
                s.name,
                s.key_type,
                s.snapshots,
                s.parent is not None,
                [c.to_json() for c in s.columns],
            ]
            for s in self.streams
        ]
        return hashlib.sha256(orjson.dumps(shape)).hexdigest()[:16]

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Catalog:
        return cls(
            vendor=data["vendor"],
            streams=tuple(Stream.from_json(s) for s in data["streams"]),
            origin=dict(data.get("origin", {})),
        )

    @classmethod
    def load(cls, path: Path) -> Catalog:
        return cls.from_json(orjson.loads(path.read_bytes()))

    def with_stream(self, stream: Stream) -> Catalog:
        """This catalog with ``stream`` added (or, by name, replaced)."""
        kept = tuple(s for s in self.streams if s.name != stream.name)
        return Catalog(self.vendor, (*kept, stream), self.origin)
