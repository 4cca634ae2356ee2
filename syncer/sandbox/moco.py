"""The MOCO REST API v1 simulator: an aiohttp.web app serving MocoData strictly to the contract.

It answers every stream of the catalog at the path MOCO documents (docs/vendors/moco.md), each
obeying exactly the query parameters MOCO documents for it and ignoring all others, as a
server made from MOCO's OpenAPI description would: `page`/`per_page` (an unpaged list serves
itself whole for any `page`; without a documented `per_page`, pages of 100), the `ids`,
`updated_after`, `include_archived` and `include_disregarded` filters, `sort_by` (or, per
stream, a server that ignores it and lists by id), X-Page, X-Per-Page, X-Total and an
api-pagination style Link header only where MOCO documents them. Per-project lists answer 404
for a project that is gone; reports answer rows for the period asked; detail reads and the
hourly-rates object answer one object. Key auth in both header forms, a sliding-window rate
limit per key that answers 429 without Retry-After, and switchable faults. Every request lands
in `MocoSandbox.requests`; tests may hook into each request before it is answered
(`MocoSandbox.hooks`: change the data while a list is read, hold an answer back). Changes to
its data are delivered as signed webhooks to registered hooks (`moco_webhooks`).
`POST /_sandbox/backdate` (`{"n", "stream"?}`, or the same as query parameters) makes records
appear with an `updated_at` 6 to 12 weeks old, as an import does, which an incremental sync
never reads (for trying `syncer verify` by hand).

One concept: one simulated account's HTTP front (auth, the rate limit, faults, hooks, the
request log, the answer's headers); what each path answers is `moco_routes`, the data
`moco_data`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from typing import Any

from aiohttp import web

from syncer.catalog import Stream
from syncer.sandbox.moco_data import MOCO_STREAM_PATHS, MocoData, parse_ts
from syncer.sandbox.moco_records import Record
from syncer.sandbox.moco_routes import Routes
from syncer.sandbox.moco_webhooks import MocoWebhooks

API_PREFIX = "/api/v1"

_ARCHIVABLE = frozenset({"projects", "companies", "users"})
_AUTH = (
    re.compile(r'Token\s+token="?([^"\s]+)"?', re.IGNORECASE),
    re.compile(r"Bearer\s+(\S+)", re.IGNORECASE),
)
_SORT_BY = re.compile(r"(\w+)(?:\s+(asc|desc))?", re.IGNORECASE)
_ALWAYS_SORTABLE = frozenset({"id", "created_at", "updated_at"})
_TRUE, _FALSE = frozenset({"true", "1"}), frozenset({"false", "0"})


@dataclass
class MocoFaults:
    """Switches tests flip while the server runs; each `*_next` counts down as it is used."""

    fail_next: int = 0  # the next N requests (any path) answer `fail_status`
    fail_status: int = 503
    slow_next: int = 0  # the next N requests wait `slow_s` before answering
    slow_s: float = 0.0
    malformed_next: int = 0  # the next N list responses: 200 with a truncated JSON body
    reset_next: int = 0  # the next N requests: connection closed without a response
    # The next N list responses with at least one record: two bad elements appended, a string
    # and an object without "id" (X-Total unchanged).
    bad_records_next: int = 0
    # On every list request with page >= 2: update this many records, create one, then answer.
    change_between_pages: int = 0
    # On every list request with page >= 2: delete this many records, then answer.
    delete_between_pages: int = 0


@dataclass(frozen=True)
class MocoSandboxSettings:
    """How the simulated account behaves; replace the whole object to change it."""

    api_keys: frozenset[str] = frozenset({"sandbox-moco-key"})
    rate_limit_requests: int = 120
    rate_limit_window_s: float = 120.0
    max_per_page: int = 100
    updated_after_inclusive: bool = False  # False: updated_at > value; True: >=
    # Streams whose lists ignore `sort_by` (not even checking the field) and come in id order,
    # as an endpoint that does not honour it would; ALL_STREAMS for every one.
    ignore_sort_by: frozenset[str] = frozenset()


ALL_STREAMS = frozenset(MOCO_STREAM_PATHS)
DEFAULT_PER_PAGE = 100  # MOCO's page size where a list documents no per_page


@dataclass
class RequestRecord:
    """One request as received; `status` 0 means the connection was dropped unanswered.

    `path` is relative to the MOCO app (e.g. "/api/v1/projects"); `at` is time.monotonic().
    """

    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float
    more: bool = False  # the answer linked a next page (Link rel="next")


@dataclass(frozen=True)
class _ListQuery:
    page: int
    per_page: int
    updated_after: datetime | None
    include_archived: bool
    include_disregarded: bool
    ids: frozenset[int] | None
    sort: tuple[str, bool] | None  # (field, descending)


# Called with each request the sandbox is about to answer (authorized, within the rate limit),
# in the server's event loop; an awaitable it returns is awaited first (it may hold the answer).
RequestHook = Callable[[RequestRecord], Awaitable[None] | None]


class _Unprocessable(ValueError):
    """A query parameter MOCO would answer with 422; the message goes into the body."""


class _Dropped(Exception):
    """The connection was closed on purpose; there is no response to send."""


class MocoSandbox:
    """One simulated MOCO account: its data, settings, faults and the log of requests."""

    def __init__(
        self, data: MocoData | None = None, settings: MocoSandboxSettings | None = None
    ) -> None:
        self.data = data if data is not None else MocoData()
        self.settings = settings if settings is not None else MocoSandboxSettings()
        self.faults = MocoFaults()
        self.requests: list[RequestRecord] = []
        self.hooks: list[RequestHook] = []
        self.in_flight = 0  # requests received and not answered yet
        self._accepted_at: dict[str, deque[float]] = {}
        self._routes = Routes(self.data.catalog)
        # Signed webhooks for changes to `data`, once a hook is registered (moco_webhooks).
        self.webhooks = MocoWebhooks(self.data)

    def app(self) -> web.Application:
        """A fresh aiohttp app serving this account under /api/v1 (mount it anywhere)."""
        app = web.Application()
        self.webhooks.install(app)  # /_sandbox/web_hooks, /_sandbox/changes, the sender
        app.router.add_post("/_sandbox/backdate", self._backdate)
        # One catch-all route, so that every request (404s and 405s too) is logged and the
        # path relative to wherever the app is mounted is known.
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def reset_log(self) -> None:
        """Forgets the requests received so far."""
        self.requests.clear()

    def reset_rate_limit(self) -> None:
        """Empties every key's rate-limit window, as if no request had been accepted yet."""
        self._accepted_at.clear()

    async def _backdate(self, request: web.Request) -> web.Response:
        """``n`` records (of ``stream``, else spread over the lists read by ``updated_after``)
        made with an ``updated_at`` 6 to 12 weeks old: their ids by stream."""
        try:
            body = await request.json() if request.can_read_body else {}
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return _json_error(422, 'send a JSON object: {"n": count, "stream": name (optional)}')
        given = {**request.query, **body}
        n, stream = given.get("n", 1), given.get("stream")
        streams = self.data.backdatable()
        if isinstance(n, str) and n.isascii() and n.isdigit():
            n = int(n)
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            return _json_error(422, f"n must be a count of records, got {n!r}")
        if stream is not None and stream not in streams:
            return _json_error(422, f"stream must be one of {', '.join(streams)}, got {stream!r}")
        made = self.data.backdate(n, [stream] if stream else None)
        return web.json_response({"backdated": made})

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = RequestRecord(
            method=request.method,
            path="/" + request.match_info["tail"],
            query=dict(request.query),
            status=0,
            at=time.monotonic(),
        )
        self.requests.append(record)
        self.in_flight += 1
        try:
            response = await self._answer(request, record)
        except _Dropped:
            # The transport is gone: aiohttp fails to write this and drops the request quietly.
            return web.Response()
        finally:
            self.in_flight -= 1
        response.headers["X-Request-Id"] = str(uuid.uuid4())
        response.headers["Cache-Control"] = "max-age=0, private, must-revalidate"
        record.status = response.status
        record.more = 'rel="next"' in response.headers.get("Link", "")
        return response

    async def _answer(self, request: web.Request, record: RequestRecord) -> web.Response:
        path = record.path
        faults = self.faults
        if faults.slow_next > 0:
            faults.slow_next -= 1
            await asyncio.sleep(faults.slow_s)
        if faults.reset_next > 0:
            faults.reset_next -= 1
            if request.transport is not None:
                request.transport.abort()
            raise _Dropped
        if faults.fail_next > 0:
            faults.fail_next -= 1
            return _failure(faults.fail_status)

        key = _api_key(request.headers.get("Authorization", ""))
        if key is None or key not in self.settings.api_keys:
            return _json_error(
                401,
                "Unauthorized: send a valid API key as 'Authorization: Token token=KEY' "
                "or 'Authorization: Bearer KEY'",
            )
        if not self._admit(key):
            return web.Response(status=429, text="Retry later\n")
        for hook in list(self.hooks):
            held = hook(record)
            if held is not None:
                await held

        route = (
            self._routes.find(path.removeprefix(API_PREFIX))
            if path.startswith(API_PREFIX)
            else None
        )
        if route is None:
            return _json_error(404, f"Not found: {path}")
        if request.method != "GET":
            response = _json_error(405, f"Method {request.method} not allowed on {path}")
            response.headers["Allow"] = "GET"
            return response
        spec = route.stream
        try:
            if spec.strategy == "object":
                return _json(self.data.hourly_rates(spec.name))
            if spec.strategy == "detail":
                found = self.data.detail(spec.name, route.key or 0)
                return _json(found) if found else _json_error(404, f"Not found: {path}")
            query = _parse_query(request.query, self.settings.max_per_page, spec)
            if spec.strategy == "report":
                rows = self.data.report_rows(spec.name, _period(request.query, spec))
            else:
                if spec.parent is not None:
                    projects = {int(p["id"]) for p in self.data.live(spec.parent.stream)}
                    if route.key not in projects:
                        return _json_error(404, f"Couldn't find Project with 'id'={route.key}")
                rows = self._select(spec.name, query, route.key)
        except _Unprocessable as exc:
            return _json_error(422, str(exc))
        return self._page(request, spec, rows, query)

    def _admit(self, key: str) -> bool:
        """True (and counted) if `key` is under its limit; rejected requests are not counted."""
        settings = self.settings
        now = time.monotonic()
        window = self._accepted_at.setdefault(key, deque())
        while window and window[0] <= now - settings.rate_limit_window_s:
            window.popleft()
        if len(window) >= settings.rate_limit_requests:
            return False
        window.append(now)
        return True

    def _select(self, stream: str, query: _ListQuery, parent: int | None = None) -> list[Record]:
        if stream in self.settings.ignore_sort_by:
            query = replace(query, sort=None)
        if query.sort is not None:
            live = self.data.live(stream)
            if not _sortable(live, query.sort[0]):
                fields = ", ".join(sorted(_sortable_fields(live)))
                raise _Unprocessable(
                    f"sort_by: unknown field {query.sort[0]!r}; sortable: {fields}"
                )
        if query.page >= 2 and self.faults.change_between_pages > 0:
            # Offset pagination shifts when the data changes between pages (docs/vendors/moco.md).
            self.data.update(stream, self.faults.change_between_pages)
            self.data.create(stream, 1)
        if query.page >= 2 and self.faults.delete_between_pages > 0:
            self.data.delete(stream, self.faults.delete_between_pages)
        rows = self.data.children(stream, parent) if parent is not None else self.data.live(stream)
        if stream in _ARCHIVABLE and not query.include_archived:
            rows = [row for row in rows if row.get("active", True)]
        if stream == "invoices" and not query.include_disregarded:
            rows = [row for row in rows if row.get("status") != "disregarded"]
        if query.ids is not None:
            rows = [row for row in rows if row["id"] in query.ids]
        if query.updated_after is not None:
            after_ms = int(query.updated_after.timestamp() * 1000)
            if self.settings.updated_after_inclusive:
                rows = [r for r in rows if (self.data.changed_at_ms(stream, r) or 0) >= after_ms]
            else:
                rows = [r for r in rows if (self.data.changed_at_ms(stream, r) or 0) > after_ms]
        rows.sort(key=lambda row: int(row["id"]))
        if query.sort is not None:
            name, descending = query.sort
            # Stable sort over rows already in id order: ties stay id ascending either way.
            rows.sort(key=lambda row: _sort_key(name, row.get(name)), reverse=descending)
        return rows

    def _page(
        self, request: web.Request, spec: Stream, rows: Sequence[Record], query: _ListQuery
    ) -> web.Response:
        stream = spec.name
        paged = spec.takes("page")
        per_page = min(query.per_page, self.settings.max_per_page)
        if not paged:  # an unpaged list: the whole of it, whatever `page` says
            per_page, query = max(len(rows), 1), replace(query, page=1)
        total = len(rows)
        pages = max(1, -(-total // per_page))
        start = (query.page - 1) * per_page
        served: list[Any] = (
            self.data.serve(stream, rows[start : start + per_page])
            if not spec.snapshots
            else [dict(r) for r in rows[start : start + per_page]]
        )
        if served and self.faults.bad_records_next > 0:
            self.faults.bad_records_next -= 1
            served += [
                "not a record",
                {"name": "no id", "updated_at": served[-1].get("updated_at")},
            ]
        text = json.dumps(served, ensure_ascii=False, separators=(",", ":"))
        if self.faults.malformed_next > 0:
            self.faults.malformed_next -= 1
            # Cut the text, not the bytes, so the body stays valid UTF-8 but not valid JSON.
            text = text[: max(1, len(text) // 2)]
        body = text.encode()
        response = web.Response(body=body, content_type="application/json", charset="utf-8")
        response.headers["ETag"] = f'W/"{hashlib.md5(body).hexdigest()}"'
        if not (paged and spec.paged_headers):
            return response  # MOCO documents no paging headers for this list
        response.headers["X-Page"] = str(query.page)
        response.headers["X-Per-Page"] = str(per_page)
        response.headers["X-Total"] = str(total)
        if pages > 1:
            rels: list[tuple[str, int]] = []
            if query.page > 1:
                rels += [("first", 1), ("prev", min(query.page - 1, pages))]
            if query.page < pages:
                rels += [("next", query.page + 1), ("last", pages)]
            if rels:
                response.headers["Link"] = ", ".join(
                    f'<{request.url.update_query(page=str(n))}>; rel="{rel}"' for rel, n in rels
                )
        return response


def _api_key(header: str) -> str | None:
    for pattern in _AUTH:
        match = pattern.fullmatch(header.strip())
        if match:
            return match.group(1)
    return None


def _parse_query(params: Mapping[str, str], max_per_page: int, spec: Stream) -> _ListQuery:
    """The list parameters MOCO documents for ``spec`` (the others are ignored, as a server
    made from MOCO's description ignores them); raises _Unprocessable for a bad value."""
    documented = {k: v for k, v in params.items() if spec.takes(k)}
    default = min(DEFAULT_PER_PAGE, max_per_page)
    per_page = _positive_int(documented, "per_page", default)
    if spec.max_per_page is not None:
        per_page = min(per_page, spec.max_per_page)
    return _ListQuery(
        page=_positive_int(documented, "page", 1),
        per_page=per_page,
        updated_after=_timestamp(documented.get("updated_after")),
        include_archived=_flag(documented, "include_archived"),
        include_disregarded=_flag(documented, "include_disregarded"),
        ids=_ids(documented.get("ids")),
        sort=_sort(documented.get("sort_by")),
    )


def _period(params: Mapping[str, str], spec: Stream) -> tuple[date, date]:
    """A report's period: ``from``/``to`` (YYYY-MM-DD), or a ``year``; by default this month
    or this year."""
    today = datetime.now(UTC).date()
    if spec.takes("year"):
        raw = params.get("year", str(today.year))
        if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 9999:
            raise _Unprocessable(f"year must be a year such as 2026, got {raw!r}")
        return date(int(raw), 1, 1), date(int(raw), 12, 31)
    first = _date(params.get("from"), "from") or today.replace(day=1)
    last = _date(params.get("to"), "to") or today
    if last < first:
        raise _Unprocessable(f"to ({last}) is before from ({first})")
    return first, last


def _date(raw: str | None, name: str) -> date | None:
    if raw is None:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise _Unprocessable(f"{name} must be a date such as 2026-01-31, got {raw!r}") from None


def _json(body: Any) -> web.Response:
    return web.Response(
        body=json.dumps(body, ensure_ascii=False).encode(),
        content_type="application/json",
        charset="utf-8",
    )


def _positive_int(params: Mapping[str, str], name: str, default: int) -> int:
    raw = params.get(name)
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) < 1:
        raise _Unprocessable(f"{name} must be an integer >= 1, got {raw!r}")
    return int(raw)


def _timestamp(raw: str | None) -> datetime | None:
    if raw is None:
        return None
    try:
        return parse_ts(raw)
    except ValueError:
        raise _Unprocessable(
            f"updated_after must be an ISO 8601 UTC timestamp such as 2022-04-20T09:17:58Z, "
            f"got {raw!r}"
        ) from None


def _flag(params: Mapping[str, str], name: str) -> bool:
    raw = params.get(name, "false").lower()
    if raw not in _TRUE | _FALSE:
        raise _Unprocessable(f"{name} must be true or false, got {raw!r}")
    return raw in _TRUE


def _ids(raw: str | None) -> frozenset[int] | None:
    if raw is None or not raw.strip():
        return None
    parts = [part.strip() for part in raw.split(",") if part.strip()]
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise _Unprocessable(f"ids must be a comma-separated list of integers, got {raw!r}")
    return frozenset(int(part) for part in parts)


def _sort(raw: str | None) -> tuple[str, bool] | None:
    if raw is None:
        return None
    match = _SORT_BY.fullmatch(raw.strip())
    if not match:
        raise _Unprocessable(f"sort_by must be '<field>', '<field> asc' or '<field> desc'; {raw!r}")
    return match.group(1), (match.group(2) or "asc").lower() == "desc"


def _sortable(rows: Sequence[Record], name: str) -> bool:
    """Whether `sort_by` may name `name`: a top-level key whose values in `rows` are scalars,
    never an object or array (id and the stamps always). One key read per row: this runs on
    every sorted request."""
    if name in _ALWAYS_SORTABLE:
        return True
    seen = False
    for row in rows:
        if name in row:
            if isinstance(row[name], dict | list):
                return False
            seen = True
    return seen


def _sortable_fields(rows: Sequence[Record]) -> frozenset[str]:
    """Every field `_sortable` allows in `rows` (for the message refusing another)."""
    names = {name for row in rows for name in row} | _ALWAYS_SORTABLE
    return frozenset(name for name in names if _sortable(rows, name))


def _sort_key(name: str, value: Any) -> tuple[int, Any]:
    # Nulls sort last ascending and first descending, as in Postgres. Timestamps compare as
    # instants: "…:55Z" and "…:55.773Z" do not order correctly as text.
    if value is None:
        return (1, 0)
    if name.endswith("_at") and isinstance(value, str):
        return (0, parse_ts(value))
    return (0, value)


def _json_error(status: int, message: str) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps({"message": message}).encode(),
        content_type="application/json",
        charset="utf-8",
    )


def _failure(status: int) -> web.Response:
    # A failing upstream or proxy answers with an HTML page, not the API's JSON.
    if status >= 500:
        reason = {502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
        title = f"{status} {reason.get(status, 'Internal Server Error')}"
        html = f"<html><head><title>{title}</title></head><body><h1>{title}</h1></body></html>"
        return web.Response(status=status, text=html, content_type="text/html")
    return _json_error(status, f"Simulated failure ({status})")
