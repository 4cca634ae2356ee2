"""The extraction strategies: how a catalog stream is read into its table, one home each.

=================  ===========================================================================
``sorted``         keyset walk by ``updated_at`` (``walker.py``, rules in ``walk.py``, sprints
                   in ``sprint.py``)
``unsorted``       offset pages from the watermark, watched; the server's clock as watermark
                   (``walker.py``)
``listing``        every page each run, deletions by absence (``listing.py``)
``unpaged``        one request for the whole list, deletions by absence (``unpaged.py``)
per parent         any of the above once per parent record (``parents.py``)
``report``         snapshots per period, re-pulled while open (``reports.py``)
``object``         one request, one row (``objects.py``)
``detail``         one request per changed record, within a budget (``details.py``)
=================  ===========================================================================

Each keeps syncer's guarantees: a page and the stream's new position in one transaction (so a
run killed at any point resumes, and converges), the watermark never past a record not
stored, every request paced by the credential's shared rate limit (the run's ``ApiClient``).
A source type gives its :class:`~syncer.extract.base.Lister` (its paging) and
:class:`~syncer.extract.base.Options` (its settings); :func:`sync_stream` does the rest.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from syncer.catalog import Stream
from syncer.extract.base import Lister, Options
from syncer.results import StreamResult, SyncContext

__all__ = ["sync_stream"]

Strategy = Callable[[SyncContext[Any], Stream, Lister, Options, StreamResult], Awaitable[None]]


def _strategy(stream: Stream) -> Strategy:
    if stream.parent is not None:
        from syncer.extract.parents import parent_stream

        return parent_stream
    if stream.strategy in ("sorted", "unsorted"):
        from syncer.extract.walker import walk_stream

        return walk_stream
    if stream.strategy == "listing":
        from syncer.extract.listing import listing_stream

        return listing_stream
    if stream.strategy == "unpaged":
        from syncer.extract.unpaged import unpaged_stream

        return unpaged_stream
    if stream.strategy == "report":
        from syncer.extract.reports import report_stream

        return report_stream
    if stream.strategy == "object":
        from syncer.extract.objects import object_stream

        return object_stream
    from syncer.extract.details import detail_stream

    return detail_stream


async def sync_stream(
    context: SyncContext[Any],
    stream: Stream,
    lister: Lister,
    options: Options,
    result: StreamResult,
    *,
    twin: Stream | None = None,
) -> None:
    """Read ``stream`` by its strategy, inside its stream run's row (begun and ended). A
    per-parent list with a ``twin`` (its catalog's ``parent.twin``) is read through it."""
    if twin is not None:
        from syncer.extract.parents import parent_stream

        await parent_stream(context, stream, lister, options, result, twin=twin)
        return
    await _strategy(stream)(context, stream, lister, options, result)
