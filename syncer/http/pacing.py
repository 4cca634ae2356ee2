"""Pacing requests to a rate limit, so that limits are respected rather than discovered.

A :class:`SlidingWindowLimiter` admits at most ``requests`` starts in any window of
``per_seconds`` (plus a small margin for the distance between our clock and the server's), the
same rule a sliding-window server applies. One limiter is shared by every stream that uses one
credential. After a 429 the limiter is told to hold everyone back for a full window, because
MOCO sends no ``Retry-After`` and only a full window is sure to have drained.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

# Our clock says when a request left; the server's says when it arrived. The difference
# varies (a new connection's first request is slower than later ones; TLS and networks add
# more), so every window is counted as this much longer than the server's.
MIN_MARGIN_S = 0.1


def margin_for(per_seconds: float) -> float:
    return max(MIN_MARGIN_S, per_seconds * 0.01)


class Limiter(Protocol):
    """What the HTTP client needs of a rate limit: in-process or shared by every replica."""

    window_s: float

    async def acquire(self) -> None: ...

    async def hold_off(self, seconds: float | None = None) -> None: ...


class SlidingWindowLimiter:
    """At most ``requests`` acquisitions in any ``per_seconds`` window (plus ``margin_s``)."""

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
        # Our send time and the server's receive time differ by the request's transit time;
        # without a margin the (requests+1)-th request can land inside the server's window.
        self.window_s = per_seconds + (
            margin_s if margin_s is not None else margin_for(per_seconds)
        )
        self._clock = clock
        self._starts: deque[float] = deque()
        self._blocked_until = 0.0
        self._lock = asyncio.Lock()
        self.waited_s = 0.0

    def delay_s(self, now: float) -> float:
        """How long a request arriving at ``now`` must wait (pure; no side effects)."""
        while self._starts and self._starts[0] <= now - self.window_s:
            self._starts.popleft()
        wait = max(0.0, self._blocked_until - now)
        if len(self._starts) >= self.requests:
            wait = max(wait, self._starts[0] + self.window_s - now)
        return wait

    async def acquire(self) -> None:
        """Wait until a request may start, and count it."""
        async with self._lock:  # FIFO: requests start in the order they asked
            while True:
                now = self._clock()
                wait = self.delay_s(now)
                if wait <= 0:
                    self._starts.append(now)
                    return
                self.waited_s += wait
                await asyncio.sleep(wait)

    async def hold_off(self, seconds: float | None = None) -> None:
        """Admit nothing for ``seconds`` (default: one full window), e.g. after a 429."""
        until = self._clock() + (self.window_s if seconds is None else seconds)
        self._blocked_until = max(self._blocked_until, until)
