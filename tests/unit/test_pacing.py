"""The in-process limiter: a slot counts from admission until a window after its answer."""

from __future__ import annotations

import asyncio
import math
import random

import pytest

from syncer.pacing import SlidingWindowLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_slot_in_flight_is_never_freed_by_time_alone() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(2, 1.0, margin_s=0.0, clock=clock)
    limiter.take()
    limiter.take()
    clock.now = 100.0
    assert math.isinf(limiter.delay_s(clock.now))


def test_a_settled_slot_frees_one_window_after_its_answer() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(2, 1.0, margin_s=0.0, clock=clock)
    first, second = limiter.take(), limiter.take()
    clock.now = 0.4
    limiter.settle(second)  # the later request answers first
    assert limiter.delay_s(clock.now) == pytest.approx(1.0)  # 0.4 + 1.0 - 0.4
    clock.now = 0.7
    limiter.settle(first)
    assert limiter.delay_s(clock.now) == pytest.approx(0.7)  # second frees at 1.4
    clock.now = 1.4
    assert limiter.delay_s(clock.now) == 0.0


def test_any_window_of_arrivals_holds_at_most_the_limit_whatever_the_transit_times() -> None:
    """Arrival at the server lies anywhere between admission and answer; simulate it."""
    rng = random.Random(7)
    for _ in range(50):
        clock = Clock()
        limit, window = rng.randint(1, 6), rng.choice([0.5, 1.0, 2.0])
        limiter = SlidingWindowLimiter(limit, window, margin_s=0.0, clock=clock)
        arrivals: list[float] = []
        in_flight: list[tuple[float, object, float]] = []  # (answer time, slot, arrival)
        while len(arrivals) < 40:
            wait = limiter.delay_s(clock.now)
            if wait <= 0:
                slot = limiter.take()
                answer = clock.now + rng.uniform(0, 1.5 * window)
                in_flight.append((answer, slot, rng.uniform(clock.now, answer)))
                continue
            in_flight.sort(key=lambda item: item[0])
            next_answer = in_flight[0][0] if in_flight else math.inf
            clock.now = min(clock.now + wait, next_answer)
            while in_flight and in_flight[0][0] <= clock.now:
                _, slot, arrival = in_flight.pop(0)
                limiter.settle(slot)  # type: ignore[arg-type]
                arrivals.append(arrival)
        arrivals.sort()
        for i, start in enumerate(arrivals):
            inside = [a for a in arrivals[i:] if a < start + window]
            assert len(inside) <= limit, (limit, window, start, inside)


async def test_acquire_wakes_when_an_answer_frees_the_way() -> None:
    limiter = SlidingWindowLimiter(1, 0.05, margin_s=0.0)
    slot = await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.02)
    assert not waiter.done()  # in flight: no amount of time frees it
    await slot.settle()
    async with asyncio.timeout(2):
        await waiter


def test_a_slot_for_several_requests_counts_them_all_until_a_window_after_it_settled() -> None:
    clock = Clock()
    limiter = SlidingWindowLimiter(4, 1.0, margin_s=0.0, clock=clock)
    three = limiter.take(3)
    assert limiter.delay_s(clock.now, 1) == 0.0
    assert math.isinf(limiter.delay_s(clock.now, 2))  # only the answers can free room
    clock.now = 0.5
    limiter.settle(three)
    assert limiter.delay_s(clock.now, 2) == pytest.approx(1.0)
    clock.now = 1.5
    assert limiter.delay_s(clock.now, 4) == 0.0
    with pytest.raises(ValueError, match="can never fit"):
        limiter.delay_s(clock.now, 5)
