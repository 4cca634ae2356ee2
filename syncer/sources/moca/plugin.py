"""The MOCA source type, registered: ``type = "moca"`` under ``[sources.NAME]``.

MOCA (https://www.mocaplatform.com) is a proximity-marketing platform. Its API is thinly
documented; what syncer relies on, and what it had to infer (kept configurable), is described
in ``docs/vendors/moca.md``. Streams are scanned with offset paging and deletions confirmed
record by record (``scan.py``); analytics are pulled per app and metric. ``syncer verify``
compares each list's ``total`` with the warehouse and, where they differ, the list in full
(``lister.py``, ``verify.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from syncer.sources.base import SourceType
from syncer.sources.moca import settings, views
from syncer.sources.moca.settings import MocaSourceSettings

if TYPE_CHECKING:
    from sqlalchemy import MetaData, Table

    from syncer.catalog import Catalog
    from syncer.extract.base import Lister, Options
    from syncer.http.client import Credential
    from syncer.results import StreamResult, SyncContext
    from syncer.store.types import Connection

__all__ = ["TYPE"]

# Every command loads the configuration, and with it this module: what only some commands use
# (the HTTP client, SQLAlchemy, the scan) is imported by the hook that needs it.


def _credential(source: MocaSourceSettings) -> Credential:
    from syncer.sources.moca import api

    return api.credential(source.token.value, source.token.env)


def _tables(schema: str, on: MetaData) -> Sequence[Table]:
    from syncer.sources.moca.tables import tables

    return tables(schema, on)


async def _sync_stream(context: SyncContext[MocaSourceSettings], result: StreamResult) -> None:
    from syncer.sources.moca.scan import sync_stream

    await sync_stream(context, result)


def _probe(source: MocaSourceSettings) -> tuple[str, dict[str, str]]:
    """One record of the first configured top-level list."""
    from syncer.sources.moca import api

    top = [s for s in source.streams if s in api.STREAMS and api.STREAMS[s].parent is None]
    stream = top[0] if top else "apps"
    path = source.paths.get(stream, api.STREAMS[stream].path)
    return f"{source.base_url}{path}", {"offset": "0", "limit": "1"}


def _catalog() -> Catalog:
    from syncer.sources.moca.catalog import CATALOG

    return CATALOG


def _levels(_names: object) -> tuple[tuple[str, ...], ...]:
    from syncer.sources.moca import api

    return api.LEVELS


def _parent_of(stream: str) -> str | None:
    from syncer.sources.moca import api

    return api.parent_of(stream)


def _lister(source: MocaSourceSettings) -> Lister:
    from syncer.sources.moca.lister import MocaLister

    return MocaLister(source)


def _options(source: MocaSourceSettings) -> Options:
    from syncer.extract.base import Options

    return Options(deletion_guard=source.deletion_guard)


async def _count(*args: Any) -> int | None:
    from syncer.extract.base import count

    return await count(*args)  # the envelope's total of a page of one (a bare array: None)


async def _rescan(*args: Any) -> None:
    from syncer.sources.moca.verify import rescan

    await rescan(*args)


async def _count_rows(conn: Connection, schema: str, stream: str) -> tuple[int, datetime | None]:
    """Live rows and the newest record's time; analytics: buckets and ranges together."""
    if stream != "analytics":
        from syncer.store.status import record_counts

        return await record_counts(conn, schema, stream)
    buckets = await conn.fetchrow(
        f'select count(*) as n, max(bucket_start) as newest from "{schema}".analytics'
    )
    ranges = await conn.fetchrow(
        f'select count(*) as n, max(range_end) as newest from "{schema}".analytics_ranges'
    )
    assert buckets is not None
    assert ranges is not None
    newest = max((t for t in (buckets["newest"], ranges["newest"]) if t), default=None)
    return buckets["n"] + ranges["n"], newest


TYPE = SourceType(
    name="moca",
    vendor="MOCA",
    streams=settings.MOCA_STREAMS,
    keys=settings.KEYS,
    build=MocaSourceSettings,
    credential=_credential,
    sync_stream=_sync_stream,
    tables=_tables,
    probe=_probe,
    migrated_schema=settings.SCHEMA,
    views=views.views,
    levels=_levels,
    parent_of=_parent_of,
    count_rows=_count_rows,
    catalog=_catalog,
    lister=_lister,
    options=_options,
    count=_count,
    rescan=_rescan,
    refusals={
        "sweep": (
            "MOCA syncs scan every stream in full and confirm each missing record there, so "
            "there is nothing to sweep. Sweep a MOCO source, e.g. `syncer sweep moco`"
        ),
        "backfill": ("MOCA streams are scanned in full on every sync, so they need no backfill"),
    },
)
