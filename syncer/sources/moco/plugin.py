"""The MOCO source type, registered: ``type = "moco"`` under ``[sources.NAME]``.

MOCO (https://www.mocoapp.com/funktionen/api) is an agency ERP. Its API and what syncer relies
on are described in ``docs/vendors/moco.md``. Streams are walked incrementally by
``updated_at`` (``stream.py``); ``syncer sweep`` finds deletions (``sweep.py``),
``syncer backfill`` re-reads history in windows (``backfill.py``), and
``syncer webhooks serve`` applies MOCO's webhooks (``webhooks.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from syncer import registry
from syncer.sources.moco import settings, views
from syncer.sources.moco.settings import MocoSourceSettings

if TYPE_CHECKING:
    from sqlalchemy import MetaData, Table

    from syncer.http.client import Credential
    from syncer.results import Report, StreamResult, SyncContext

__all__ = ["TYPE"]

# Every command loads the configuration, and with it this module: what only some commands use
# (the HTTP client, SQLAlchemy, the walk) is imported by the hook that needs it.


def _credential(source: MocoSourceSettings) -> Credential:
    from syncer.sources.moco import api

    return api.credential(source.api_key.value, source.api_key.env)


def _tables(schema: str, on: MetaData) -> Sequence[Table]:
    from syncer.sources.moco.tables import tables

    return tables(schema, on)


async def _sync_stream(context: SyncContext[MocoSourceSettings], result: StreamResult) -> None:
    from syncer.sources.moco import api
    from syncer.sources.moco.stream import walk_stream

    await walk_stream(context, api.STREAMS[result.stream], result)


async def _sweep(*args: Any, **kwargs: Any) -> Report:
    from syncer.sources.moco.sweep import sweep_source

    return await sweep_source(*args, **kwargs)


async def _backfill(*args: Any, **kwargs: Any) -> Report:
    from syncer.sources.moco.backfill import run_backfill

    return await run_backfill(*args, **kwargs)


def _probe(source: MocoSourceSettings) -> tuple[str, dict[str, str]]:
    """One record of the first configured stream."""
    from syncer.sources.moco import api

    spec = api.STREAMS[source.streams[0]]
    params = api.page_params(spec, page=1, per_page=1, updated_after=None)
    return f"{source.base_url}{spec.path}", params


TYPE = registry.register_source(
    registry.SourceType(
        name="moco",
        vendor="MOCO",
        streams=settings.MOCO_STREAMS,
        keys=settings.KEYS,
        build=MocoSourceSettings,
        credential=_credential,
        sync_stream=_sync_stream,
        tables=_tables,
        probe=_probe,
        migrated_schema=settings.SCHEMA,
        views=views.views,
        commands={"sweep": _sweep, "backfill": _backfill},
    )
)
