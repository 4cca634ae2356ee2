"""Progress of a long ``sync``, ``sweep`` or ``load``, while it runs.

A first sync of 100,000 MOCO activities takes about 17 minutes at MOCO's limit; without this
it would print nothing until the end. Nothing is threaded through the walk: a run's per-stream
(or per-model) result objects are updated in place as pages commit, the run hands them over
once as it starts (:func:`watch`), and a task polls them:

- on a terminal (stderr), a live table: per stream its pages, records, the share done and an
  estimate of the time left (``rich``; cleared when the run ends, its summary follows);
- otherwise plain lines on stderr every ``SYNCER_PROGRESS_INTERVAL`` (default 30 s), one per
  stream still running or finished since the last lines, so a log shows a long run moving;
- nothing at all unless a command asked for it (the daemon, ``--json``, library use).

The share done of a MOCO stream comes from ``X-Total`` of the query that served its last page
(records still to read after it); the time left from the credential's rate limit, shared by the
streams still running, or from the pace seen so far when that is slower.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import sys
import time
from collections.abc import AsyncIterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TextIO

from syncer.durations import format_rounded, parse_duration
from syncer.errors import ConfigError

if TYPE_CHECKING:
    from syncer.results import LoadResult

PERIOD_ENV = "SYNCER_PROGRESS_INTERVAL"
DEFAULT_PERIOD_S = 30.0
LIVE_REFRESH_S = 0.5
MIN_REQUESTS_FOR_PACE = 5  # requests a stream made before its own pace is trusted
SWEEP_CHUNK = 100  # ids per sweep request


@dataclass
class Board:
    """What one command shows: its kind and target, and the items its run hands over."""

    kind: str  # sync, sweep, load
    name: str  # the source or destination
    rate_per_s: float | None  # the credential's limit, for the time left
    started: float = field(default_factory=time.monotonic)
    items: list[Any] = field(default_factory=list)


_board: ContextVar[Board | None] = ContextVar("syncer_progress_board", default=None)


def watch(items: Sequence[Any]) -> None:
    """A run's result objects, which it updates in place: shown if a command asked for it."""
    board = _board.get()
    if board is not None:
        board.items = list(items)


def records_left(query_total: int | None, page: int, per_page: int, done: bool) -> int | None:
    """Records a MOCO stream's current query still holds after its page ``page`` was stored
    (``X-Total`` of that query, ``per_page`` records a page); 0 once the walk is done."""
    if done:
        return 0
    return None if query_total is None else max(0, query_total - page * per_page)


# --- figures -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Figures:
    """One stream (or model) as the display sees it, whatever kind of run it belongs to."""

    name: str
    state: str  # waiting, running, succeeded, failed, interrupted
    pages: int  # pages stored (a sweep: requests answered)
    records: int  # records read (a sweep: ids checked)
    left: int | None  # records still to read, when the source said (X-Total)
    requests: int
    left_requests: int | None  # requests still to make, when known
    unit: str = "records"

    @property
    def fraction(self) -> float | None:
        if self.state == "succeeded":
            return 1.0
        if self.left is None:
            return None
        whole = self.records + self.left
        return self.records / whole if whole else 1.0


def figures_of(item: Any) -> Figures:
    """The figures of a sync's ``StreamResult`` or a sweep's ``StreamSweep``."""
    state, requests = item.outcome, item.http.requests
    if hasattr(item, "checked"):  # a sweep: one request per 100 stored ids
        total = getattr(item, "total", None)
        left = None if total is None else max(0, total - item.checked)
        if state == "running" and total is None:
            state = "waiting"  # its ids are not counted yet
        left_requests = None if left is None else math.ceil(left / SWEEP_CHUNK)
        return Figures(
            item.stream, state, requests, item.checked, left, requests, left_requests, "ids"
        )
    left = getattr(item, "left", None)
    if state == "running" and not item.pages and not requests:
        state = "waiting"
    if state == "succeeded":
        left = 0
    left_requests = None
    if left is not None and state == "running":
        per_page = item.records / item.pages if item.pages and item.records else None
        left_requests = math.ceil(left / per_page) if per_page else min(left, 1)
    return Figures(item.stream, state, item.pages, item.records, left, requests, left_requests)


def time_left(
    streams: Sequence[Figures], rate_per_s: float | None, elapsed_s: float
) -> dict[str, float]:
    """Seconds each running stream still needs, where its requests left are known.

    The streams still running share the credential's rate: each gets an equal share until the
    one with the fewest requests left is done, then the rest share it (the sum for the slowest
    is all requests left over the rate). A stream whose own pace so far is slower than that
    (a slow server, a plan whose limit is never reached) is estimated at its own pace.
    """
    running = [f for f in streams if f.state == "running" and f.left_requests is not None]
    out: dict[str, float] = {}
    by_left = sorted(running, key=lambda f: f.left_requests or 0)
    clock, before = 0.0, 0
    for index, f in enumerate(by_left):
        left = f.left_requests or 0
        if rate_per_s:
            clock += (left - before) * (len(by_left) - index) / rate_per_s
            before = left
        estimate = clock if rate_per_s else 0.0
        if f.requests >= MIN_REQUESTS_FOR_PACE and elapsed_s > 0:
            estimate = max(estimate, left / (f.requests / elapsed_s))
        elif not rate_per_s:
            continue  # neither a limit nor a pace to go by
        out[f.name] = estimate
    return out


