"""Pacing requests to a rate limit, so that limits are respected rather than discovered.

A server counts a request when it arrives; we can only know that this happened somewhere
between asking our limiter for a slot and reading the answer. So a request holds its slot from
the moment it is admitted until one window after its answer came back: every window the server
can see then holds at most ``requests`` of ours, however long the request was on its way (a
busy machine, a slow network, a new connection's handshake). A :class:`SlidingWindowLimiter`
applies that rule in one process; :class:`syncer.store.rate.SharedRequestLimiter` applies it
across every process using one credential. After a 429 the limiter is told to hold everyone
back for a full window, because MOCO sends no ``Retry-After`` and only a full window is sure to
have drained.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from typing import Protocol

# Our windows are also a little longer than the server's, for two clocks that measure the same
# second slightly differently, servers that round, and timer granularity. (Transit time needs
# no margin: a slot is held until its answer is in, see above.)
MIN_MARGIN_S = 0.01


def margin_for(per_seconds: float) -> float:
    return max(MIN_MARGIN_S, per_seconds * 0.01)


class Slot(Protocol):
    """Admitted requests (one, or several sent at once). ``settle`` once their answers (or
    failures) are in: the slot then frees one window later. Until then it counts against the
    limit."""

    async def settle(self) -> None: ...


class Limiter(Protocol):
    """What the HTTP client needs of a rate limit: in-process or shared by every replica."""

    window_s: float

    async def acquire(self, n: int = 1) -> Slot: ...

    async def hold_off(self, seconds: float | None = None) -> None: ...


class _Entry:
    __slots__ = ("_limiter", "done_at", "weight")

    def __init__(self, limiter: SlidingWindowLimiter, weight: int = 1) -> None:
        self._limiter = limiter
        self.weight = weight  # requests
        self.done_at: float | None = None  # None while the requests are in flight

    async def settle(self) -> None:
        self._limiter.settle(self)


class SlidingWindowLimiter:
    """At most ``requests`` slots taken in any ``per_seconds`` window (plus ``margin_s``),
    a slot counting from its admission until a window after it was settled."""

    def __init__(
        self,
        requests: int,
        per_seconds: float,
        *,
        margin_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if requests < 1 or per_seconds <= 0:
            raise ValueError("a rate limit needs requests >= 1 and per_seconds > 0")
        self.requests = requests
        self.per_seconds = per_seconds
        self.window_s = per_seconds + (
            margin_s if margin_s is not None else margin_for(per_seconds)
        )
        self._clock = clock
        self._entries: list[_Entry] = []
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()
        self._settled = asyncio.Event()
        self.waited_s = 0.0

    def delay_s(self, now: float, n: int = 1) -> float:
        """How long ``n`` requests asking at ``now`` must wait; ``math.inf`` while only answers
        still in flight can free enough. Pure but for forgetting expired slots."""
        if n > self.requests:
            raise ValueError(f"{n} requests at once can never fit a limit of {self.requests}")
        horizon = now - self.window_s
        self._entries = [e for e in self._entries if e.done_at is None or e.done_at > horizon]
        wait = max(0.0, self._blocked_until - now)
        excess = sum(e.weight for e in self._entries) + n - self.requests  # to expire first
        if excess > 0:
            free_at = math.inf
            for entry in sorted(
                (e for e in self._entries if e.done_at is not None),
                key=lambda e: e.done_at or 0.0,
            ):
                excess -= entry.weight
                if excess <= 0:
                    free_at = (entry.done_at or 0.0) + self.window_s
                    break
            wait = max(wait, free_at - now)
        return wait

    def take(self, n: int = 1) -> _Entry:
        entry = _Entry(self, n)
        self._entries.append(entry)
        return entry

    def settle(self, entry: _Entry) -> None:
        if entry.done_at is None:
            entry.done_at = self._clock()
            self._settled.set()

    async def acquire(self, n: int = 1) -> Slot:
        """Wait until ``n`` requests may start, and take one slot for them."""
        async with self._lock:  # FIFO: requests start in the order they asked
            while True:
                now = self._clock()
                wait = self.delay_s(now, n)
                if wait <= 0:
                    return self.take(n)
                started = self._clock()
                self._settled.clear()
                try:
                    timeout = None if math.isinf(wait) else wait
                    await asyncio.wait_for(self._settled.wait(), timeout)
                except TimeoutError:
                    pass
                self.waited_s += self._clock() - started

    async def hold_off(self, seconds: float | None = None) -> None:
        """Admit nothing for ``seconds`` (default: one full window), e.g. after a 429."""
        until = self._clock() + (self.window_s if seconds is None else seconds)
        self._blocked_until = max(self._blocked_until, until)
