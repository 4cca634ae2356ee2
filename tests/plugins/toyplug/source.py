"""A toy source type registered from outside syncer: ``type = "toy"`` under ``[sources.NAME]``.

Importing this module (``SYNCER_PLUGINS=toyplug.source``) registers it; nothing in ``syncer/``
names it. It is the third pagination style beside MOCO's pages and MOCA's offsets: cursor
paging. ``GET {base_url}/{stream}?limit=N&cursor=C&updated_since=T`` with
``Authorization: Bearer TOKEN`` answers ``{"records": [...], "next_cursor": "..." | null}``
(records with an integer ``id`` and an ISO ``updated_at``).

The plugin declares its streams as a catalog and its paging as a lister; syncer's unsorted
incremental strategy (``syncer.extract``) does the reading: from ``updated_since`` = the
stream's watermark minus ``overlap``, following ``next_cursor`` to the end, each page stored
with the walk's position (the next cursor) in one transaction, so a run killed mid-walk resumes
at its cursor; the watermark moves only when the walk has read its last page.

Keys::

    type = "toy"
    base_url = "http://127.0.0.1:8000"    # http(s)
    token_env = "TOY_TOKEN"               # variable holding the bearer token
    streams = ["widgets", "gadgets"]      # default both
    rate_limit = { requests = 10, per_seconds = 1 }
    page_size = 50                        # `limit` asked for, 1..1000
    overlap = "5m"                        # re-read window behind the watermark
    timeout = "30s"
    max_attempts = 8
    concurrency = 2                       # streams in flight at once
    stale_after = "24h"
    schema = "NAME"                       # default: the source's name
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import MetaData, Table

from syncer import extract, registry
from syncer.catalog import RAW, Catalog, Column, Stream
from syncer.config import (
    DEFAULT_STALE_AFTER_S,
    RATE_LIMIT_KEYS,
    SCHEMA_KEY,
    STALE_AFTER_KEY,
    RateLimit,
    SchemaByName,
    Secret,
    concurrency_key,
    env_secret,
    request_keys,
)
from syncer.errors import MalformedResponseError
from syncer.extract.base import Options, Page, Query
from syncer.extract.records import parse_http_date, split_records
from syncer.http.client import Credential, Response
from syncer.results import StreamResult, SyncContext
from syncer.sources.catalogs import catalog_tables
from syncer.tomlspec import Key, duration, http_url, integer, nested, streams

__all__ = ["CATALOG", "KEYS", "STREAMS", "TYPE", "ToySourceSettings"]


def _stream(name: str) -> Stream:
    return Stream(
        name=name,
        path=f"/{name}",
        title=f"List {name}",
        strategy="unsorted",
        query=frozenset({"limit", "cursor", "updated_since"}),
        paged_headers=False,
        columns=(
            Column("id", RAW),
            Column("name", "text", ("name",)),
            Column("updated_at", RAW),
            Column("_synced_at", RAW),
        ),
    )


CATALOG = Catalog("Toy API", (_stream("widgets"), _stream("gadgets")))
STREAMS: tuple[str, ...] = CATALOG.names


@dataclass(frozen=True)
class ToySourceSettings(SchemaByName):
    name: str
    base_url: str
    token: Secret
    streams: tuple[str, ...] = STREAMS
    rate_limit: RateLimit = RateLimit(10, 1.0)
    page_size: int = 50
    overlap_s: float = 300.0
    timeout_s: float = 30.0
    max_attempts: int = 8
    concurrency: int = 2
    stale_after_s: float = DEFAULT_STALE_AFTER_S
    schema_name: str | None = None
    type: str = "toy"

    @property
    def secret(self) -> Secret:
        return self.token


KEYS = (
    Key(
        "base_url",
        http_url,
        example='base_url = "http://127.0.0.1:8000"',
        help="the toy API",
    ),
    Key(
        "token_env",
        env_secret("{NAME} token"),
        attr="token",
        secret_hint=("{NAME}_TOKEN", "token"),
        example='token_env = "{NAME}_TOKEN"',
        help="the environment variable holding the token",
    ),
    Key("streams", streams(STREAMS), default=STREAMS, help="the streams to sync"),
    Key(
        "rate_limit",
        nested(RATE_LIMIT_KEYS, RateLimit),
        default=RateLimit(10, 1.0),
        help="the token's limit",
    ),
    Key("page_size", integer(1, 1000), default=50, help="records asked for per page"),
    Key(
        "overlap",
        duration(positive=False),
        default=300.0,
        attr="overlap_s",
        help="re-read window behind the watermark",
    ),
    *request_keys(),
    concurrency_key(2),
    STALE_AFTER_KEY,
    SCHEMA_KEY,
)


def _credential(source: ToySourceSettings) -> Credential:
    return Credential(
        vendor="Toy API",
        key_env=source.token.env,
        headers={"Authorization": f"Bearer {source.token.value}"},
    )


def _probe(source: ToySourceSettings) -> tuple[str, dict[str, str]]:
    """One record of the first configured stream."""
    return f"{source.base_url}/{source.streams[0]}", {"limit": "1"}


def _tables(schema: str, on: MetaData) -> list[Table]:
    return list(catalog_tables(CATALOG)(schema, on))


@dataclass(frozen=True)
class ToyLister:
    """The toy API's paging: ``limit``, an opaque ``cursor``, ``updated_since``."""

    base_url: str
    page_size: int

    @property
    def stable(self) -> bool:
        return True  # a cursor continues exactly after the last record served

    def url(self, stream: Stream, *, parent: str | None = None, record: str | None = None) -> str:
        return f"{self.base_url}{stream.path}"

    def params(
        self, stream: Stream, query: Query, page: int | None, cursor: str | None = None
    ) -> dict[str, str]:
        params = {"limit": str(query.size or self.page_size)}
        if cursor is not None:
            params["cursor"] = cursor
        if query.updated_after is not None:
            params["updated_since"] = query.updated_after.isoformat()
        return params

    def read(self, stream: Stream, response: Response, query: Query) -> Page:
        body = response.json()
        records = body.get("records") if isinstance(body, dict) else None
        cursor = body.get("next_cursor") if isinstance(body, dict) else None
        if not isinstance(records, list) or not (cursor is None or isinstance(cursor, str)):
            raise MalformedResponseError(
                f"{response.url} answered without a records list and a next_cursor; "
                "check base_url points at the toy API"
            )
        rows, rejected = split_records(records, stream)
        return Page(
            rows,
            rejected,
            len(records),
            None,
            cursor is not None,
            parse_http_date(response.headers.get("Date")) or datetime.now(UTC),
            query.size or self.page_size,
            items=records,
            next_cursor=cursor,
        )

    def body(self, stream: Stream, response: Response) -> Any:
        return response.json()


async def sync_stream(ctx: SyncContext[ToySourceSettings], result: StreamResult) -> None:
    """The toy type's ``sync_stream``: the catalog's strategy over the toy's paging."""
    source = ctx.source
    lister = ToyLister(source.base_url, source.page_size)
    options = Options(overlap_s=source.overlap_s)
    await extract.sync_stream(ctx, CATALOG[result.stream], lister, options, result)


TYPE = registry.register_source(
    registry.SourceType(
        name="toy",
        vendor="Toy API",
        streams=STREAMS,
        keys=KEYS,
        build=ToySourceSettings,
        credential=_credential,
        sync_stream=sync_stream,
        tables=_tables,
        probe=_probe,
        catalog=lambda: CATALOG,
        refusals={
            "sweep": "the toy API keeps no deletions to sweep",
            "backfill": "a toy stream is read from its watermark; use `syncer sync --full-refresh`",
        },
    )
)
