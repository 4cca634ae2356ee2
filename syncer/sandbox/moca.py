"""The MOCA REST API v2 simulator: an aiohttp.web app serving MocaData strictly to the contract.

It answers the paths inferred in docs/vendors/moca.md under /v2, mountable anywhere:
`Authorization: Bearer <token>` or 403 (documented); `offset`/`limit` lists sorted by
createdAt then id, in an envelope `{offset, limit, total, items}` or as a bare array;
per-id GET, PUT and DELETE; POST for apps and beacons (409 on a duplicate uuid/major/minor, 415
for a body that is not JSON); the Start Campaign call; the analytics endpoint.
Errors are `{"code": status, "message": text}` with MOCA's documented status codes only, and
every response carries X-Server-Timestamp (the data's clock, ms), X-Api-Version and Server.
Faults are switchable and every request lands in `MocaSandbox.requests`.

Not MOCA's: `updatedSince` is a sandbox extension. Lists honour it (updatedAt >= the
value, in ms) only while `MocaSandboxSettings.updated_since` is True and ignore it otherwise, as
the real API presumably does. No rate limit is simulated because none is documented.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from functools import partial
from http import HTTPStatus
from typing import Any

from aiohttp import web

from syncer.sandbox.moca_analytics import ANALYTICS_METRICS, INTERVALS
from syncer.sandbox.moca_data import ID_FIELDS, MOCA_STREAMS, Conflict, InvalidBody, MocaData
from syncer.sandbox.moca_records import Record

API_PREFIX = "/v2"
API_VERSION = "2"
SERVER_NAME = "moca-sandbox"

_BEARER = re.compile(r"Bearer\s+(\S+)", re.IGNORECASE)
_ID = "([A-Za-z0-9_-]+)"
_STREAM_BY_METRIC = {api_name: stream for stream, api_name in ANALYTICS_METRICS.items()}
_MAX_INT64_DIGITS = 18  # larger values are refused rather than overflowing a Java long


@dataclass
class MocaFaults:
    """Switches tests flip while the server runs; each `*_next` counts down as it is used."""

    fail_next: int = 0  # the next N requests (any path) answer `fail_status` with a JSON error
    fail_status: int = 503  # 500, 503 or 408 are the ones MOCA lists
    slow_next: int = 0  # the next N requests wait `slow_s` before answering
    slow_s: float = 0.0
    malformed_next: int = 0  # the next N 200 responses: a truncated JSON body
    reset_next: int = 0  # the next N requests: connection closed without a response
    # Analytics metrics (API names) answered in a shape neither expected shape fits: the values
    # under "data" instead of a "series" list.
    odd_analytics: frozenset[str] = frozenset()


@dataclass(frozen=True)
class MocaSandboxSettings:
    """How the simulated account behaves; replace the whole object to change it."""

    tokens: frozenset[str] = frozenset({"sandbox-moca-token"})
    envelope: bool = True  # lists answer {offset, limit, total, items}; False: a bare array
    max_limit: int = 100  # larger `limit` values are capped to this
    # SANDBOX EXTENSION, not part of the MOCA API: lists filter on `updatedSince` (ms) when True.
    updated_since: bool = False
    # How geolocations are answered (docs/vendors/moca.md names both): "buckets", a series of
    # per-bucket cells with `t` and `geohash`; "aggregate", one `{latitude, longitude, count}` per
    # place summed over the requested range, with no `t`.
    geolocations: str = "buckets"


@dataclass
class RequestRecord:
    """One request as received; `status` 0 means the connection was dropped unanswered.

    `path` is relative to the MOCA app (e.g. "/v2/apps"); `at` is time.monotonic().
    """

    method: str
    path: str
    query: dict[str, str]
    status: int
    at: float


@dataclass(frozen=True)
class _Listing:
    """A list endpoint: the stream, the stream of the parent id in its path, its filters."""

    stream: str
    parent: str | None = None
    filters: tuple[str, ...] = ()


_Handler = Callable[[web.Request, tuple[str, ...]], Awaitable[web.Response]]


@dataclass(frozen=True)
class _Route:
    method: str
    pattern: re.Pattern[str]
    handler: _Handler


class _ApiError(Exception):
    """An error answer: the HTTP status and the message of the JSON body."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Dropped(Exception):
    """The connection was closed on purpose; there is no response to send."""


