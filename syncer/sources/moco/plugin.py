"""The MOCO source type, registered: ``type = "moco"`` under ``[sources.NAME]``.

MOCO (https://www.mocoapp.com/funktionen/api) is an agency ERP. Its API and what syncer relies
on are described in ``docs/vendors/moco.md``. Its streams are its catalog (``catalog.json``,
generated from MOCO's OpenAPI description): every documented list, each read by the strategy
its parameters allow (``syncer.extract``); ``syncer sweep`` finds deletions (``sweep.py``),
``syncer backfill`` re-reads history in windows (``backfill.py``), and
``syncer webhooks serve`` applies MOCO's webhooks (``webhooks.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncer.sources.base import SourceType, Webhooks
from syncer.sources.moco import settings
from syncer.sources.moco.catalog import CATALOG
from syncer.sources.moco.settings import MocoSourceSettings

if TYPE_CHECKING:
    from sqlalchemy import MetaData, Table

    from syncer.extract.base import Lister, Options
    from syncer.http.client import Credential
    from syncer.results import StreamResult, SyncContext
    from syncer.store.types import Connection

__all__ = ["TYPE"]

# Every command loads the configuration, and with it this module: what only some commands use
# (the HTTP client, SQLAlchemy, the strategies) is imported by the hook that needs it.


def _credential(source: MocoSourceSettings) -> Credential:
    from syncer.sources.moco import api

    return api.credential(source.api_key.value, source.api_key.env)


def _tables(schema: str, on: MetaData) -> Sequence[Table]:
    from syncer.sources.catalogs import catalog_tables

    return catalog_tables(CATALOG)(schema, on)


def _views(raw_schema: str, view_schema: str) -> Sequence[str]:
    from syncer.sources.catalogs import catalog_views

    return catalog_views(CATALOG)(raw_schema, view_schema)


async def _sync_stream(context: SyncContext[MocoSourceSettings], result: StreamResult) -> None:
    from syncer import extract
    from syncer.sources.moco.api import lister, options

    source = context.source
    stream = CATALOG[result.stream]
    twin = CATALOG[stream.parent.twin] if stream.parent and stream.parent.twin else None
    await extract.sync_stream(context, stream, lister(source), options(source), result, twin=twin)


def _lister(source: MocoSourceSettings) -> Lister:
    from syncer.sources.moco.api import lister

    return lister(source)


def _options(source: MocoSourceSettings) -> Options:
    from syncer.sources.moco.api import options

    return options(source)


async def _count(*args: Any) -> int | None:
    from syncer.extract.base import count

    return await count(*args)  # X-Total of a page of one


async def _count_rows(conn: Connection, schema: str, stream: str) -> tuple[int, datetime | None]:
    from syncer.store.status import record_counts, snapshot_counts

    count = snapshot_counts if CATALOG[stream].snapshots else record_counts
    return await count(conn, schema, stream)


def _webhook_config(*args: Any, **kwargs: Any) -> Any:
    from syncer.sources.moco.webhooks import webhook_config

    return webhook_config(*args, **kwargs)


async def _serve_webhooks(*args: Any, **kwargs: Any) -> int:
    from syncer.sources.moco.webhooks import serve_webhooks

    return await serve_webhooks(*args, **kwargs)


def _probe(source: MocoSourceSettings) -> tuple[str, dict[str, str]]:
    """One record of the first configured stream that is a list of its own."""
    from syncer.extract.base import Query
    from syncer.sources.moco.api import lister

    names = [n for n in source.streams if CATALOG[n].parent is None and CATALOG[n].takes("page")]
    stream = CATALOG[names[0] if names else "users"]
    page = lister(source)
    return page.url(stream), page.params(stream, Query(size=1), 1)


TYPE = SourceType(
    name="moco",
    vendor="MOCO",
    streams=settings.MOCO_STREAMS,
    keys=settings.KEYS,
    build=settings.build,
    credential=_credential,
    sync_stream=_sync_stream,
    tables=_tables,
    probe=_probe,
    migrated_schema=settings.SCHEMA,
    views=_views,
    levels=CATALOG.levels,
    parent_of=CATALOG.upstream,
    count_rows=_count_rows,
    webhooks=Webhooks(
        config=_webhook_config,
        source_of=lambda config: str(config.source),
        serve=_serve_webhooks,
        secret_env=lambda source: source.webhook_secret_env,
    ),
    catalog=lambda: CATALOG,
    lister=_lister,
    options=_options,
    count=_count,
)
