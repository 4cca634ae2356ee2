"""The MOCA source type, registered: ``type = "moca"`` under ``[sources.NAME]``.

MOCA (https://www.mocaplatform.com) is a proximity-marketing platform. Its API is thinly
documented; what syncer relies on, and what it had to infer (kept configurable), is described
in ``docs/vendors/moca.md``. Streams are scanned with offset paging and deletions confirmed
record by record (``scan.py``); analytics are pulled per app and metric.
"""

from __future__ import annotations

from datetime import datetime

from syncer import registry
from syncer.http.client import Credential
from syncer.sources.moca import api, scan, settings, tables, views
from syncer.sources.moca.settings import MocaSourceSettings
from syncer.store.types import Connection

__all__ = ["TYPE"]


def _credential(source: MocaSourceSettings) -> Credential:
    return api.credential(source.token.value, source.token.env)


def _probe(source: MocaSourceSettings) -> tuple[str, dict[str, str]]:
    """One record of the first configured top-level list."""
    top = [s for s in source.streams if s in api.STREAMS and api.STREAMS[s].parent is None]
    stream = top[0] if top else "apps"
    path = source.paths.get(stream, api.STREAMS[stream].path)
    return f"{source.base_url}{path}", {"offset": "0", "limit": "1"}


def _levels(_names: object) -> tuple[tuple[str, ...], ...]:
    return api.LEVELS


async def _count_rows(conn: Connection, schema: str, stream: str) -> tuple[int, datetime | None]:
    """Live rows and the newest record's time; analytics: buckets and ranges together."""
    if stream != "analytics":
        row = await conn.fetchrow(
            f'select count(*) as n, max(updated_at) as newest from "{schema}"."{stream}"'
            " where _deleted_at is null"
        )
        assert row is not None
        return row["n"], row["newest"]
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


TYPE = registry.register_source(
    registry.SourceType(
        name="moca",
        vendor="MOCA",
        streams=settings.MOCA_STREAMS,
        keys=settings.KEYS,
        build=MocaSourceSettings,
        credential=_credential,
        sync_stream=scan.sync_stream,
        tables=tables.tables,
        probe=_probe,
        migrated_schema=tables.SCHEMA,
        views=views.views,
        levels=_levels,
        parent_of=api.parent_of,
        count_rows=_count_rows,
        refusals={
            "sweep": (
                "MOCA syncs scan every stream in full and confirm each missing record there, so "
                "there is nothing to sweep. Sweep a MOCO source, e.g. `syncer sweep moco`"
            ),
            "backfill": (
                "MOCA streams are scanned in full on every sync, so they need no backfill"
            ),
        },
    )
)