def stream_text(f: Figures, eta_s: float | None, *, share: bool = True) -> str:
    """What one stream has done, e.g. ``120 pages, 12,000 records, 12% of ~100,000, about
    14m 30s left``."""
    if f.state == "waiting":
        return "waiting"
    parts = [] if f.state == "running" else [f.state]
    noun = "requests" if f.unit == "ids" else "pages"
    parts.append(f"{f.pages:,} {noun}, {f.records:,} {f.unit}")
    if share and f.state == "running" and f.left is not None:
        fraction = f.fraction or 0.0
        parts.append(f"{fraction:.0%} of ~{f.records + f.left:,}")
    if f.state == "running" and eta_s is not None:
        parts.append(f"about {format_rounded(eta_s)} left")
    return ", ".join(parts)


def load_text(result: LoadResult) -> str:
    """What a load has sent so far, per model of its destination."""
    sent = ", ".join(f"{result.sent.get(m, 0):,} {m}" for m in result.models)
    text = f"{sent} sent in {len(result.body_sizes):,} requests"
    dead = sum(result.dead_letters.values())
    if dead:
        text += f", {dead:,} dead letters"
    if result.waited_s >= 1:
        text += f", {format_rounded(result.waited_s)} waiting for the rate limit"
    return text


def plain_lines(board: Board, streams: Sequence[Figures], now: float) -> list[str]:
    """One line per stream, prefixed with the command: ``sync moco.activities: 120 pages, ...``."""
    eta = time_left(streams, board.rate_per_s, now - board.started)
    return [
        f"{board.kind} {board.name}.{f.name}: {stream_text(f, eta.get(f.name))}" for f in streams
    ]


# --- display -------------------------------------------------------------------------------------


class _Plain:
    """Lines every period, for the streams that moved or finished since the last ones."""

    def __init__(self, board: Board, out: TextIO) -> None:
        self.board, self.out = board, out
        self.reported: dict[str, str] = {}

    def tick(self) -> None:
        now = time.monotonic()
        if self.board.kind == "load":
            for result in self.board.items:
                self.out.write(f"load {self.board.name}: {load_text(result)}\n")
            self.out.flush()
            return
        streams = [figures_of(item) for item in self.board.items]
        for f, line in zip(streams, plain_lines(self.board, streams, now), strict=True):
            if f.state == "waiting" or self.reported.get(f.name) not in (None, "running"):
                continue  # not started, or its end was reported already
            self.reported[f.name] = f.state
            self.out.write(line + "\n")
        self.out.flush()


def table(board: Board, now: float) -> Any:
    """The live table of a terminal."""
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    title = f"{board.kind} {board.name} · {format_rounded(now - board.started)}"
    grid = Table(title=title, title_justify="left", box=None, padding=(0, 1))
    if board.kind == "load":
        grid.add_column("load")
        for result in board.items:
            grid.add_row(load_text(result))
        return grid
    streams = [figures_of(item) for item in board.items]
    eta = time_left(streams, board.rate_per_s, now - board.started)
    for column in ("stream", "", "", ""):
        grid.add_column(column)
    for f in streams:
        fraction = f.fraction
        bar: Any = ProgressBar(total=1.0, completed=fraction or 0.0, width=24)
        if fraction is None:
            bar = ProgressBar(total=None, width=24) if f.state == "running" else ""
        share = ""
        if fraction is not None and f.state == "running":
            share = f"{fraction:.0%} of ~{f.records + (f.left or 0):,}"
        grid.add_row(f.name, bar, share, stream_text(f, eta.get(f.name), share=False))
    return grid


def period_s() -> float:
    """Seconds between plain lines: ``SYNCER_PROGRESS_INTERVAL`` (``30s``, ``1m``, ``0.5``)."""
    text = os.environ.get(PERIOD_ENV, "").strip()
    if not text:
        return DEFAULT_PERIOD_S
    try:
        value = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as exc:
        raise ConfigError(f"{PERIOD_ENV}: {exc}; set a duration such as 15s") from None
    if value <= 0:
        raise ConfigError(f"{PERIOD_ENV}: must be more than 0; set a duration such as 15s")
    return value


@contextlib.asynccontextmanager
async def showing(
    kind: str,
    name: str,
    *,
    rate_per_s: float | None = None,
    enabled: bool = True,
    live: bool | None = None,
    out: TextIO | None = None,
) -> AsyncIterator[Board]:
    """Show the progress of the run inside the block (see the module's docstring).

    ``enabled=False`` (``--json``) shows nothing. ``live`` defaults to whether stderr is a
    terminal.
    """
    board = Board(kind, name, rate_per_s)
    if not enabled:
        yield board
        return
    out = out or sys.stderr
    live = out.isatty() if live is None else live
    period = LIVE_REFRESH_S if live else period_s()
    token = _board.set(board)
    display: Any = None
    plain = _Plain(board, out)
    if live:
        from rich.console import Console
        from rich.live import Live

        display = Live(console=Console(file=out), auto_refresh=False, transient=True)
        display.start()

    async def poll() -> None:
        while True:
            await asyncio.sleep(period)
            if not board.items:
                continue
            if display is not None:
                display.update(table(board, time.monotonic()), refresh=True)
            else:
                plain.tick()

    task = asyncio.create_task(poll())
    try:
        yield board
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if display is not None:
            display.stop()
        _board.reset(token)
