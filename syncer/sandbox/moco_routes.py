"""Which catalog stream a MOCO path is, and the ids its path carries.

The routes are made from the catalog's paths as MOCO documents them: ``/activities``,
``/projects/{project_id}/tasks`` (a project's list), ``/invoices/{id}`` (a detail read),
``/account/hourly_rates`` (an object), ``/report/utilization`` (a report). Fixed paths are
tried before ones with an id (``/invoices/locked`` is a list, not invoice "locked").
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from syncer.catalog import Catalog, Stream

__all__ = ["Route", "Routes"]


@dataclass(frozen=True)
class Route:
    stream: Stream
    key: int | None = None  # the project of a per-project list, the record of a detail


class Routes:
    def __init__(self, catalog: Catalog) -> None:
        fixed: list[tuple[re.Pattern[str], Stream]] = []
        holed: list[tuple[re.Pattern[str], Stream]] = []
        for stream in catalog:
            pattern = re.sub(r"\\\{\w+\\\}", r"(\\d+)", re.escape(stream.path))
            (holed if "{" in stream.path else fixed).append((re.compile(f"^{pattern}$"), stream))
        self._routes = fixed + holed

    def find(self, path: str) -> Route | None:
        """The route of ``path`` (under the API prefix; a ``.json`` suffix and a trailing
        slash are taken as MOCO takes them), or None."""
        path = path.removesuffix("/").removesuffix(".json")
        for pattern, stream in self._routes:
            match = pattern.match(path)
            if match:
                key = int(match.group(1)) if match.groups() else None
                return Route(stream, key)
        return None
