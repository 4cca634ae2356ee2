"""The spec server: an aiohttp app answering MOCO's GET endpoints as its OpenAPI spec says.

Independent of syncer by design (it imports nothing of it): what it serves and how is read
from ``tools/moco-openapi.json`` (``spec.py``), the records come from the schemas
(``data.py``, ``store.py``), a list answers exactly its documented parameters (``lists.py``).

* Auth: ``Authorization: Token token=KEY`` or ``Bearer KEY``, else 401.
* Paging headers (``X-Page``, ``X-Per-Page``, ``X-Total``, ``Link`` with ``rel="next"`` while
  more pages follow, ``rel="prev"`` after the first) only where the 200 answer documents them,
  each only if documented.
* 404 for a project's list or a detail whose record does not exist, and for any other path.
* A test drives it in-process: :meth:`SpecServer.update`, :meth:`~SpecServer.create`,
  :meth:`~SpecServer.delete` change the records; :meth:`~SpecServer.expected` is what a
  correct sync holds; :attr:`~SpecServer.log` is every request.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.specserver.lists import (
    Answer,
    BadRequest,
    answer,
    period,
    report_rows,
    served_record,
)
from tests.specserver.spec import SPEC_PATH, Endpoint, load
from tests.specserver.store import Store

__all__ = ["Logged", "SpecServer"]

DEFAULT_KEY = "spec-server-key"


@dataclass(frozen=True)
class Logged:
    """One request as the server saw it."""

    endpoint: str  # the spec's path template ("" where none matched)
    path: str  # as asked, without the base path
    query: dict[str, str]
    status: int
    undocumented: tuple[str, ...] = ()  # query parameters the spec does not document there
    unmodelled: tuple[str, ...] = ()  # documented filters the server ignores


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
    return web.Response(text=text, status=status, headers=headers, content_type="application/json")


class SpecServer:
    """MOCO as its spec describes it, with deterministic data (``seed``)."""

    def __init__(
        self, *, seed: int = 7, api_key: str = DEFAULT_KEY, spec_path: Path = SPEC_PATH
    ) -> None:
        self.spec = load(spec_path)
        self.store = Store(self.spec, seed)
        self.api_key = api_key
        self.log: list[Logged] = []
        self.last_query: dict[str, dict[str, str]] = {}  # per endpoint, the last one asked
        self.armed: dict[str, int] = {}  # list -> records to delete once its page 1 is served
        self.churned: dict[str, list[int]] = {}  # what those deletions took
        self.periods: dict[str, set[tuple[date, date]]] = {}  # per report, the periods asked

    # --- HTTP -------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        return app

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        return header in (f"Token token={self.api_key}", f"Bearer {self.api_key}")

    async def _handle(self, request: web.Request) -> web.Response:
        query = {k: request.query.getone(k) for k in request.query}
        base = self.spec.base_path
        inner = request.path[len(base) :] if request.path.startswith(base + "/") else None
        found = self.spec.match(inner) if inner is not None else None
        endpoint = found[0] if found else None
        name = endpoint.path if endpoint else ""
        if not self._authorized(request):
            return self._done(name, inner or request.path, query, 401, {"message": "Unauthorized"})
        if found is None or inner is None:
            return self._done(name, request.path, query, 404, {"message": "Not found"})
        e, params = found
        try:
            if e.kind in ("list", "child"):
                return self._list(request, e, inner, query, params)
            if e.kind == "detail":
                return self._detail(e, inner, query, params["id"])
            return self._done(e.path, inner, query, 200, self.store.objects[e.path][1])
        except BadRequest as exc:
            return self._done(e.path, inner, query, 400, {"message": str(exc)})

    def _done(
        self,
        endpoint: str,
        path: str,
        query: dict[str, str],
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        served: Answer | None = None,
    ) -> web.Response:
        self.log.append(
            Logged(
                endpoint,
                path,
                query,
                status,
                served.undocumented if served else (),
                served.unmodelled if served else (),
            )
        )
        if status == 200 and endpoint:
            self.last_query[endpoint] = query
        return _json(body, status, headers)

    def _list(
        self,
        request: web.Request,
        e: Endpoint,
        inner: str,
        query: dict[str, str],
        params: dict[str, str],
    ) -> web.Response:
        parent = None
        if e.kind == "child":
            raw = params.get("project_id", "")
            parent = int(raw) if raw.isdigit() else None
            if parent is None or parent not in self.store.records[e.of or ""]:
                return self._done(e.path, inner, query, 404, {"message": "Not found"})
        served = answer(self.store, e, query, parent=parent)
        if e.report:
            self.periods.setdefault(e.path, set()).add(period(e, query, datetime.now(UTC).date()))
        self._churn(e, query, served)
        return self._done(
            e.path, inner, query, 200, served.records, self._headers(request, e, served), served
        )

    def _headers(self, request: web.Request, e: Endpoint, served: Answer) -> dict[str, str]:
        page = served.page or 1
        size = served.per_page or max(served.total, 1)
        values: dict[str, str] = {
            "X-Page": str(page),
            "X-Per-Page": str(size),
            "X-Total": str(served.total),
        }
        links = []
        if page > 1:
            links.append(f'<{request.url.update_query(page=str(page - 1))}>; rel="prev"')
        if served.page is not None and page * size < served.total:
            links.append(f'<{request.url.update_query(page=str(page + 1))}>; rel="next"')
        if links:
            values["Link"] = ", ".join(links)
        return {k: v for k, v in values.items() if k in e.headers}

    def _detail(self, e: Endpoint, inner: str, query: dict[str, str], raw: str) -> web.Response:
        table = self.store.records[e.of or ""]
        rec = table.get(int(raw)) if raw.isdigit() else None
        if rec is None:
            return self._done(e.path, inner, query, 404, {"message": "Not found"})
        return self._done(e.path, inner, query, 200, self.store.detail(e, rec))

    def _churn(self, e: Endpoint, query: dict[str, str], served: Answer) -> None:
        """A deletion armed for ``e``: right after page 1 of a query with more pages, the
        records in the middle of that page go (the later records shift back by as many)."""
        n = self.armed.get(e.path)
        more = served.page == 1 and served.total > len(served.records)
        if not n or not more or query.get("ids"):
            return
        del self.armed[e.path]
        middle = len(served.records) // 2
        ids = [r["id"] for r in served.records[middle : middle + n]]
        self.churned[e.path] = self.store.delete_ids(e.path, ids)

    # --- control API (tests run the server in-process) --------------------------------------

    def delete_while_read(self, path: str, n: int = 1) -> None:
        """Delete ``n`` records of the list ``path`` as soon as page 1 of a query of more than
        one page was served (the first such query; :attr:`churned` names them)."""
        self.armed[path] = n

    def update(self, path: str, n: int) -> list[int]:
        """Change ``n`` records of the list ``path`` now (an object: change it); their ids."""
        return self.store.update(path, n)

    def create(self, path: str, n: int) -> list[int]:
        """Add ``n`` records to ``path`` (a project's list: under random projects)."""
        return self.store.create(path, n)

    def delete(self, path: str, n: int) -> list[int]:
        """Delete ``n`` records of ``path``; a project's lists go with the project."""
        return self.store.delete(path, n)

    def expected(self, path: str) -> dict[Any, dict[str, Any]]:
        """What a correct sync of ``path`` holds, by id: every record, archived and
        disregarded ones too, as served (with the parameters last asked, for the ``years`` a
        list takes). A detail: the detail of every record of its list; an object: under 0."""
        e = self.spec.endpoints[path]
        if e.kind == "object":
            return {0: self.store.objects[path][1]}
        if e.kind == "detail":
            table = self.store.records[e.of or ""]
            return {i: self.store.detail(e, r) for i, r in table.items()}
        if e.report:
            raise ValueError(f"{path} is a report: see report_rows")
        query = self.last_query.get(path, {})
        table = self.store.table(path)
        return {i: served_record(self.store, e, table[i], query) for i in sorted(table)}

    def parents(self, path: str) -> dict[int, int]:
        """A project's list: each record's project."""
        return {i: r.parent for i, r in self.store.table(path).items() if r.parent is not None}

    def records_without_page_params(self, path: str, parent: int | None = None) -> list[Any]:
        """What ``GET path`` answers without any query parameter: page 1 where the list takes
        ``page``, the whole list where it does not (archived and disregarded records left out
        where the list documents including them)."""
        return answer(self.store, self.spec.endpoints[path], {}, parent=parent).records

    def report_rows(self, path: str, start: date, end: date) -> list[dict[str, Any]]:
        """A report's rows for one period (the same every time)."""
        return report_rows(self.store, self.spec.endpoints[path], (start, end))

    def report_periods(self, path: str) -> set[tuple[date, date]]:
        """The periods of the report ``path`` asked for so far."""
        return set(self.periods.get(path, set()))

    def counts(self) -> Counter[str]:
        """Requests per endpoint (path template) since the log was last reset."""
        return Counter(r.endpoint or r.path for r in self.log)

    def reset_log(self) -> None:
        self.log.clear()
