"""A toy source type registered from outside syncer: ``type = "toy"`` under ``[sources.NAME]``.

Importing this module (``SYNCER_PLUGINS=toyplug.source``) registers it; nothing in ``syncer/``
names it. It is the third pagination style beside MOCO's pages and MOCA's offsets: cursor
paging. ``GET {base_url}/{stream}?limit=N&cursor=C&updated_since=T`` with
``Authorization: Bearer TOKEN`` answers ``{"records": [...], "next_cursor": "..." | null}``
(records with an integer ``id`` and an ISO ``updated_at``).

A stream is read incrementally: from ``updated_since`` = the stream's watermark (the newest
``updated_at`` stored) minus ``overlap``, following ``next_cursor`` to the end. Each page is
stored with the walk's position (the next cursor and the walk's lower bound) in one
transaction, so a run killed mid-walk resumes at its cursor; the watermark moves only when the
walk has read its last page, so it never passes a record that was not stored.

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

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import BigInteger, MetaData, Table

from syncer import registry, shutdown
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
from syncer.http.client import Credential, Response
from syncer.pipeline import stream_run
from syncer.results import StreamResult, SyncContext
from syncer.sources.base import StreamSpec, split_records
from syncer.store import pages
from syncer.store.tables import record_table
from syncer.tomlspec import Key, duration, http_url, integer, nested, streams

__all__ = ["KEYS", "STREAMS", "TYPE", "ToySourceSettings"]

log = logging.getLogger(__name__)

STREAMS: tuple[str, ...] = ("widgets", "gadgets")


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
    Key("base_url", http_url, example='base_url = "http://127.0.0.1:8000"'),
    Key(
        "token_env",
        env_secret("{NAME} token"),
        attr="token",
        secret_hint=("{NAME}_TOKEN", "token"),
        example='token_env = "{NAME}_TOKEN"',
    ),
    Key("streams", streams(STREAMS), default=STREAMS),
    Key("rate_limit", nested(RATE_LIMIT_KEYS, RateLimit), default=RateLimit(10, 1.0)),
    Key("page_size", integer(1, 1000), default=50),
    Key("overlap", duration(positive=False), default=300.0, attr="overlap_s"),
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
    return [record_table(name, schema, BigInteger, on) for name in STREAMS]


# --- a walk ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Position:
    """Where a walk is: stored with each page (``syncer.streams.walk``), resumed after a kill."""

    since: datetime | None  # the walk's updated_since; None: everything
    cursor: str | None  # the next page's cursor; None: the first page
    reached: datetime | None  # the newest updated_at stored by this walk
    pages: int  # pages stored by this walk

    def to_json(self) -> dict[str, Any]:
        return {
            "since": _iso(self.since),
            "cursor": self.cursor,
            "reached": _iso(self.reached),
            "pages": self.pages,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Position:
        return cls(
            since=_dt(data.get("since")),
            cursor=data.get("cursor"),
            reached=_dt(data.get("reached")),
            pages=int(data.get("pages", 0)),
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _page(response: Response) -> tuple[list[Any], str | None]:
    """The records and the next cursor of one answer; MalformedResponseError if it is neither."""
    body = response.json()
    records = body.get("records") if isinstance(body, dict) else None
    cursor = body.get("next_cursor") if isinstance(body, dict) else None
    if not isinstance(records, list) or not (cursor is None or isinstance(cursor, str)):
        raise MalformedResponseError(
            f"{response.url} answered without a records list and a next_cursor; "
            "check base_url points at the toy API"
        )
    return records, cursor


async def sync_stream(ctx: SyncContext[ToySourceSettings], result: StreamResult) -> None:
    """The toy type's ``sync_stream``: one stream's run, begun and ended."""
    pool, source = ctx.pool, ctx.source
    async with pool.acquire() as conn:
        state = await pages.load_state(conn, source.name, result.stream)
    resumed = None if ctx.full_refresh or state.walk is None else Position.from_json(state.walk)
    if resumed is not None:
        result.resumed_after_pages = resumed.pages
    interrupted = "stopped by a signal; resumes at its cursor next run"
    async with stream_run(ctx, result, interrupted=interrupted):
        await _walk(ctx, result, state.watermark, resumed)


async def _walk(
    ctx: SyncContext[ToySourceSettings],
    result: StreamResult,
    watermark: datetime | None,
    position: Position | None,
) -> None:
    source, stream = ctx.source, result.stream
    if position is None:
        since = None
        if watermark is not None and not ctx.full_refresh:
            since = watermark - timedelta(seconds=source.overlap_s)
        position = Position(since=since, cursor=None, reached=None, pages=0)
    spec = StreamSpec(stream, f"/{stream}")
    url = f"{source.base_url}/{stream}"
    while True:
        shutdown.check()
        params = {"limit": str(source.page_size)}
        if position.cursor is not None:
            params["cursor"] = position.cursor
        if position.since is not None:
            params["updated_since"] = position.since.isoformat()
        before = result.http.requests
        requested_at = datetime.now(UTC)
        response = await ctx.client.get(url, params, stats=result.http)
        records, cursor = _page(response)
        if cursor is not None and cursor == position.cursor:
            raise MalformedResponseError(
                f"{url} answered the cursor it was asked for as the next one; the API loops, "
                "report it to its maintainers"
            )
        rows, rejected = split_records(records, spec)
        stamps = [r.updated_at for r in rows if r.updated_at is not None]
        reached = max([*stamps, position.reached] if position.reached else stamps, default=None)
        position = Position(position.since, cursor, reached, position.pages + 1)
        done = cursor is None
        if done and reached is not None:
            watermark = reached if watermark is None else max(watermark, reached)
        async with ctx.pool.acquire() as conn:
            result.upserted += await pages.commit_page(
                conn,
                pages.PageCommit(
                    schema=source.schema,
                    table=stream,
                    volatile=(),
                    source=source.name,
                    stream=stream,
                    run_id=ctx.run_id,
                    rows=rows,
                    rejected=rejected,
                    requests=result.http.requests - before,
                    walk=None if done else position.to_json(),
                    watermark=watermark,
                    requested_at=requested_at,
                ),
            )
        result.committed_requests = result.http.requests
        result.pages += 1
        result.records += len(records)
        result.rejected += len(rejected)
        if done:
            break
    result.watermark = watermark


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
        refusals={
            "sweep": "the toy API keeps no deletions to sweep",
            "backfill": "a toy stream is read from its watermark; use `syncer sync --full-refresh`",
        },
    )
)
