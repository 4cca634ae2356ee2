"""MOCA's lists as a ``syncer.extract.base.Lister``: what ``syncer verify`` counts them with.

A MOCA list pages by ``offset`` and ``limit`` and answers ``{offset, limit, total, items}`` or
a bare array (``api.parse_list``): the envelope's ``total`` for a query of ``limit=1`` is what
the list holds, for one request; a bare array has none. The scan (``scan.py``) reads and
stores MOCA's lists its own way (its tables carry extracted columns); this lister only asks and
reads pages, for counting and comparing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from syncer.catalog import Stream
from syncer.errors import MalformedResponseError
from syncer.extract.base import Page, Query
from syncer.extract.records import Row
from syncer.http.client import Response
from syncer.sources.moca import api
from syncer.sources.moca.settings import MocaSourceSettings

__all__ = ["MocaLister"]


@dataclass(frozen=True)
class MocaLister:
    source: MocaSourceSettings

    @property
    def page_size(self) -> int:
        return self.source.page_size

    @property
    def stable(self) -> bool:
        return False  # offset pages: a record shifts between pages as the data changes

    def url(self, stream: Stream, *, parent: str | None = None, record: str | None = None) -> str:
        spec = api.STREAMS[stream.name]
        if record is not None:
            return f"{self.source.base_url}{spec.item_path(record)}"
        path = self.source.paths.get(stream.name, spec.path)
        if spec.parent is not None:
            if parent is None:
                raise ValueError(f"{stream.name} is listed per {spec.parent} record")
            path = path.replace("{parent}", parent)
        return f"{self.source.base_url}{path}"

    def params(
        self, stream: Stream, query: Query, page: int | None, cursor: str | None = None
    ) -> dict[str, str]:
        size = query.size or self.page_size
        return {"offset": str(((page or 1) - 1) * size), "limit": str(size)}

    def read(self, stream: Stream, response: Response, query: Query) -> Page:
        listed = api.parse_list(response)
        rows, rejected = api.split_items(api.STREAMS[stream.name], listed.items, query.parent)
        return Page(
            [Row(r.id, r.updated_at, r.data) for r in rows],
            rejected,
            len(listed.items),
            listed.total,
            None,  # no paging headers: a short page is the last
            api.server_time(response) or datetime.now(UTC),
            query.size or self.page_size,
            items=listed.items,
        )

    def body(self, stream: Stream, response: Response) -> Any:
        body = response.json()
        if not isinstance(body, dict):
            raise MalformedResponseError(
                f"{response.url} answered with a JSON {type(body).__name__}, not a MOCA record"
            )
        return body
