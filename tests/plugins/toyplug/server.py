"""The toy API, served over loopback for tests: cursor paging, a bearer token, a rate limit.

``GET /{stream}?limit=N[&cursor=C][&updated_since=T]`` with ``Authorization: Bearer TOKEN``
answers ``{"records": [...], "next_cursor": "..." | null}``: records sorted by
``(updated_at, id)``, those changed at or after ``updated_since`` only. The cursor is opaque to
clients: the ``(updated_at, id)`` of the last record served, so a walk resumed at a cursor
continues exactly after it, and a record changed during a walk moves past the cursor and is
served again later. Without the token: 401; over ``rate_per_s`` requests in the last second:
429.

Tests start it with :func:`running_toy` (its own thread and event loop, as a real server is
elsewhere), change or add records between runs (:meth:`ToyApi.change`, :meth:`ToyApi.add`), and
read its counters (:attr:`ToyApi.requests`). :meth:`ToyApi.hold_after` makes it stop answering
after a number of pages, so that a test can kill a client mid-walk at a page it chose.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiohttp import web

TOKEN = "toy-token-3b9e51"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)  # the initial records are stamped an hour apart from here


@dataclass(frozen=True)
class Seen:
    """One request as the server saw it."""

    stream: str
    params: Mapping[str, str]
    status: int
    ids: tuple[int, ...] = ()  # the records it answered with


def iso(value: datetime) -> str:
    return value.isoformat().replace("+00:00", "Z")


def _encode(updated_at: str, record_id: int) -> str:
    return base64.urlsafe_b64encode(f"{updated_at}|{record_id}".encode()).decode()


def _decode(cursor: str) -> tuple[datetime, int]:
    stamp, record_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")), int(record_id)


class ToyApi:
    """The toy API's data and counters; thread-safe (the server has a thread of its own)."""

    def __init__(
        self,
        counts: Mapping[str, int] | None = None,
        *,
        token: str = TOKEN,
        rate_per_s: int = 10_000,
        max_limit: int = 100,
    ) -> None:
        counts = {"widgets": 7, "gadgets": 5} if counts is None else counts
        self.token = token
        self.rate_per_s = rate_per_s
        self.max_limit = max_limit
        self._lock = threading.Lock()
        self._records: dict[str, dict[int, dict[str, Any]]] = {}
        for stream, n in counts.items():
            singular = stream.removesuffix("s")
            self._records[stream] = {
                i: {
                    "id": i,
                    "updated_at": iso(EPOCH + timedelta(hours=i)),
                    "name": f"{singular} {i}",
                }
                for i in range(1, n + 1)
            }
        self.requests: list[Seen] = []
        self._arrivals: deque[float] = deque()
        self._hold_after: int | None = None
        self.holding = 0  # requests held now (see hold_after)

    # --- what tests do --------------------------------------------------------------------

    def records(self, stream: str) -> dict[int, dict[str, Any]]:
        """The stream's records now, by id (copies)."""
        with self._lock:
            return {i: dict(r) for i, r in self._records[stream].items()}

    def change(self, stream: str, record_id: int, name: str) -> dict[str, Any]:
        """Rename a record; its ``updated_at`` becomes now (later than any other record's)."""
        with self._lock:
            record = self._records[stream][record_id]
            record["name"] = name
            record["updated_at"] = iso(self._now(stream))
            return dict(record)

    def add(self, stream: str, name: str) -> dict[str, Any]:
        with self._lock:
            records = self._records[stream]
            record_id = max(records, default=0) + 1
            records[record_id] = {
                "id": record_id,
                "updated_at": iso(self._now(stream)),
                "name": name,
            }
            return dict(records[record_id])

    def hold_after(self, pages: int) -> None:
        """Answer ``pages`` more pages, then hold every further request until :meth:`release`."""
        with self._lock:
            self._hold_after = self.pages_served() + pages

    def release(self) -> None:
        with self._lock:
            self._hold_after = None

    def _held(self) -> bool:
        with self._lock:
            return self._hold_after is not None and self.pages_served() >= self._hold_after

    def pages_served(self, stream: str | None = None) -> int:
        return sum(1 for r in self.requests if r.status == 200 and stream in (None, r.stream))

    def served_ids(self, stream: str, since: int = 0) -> list[int]:
        """Ids of the records served for ``stream`` by requests ``since`` on (an index)."""
        return [i for r in self.requests[since:] if r.stream == stream for i in r.ids]

    def count(self, status: int) -> int:
        return sum(1 for r in self.requests if r.status == status)

    # --- serving --------------------------------------------------------------------------

    def _now(self, stream: str) -> datetime:
        """Now, or just after the stream's newest record if the clock has not moved past it."""
        newest = max(
            (_stamp(r["updated_at"]) for r in self._records[stream].values()), default=EPOCH
        )
        return max(datetime.now(UTC), newest + timedelta(microseconds=1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{stream}", self._list)
        return app

    def _refuse(
        self, stream: str, params: Mapping[str, str], status: int, error: str
    ) -> web.Response:
        with self._lock:
            self.requests.append(Seen(stream, params, status))
        return web.json_response({"error": error}, status=status)

    async def _list(self, request: web.Request) -> web.Response:
        stream = request.match_info["stream"]
        params = dict(request.query)
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._refuse(stream, params, 401, "invalid or missing bearer token")
        with self._lock:
            now = time.monotonic()
            while self._arrivals and self._arrivals[0] <= now - 1.0:
                self._arrivals.popleft()
            limited = len(self._arrivals) >= self.rate_per_s
            self._arrivals.append(now)
        if limited:
            return self._refuse(stream, params, 429, "rate limit exceeded")
        if stream not in self._records:
            return self._refuse(stream, params, 404, f"no stream {stream}")
        if self._held():
            self.holding += 1
            try:
                while self._held():
                    await asyncio.sleep(0.01)  # until release()
            finally:
                self.holding -= 1
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)  # the client went away meanwhile: not counted
        try:
            limit = min(int(params.get("limit", "50")), self.max_limit)
            after = _decode(params["cursor"]) if "cursor" in params else None
            since = _stamp(params["updated_since"]) if "updated_since" in params else None
        except (ValueError, TypeError) as exc:
            return self._refuse(stream, params, 422, f"bad parameter: {exc}")
        if limit < 1:
            return self._refuse(stream, params, 422, "limit must be at least 1")
        with self._lock:
            ordered = sorted(
                (dict(r) for r in self._records[stream].values()),
                key=lambda r: (_stamp(r["updated_at"]), r["id"]),
            )
            chosen = [
                r
                for r in ordered
                if (since is None or _stamp(r["updated_at"]) >= since)
                and (after is None or (_stamp(r["updated_at"]), r["id"]) > after)
            ]
            page = chosen[:limit]
            more = len(chosen) > limit
            self.requests.append(Seen(stream, params, 200, tuple(r["id"] for r in page)))
        last = page[-1] if page else None
        next_cursor = _encode(last["updated_at"], last["id"]) if more and last else None
        return web.json_response({"records": page, "next_cursor": next_cursor})


def _stamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@contextlib.asynccontextmanager
async def running_toy(api: ToyApi) -> AsyncIterator[str]:
    """Serve ``api`` on an ephemeral loopback port in a thread of its own; its base URL."""
    started = threading.Event()
    box: dict[str, Any] = {}

    async def serve() -> None:
        try:
            runner = web.AppRunner(api.app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            sockets: Iterable[Any] = runner.addresses
            box["port"] = next(iter(sockets))[1]
            box["stop"] = asyncio.Event()
            box["loop"] = asyncio.get_running_loop()
            started.set()
            try:
                await box["stop"].wait()
            finally:
                await runner.cleanup()
        except BaseException as exc:  # reported to the caller below
            box["error"] = exc
            started.set()

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    await asyncio.to_thread(started.wait, 30)
    if "error" in box:
        raise box["error"]
    try:
        yield f"http://127.0.0.1:{box['port']}"
    finally:
        api.release()
        box["loop"].call_soon_threadsafe(box["stop"].set)
        await asyncio.to_thread(thread.join, 30)