class MocaSandbox:
    """One simulated MOCA account: its data, settings, faults and the log of requests."""

    def __init__(
        self, data: MocaData | None = None, settings: MocaSandboxSettings | None = None
    ) -> None:
        self.data = data if data is not None else MocaData()
        self.settings = settings if settings is not None else MocaSandboxSettings()
        self.faults = MocaFaults()
        self.requests: list[RequestRecord] = []
        self._routes = self._route_table()

    def app(self) -> web.Application:
        """A fresh aiohttp app serving this account under /v2 (mount it anywhere)."""
        app = web.Application()
        # One catch-all route, so that every request (unknown paths too) is logged, answered
        # in MOCA's JSON and the path relative to wherever the app is mounted is known.
        app.router.add_route("*", "/{tail:.*}", self._handle)
        return app

    def reset_log(self) -> None:
        """Forgets the requests received so far."""
        self.requests.clear()

    # -- request handling --------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        record = RequestRecord(
            method=request.method,
            path="/" + request.match_info["tail"],
            query=dict(request.query),
            status=0,
            at=time.monotonic(),
        )
        self.requests.append(record)
        try:
            response = await self._answer(request, record.path)
        except _Dropped:
            # The transport is gone: aiohttp fails to write this and drops the request quietly.
            return web.Response()
        except _ApiError as error:
            response = _error(error.status, error.message)
        if response.status == 200 and self.faults.malformed_next > 0:
            self.faults.malformed_next -= 1
            body = response.body
            text = body.decode() if isinstance(body, bytes) else ""
            # Cut the text, not the bytes, so the body stays valid UTF-8 but not valid JSON.
            response.body = text[: max(1, len(text) // 2)].encode()
        response.headers["X-Server-Timestamp"] = str(self.data.now_ms())
        response.headers["X-Api-Version"] = API_VERSION
        response.headers["Server"] = SERVER_NAME
        record.status = response.status
        return response

    async def _answer(self, request: web.Request, path: str) -> web.Response:
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
            status = faults.fail_status
            raise _ApiError(status, f"{_phrase(status)} (simulated by the sandbox)")
        match = _BEARER.fullmatch(request.headers.get("Authorization", "").strip())
        if match is None or match.group(1) not in self.settings.tokens:
            raise _ApiError(
                403, "Forbidden: send 'Authorization: Bearer <token>' with a valid MOCA API token"
            )
        handler, ids = self._route(request.method, path)
        return await handler(request, ids)

    def _route(self, method: str, path: str) -> tuple[_Handler, tuple[str, ...]]:
        path = path.rstrip("/")
        methods = []
        for route in self._routes:
            match = route.pattern.fullmatch(path)
            if match is None:
                continue
            if route.method == method:
                return route.handler, match.groups()
            methods.append(route.method)
        # MOCA lists no 405; an unsupported method is a resource that does not exist.
        if methods:
            raise _ApiError(404, f"{method} {path} does not exist; use {', '.join(methods)}")
        raise _ApiError(404, f"no MOCA resource at {path}")

    def _route_table(self) -> list[_Route]:
        table: list[_Route] = []

        def add(method: str, template: str, handler: _Handler) -> None:
            pattern = API_PREFIX + template.replace("{id}", _ID).replace("{metric}", _ID)
            table.append(_Route(method, re.compile(pattern), handler))

        def listing(stream: str, parent: str | None = None, *filters: str) -> _Handler:
            return partial(self._list, _Listing(stream, parent, filters))

        add("GET", "/apps", listing("apps"))
        add("POST", "/apps", partial(self._create, "apps"))
        add("GET", "/apps/{id}/segments", listing("segments", "apps"))
        add("GET", "/apps/{id}/campaigns", listing("campaigns", "apps"))
        add("GET", "/apps/{id}/analytics/{metric}", self._analytics)
        add("GET", "/beacons", listing("beacons", None, "placeId", "zoneId"))
        add("POST", "/beacons", partial(self._create, "beacons"))
        add("GET", "/places", listing("places"))
        add("GET", "/places/{id}/zones", listing("zones", "places"))
        add("GET", "/zones", listing("zones", None, "placeId"))
        add("GET", "/geofences", listing("geofences"))
        add("POST", "/campaigns/{id}/start", self._start_campaign)
        add("GET", "/campaigns/{id}/experiences", listing("experiences", "campaigns"))
        add("GET", "/campaigns/{id}/notifications", listing("notifications", "campaigns"))
        for stream in MOCA_STREAMS:
            add("GET", f"/{stream}/{{id}}", partial(self._get, stream))
        for stream in ("apps", "beacons"):
            add("PUT", f"/{stream}/{{id}}", partial(self._replace, stream))
            add("DELETE", f"/{stream}/{{id}}", partial(self._delete, stream))
        return table

    # -- endpoints ---------------------------------------------------------------------------

    async def _list(
        self, listing: _Listing, request: web.Request, ids: tuple[str, ...]
    ) -> web.Response:
        query = request.query
        max_limit = self.settings.max_limit
        offset = _integer(query, "offset", 0)
        limit = _integer(query, "limit", min(100, max_limit))
        if limit < 1:
            raise _ApiError(400, f"limit must be an integer >= 1, got {query['limit']!r}")
        limit = min(limit, max_limit)
        rows = self.data.live(listing.stream)
        if listing.parent is not None:
            self._found(listing.parent, ids[0])
            key = ID_FIELDS[listing.parent]
            rows = [row for row in rows if row[key] == ids[0]]
        for name in listing.filters:
            if name in query:
                rows = [row for row in rows if row[name] == query[name]]
        if self.settings.updated_since and "updatedSince" in query:
            since = _integer(query, "updatedSince", 0)
            rows = [row for row in rows if row["updatedAt"] >= since]
        items = copy.deepcopy(rows[offset : offset + limit])
        if not self.settings.envelope:
            return _json(200, items)
        return _json(200, {"offset": offset, "limit": limit, "total": len(rows), "items": items})

    async def _get(self, stream: str, request: web.Request, ids: tuple[str, ...]) -> web.Response:
        return _json(200, copy.deepcopy(self._found(stream, ids[0])))

    async def _create(
        self, stream: str, request: web.Request, ids: tuple[str, ...]
    ) -> web.Response:
        body = await _json_body(request)
        return _json(201, copy.deepcopy(_checked(lambda: self.data.add(stream, body))))

    async def _replace(
        self, stream: str, request: web.Request, ids: tuple[str, ...]
    ) -> web.Response:
        self._found(stream, ids[0])
        body = await _json_body(request)
        return _json(200, copy.deepcopy(_checked(lambda: self.data.replace(stream, ids[0], body))))

    async def _delete(
        self, stream: str, request: web.Request, ids: tuple[str, ...]
    ) -> web.Response:
        self._found(stream, ids[0])
        return _json(200, self.data.remove(stream, ids[0]))

    async def _start_campaign(self, request: web.Request, ids: tuple[str, ...]) -> web.Response:
        self._found("campaigns", ids[0])
        return _json(200, copy.deepcopy(_checked(lambda: self.data.start_campaign(ids[0]))))

    async def _analytics(self, request: web.Request, ids: tuple[str, ...]) -> web.Response:
        app_id, metric = ids
        stream = _STREAM_BY_METRIC.get(metric)
        if stream is None:
            raise _ApiError(
                404,
                f"unknown analytics metric {metric!r}; use one of {', '.join(_STREAM_BY_METRIC)}",
            )
        self._found("apps", app_id)
        query = request.query
        missing = [name for name in ("from", "to", "interval") if name not in query]
        if missing:
            raise _ApiError(
                400,
                f"missing query parameter(s) {', '.join(missing)}: analytics need from and to "
                f"(int64 ms UTC) and interval ({'|'.join(INTERVALS)})",
            )
        start, end = _integer(query, "from", 0), _integer(query, "to", 0)
        if start >= end:
            raise _ApiError(400, f"from must be before to, got from={start} and to={end}")
        interval = query["interval"]
        if interval not in INTERVALS:
            raise _ApiError(400, f"interval must be one of {'|'.join(INTERVALS)}, got {interval!r}")
        aggregate = self.settings.geolocations == "aggregate"
        answer = self.data.analytics(app_id, stream, interval, start, end, aggregate=aggregate)
        if metric in self.faults.odd_analytics:
            answer["data"] = answer.pop("series")
        return _json(200, answer)

    def _found(self, stream: str, rid: str) -> Record:
        record = self.data.get(stream, rid)
        if record is None:
            raise _ApiError(404, f"no {stream.removesuffix('s')} with id {rid!r}")
        return record


def _integer(query: Mapping[str, str], name: str, default: int) -> int:
    """A non-negative int64 query parameter, or 400."""
    raw = query.get(name)
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= _MAX_INT64_DIGITS):
        raise _ApiError(400, f"{name} must be a non-negative integer, got {raw!r}")
    return int(raw)


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        raise _ApiError(400, "this call needs a JSON body")
    if request.content_type != "application/json":
        raise _ApiError(
            415, f"send the body as Content-Type: application/json, not {request.content_type}"
        )
    try:
        return json.loads(raw.decode("utf-8"))
    except ValueError:  # UnicodeDecodeError is one
        raise _ApiError(415, "the body is not valid UTF-8 JSON") from None


def _checked(change: Callable[[], Record]) -> Record:
    """The result of a data change, its refusals turned into 400 and 409 answers."""
    try:
        return change()
    except InvalidBody as exc:
        raise _ApiError(400, str(exc)) from None
    except Conflict as exc:
        raise _ApiError(409, str(exc)) from None


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _json(status: int, payload: Any) -> web.Response:
    return web.Response(
        status=status,
        body=json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode(),
        content_type="application/json",
        charset="utf-8",
    )


def _error(status: int, message: str) -> web.Response:
    return _json(status, {"code": status, "message": message})
